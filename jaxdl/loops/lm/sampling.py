"""Sampling from a language model, and reading a finished (or running) run back.

``generate`` continues a prompt in one jitted scan; ``load_run`` rebuilds a
run's model from its ``config.json``, ``vocab.json`` and best checkpoint (by
validation bpc; the newest intact one where it kept none);
``sample_from_workdir`` is ``jaxdl sample``.
"""

import functools
import json
import math
import os
import pathlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import models as models_lib
from jaxdl.checkpoint import Checkpointer, restore_params
from jaxdl.data import text as text_lib
from jaxdl.loops.lm.config import with_values
from jaxdl.train import precision
from jaxdl.utils.errors import JaxdlError

# Files a run leaves for `jaxdl sample` (the parameters are its checkpoints;
# checkpoint.keep_best's, when the run kept one).
VOCAB_FILE, CONFIG_FILE, CHECKPOINTS = "vocab.json", "config.json", "checkpoints"
BEST_CHECKPOINTS = CHECKPOINTS + "_best"


@functools.partial(jax.jit, static_argnames=("apply_fn", "length", "temperature"))
def _sample_tokens(apply_fn, variables, buffer, pos, rng, *, length, temperature):
  """``length`` tokens after ``buffer[: pos + 1]``, in one scan; see ``generate``."""
  seq_len = buffer.shape[0]

  def step(carry, key):
    buffer, pos = carry
    logits = apply_fn(variables, buffer[None], train=False)[0, pos]  # (V,)
    if temperature > 0:
      token = jax.random.categorical(key, logits / temperature).astype(jnp.int32)
    else:
      token = jnp.argmax(logits).astype(jnp.int32)
    full = pos == seq_len - 1
    buffer = jnp.where(full, jnp.roll(buffer, -1).at[-1].set(token), buffer.at[pos + 1].set(token))
    return (buffer, jnp.minimum(pos + 1, seq_len - 1)), token

  _, tokens = jax.lax.scan(step, (buffer, pos), jax.random.split(rng, length))
  return tokens


def generate(
    apply_fn: Callable[..., jax.Array],
    variables: Any,
    prompt: np.ndarray,
    *,
    length: int,
    seq_len: int,
    temperature: float,
    rng: jax.Array,
) -> np.ndarray:
  """Continues ``prompt`` by ``length`` tokens, in one jitted scan.

  The model sees at most the last ``seq_len`` tokens, in a fixed-size buffer
  (one compile whatever the prompt): while the prompt is shorter, the
  buffer's tail is padding that causality keeps out of the logits read at the
  last real position; once full, the window slides. A recurrent model so
  restarts from a zero state on each window, exactly as it was trained.

  Args:
    apply_fn: ``model.apply`` of a model mapping (B, T) tokens to (B, T, V).
    variables: its variables.
    prompt: token ids (P,), P >= 1.
    length: tokens to generate.
    seq_len: the window the model was trained on.
    temperature: softmax temperature; 0 picks the most likely token.
    rng: the sampling key.

  Returns:
    The generated token ids (length,), without the prompt.
  """
  prompt = np.asarray(prompt, np.int32)[-seq_len:]
  buffer = np.zeros(seq_len, np.int32)
  buffer[:len(prompt)] = prompt
  return np.asarray(_sample_tokens(apply_fn, variables, buffer, np.int32(len(prompt) - 1), rng,
                                   length=int(length), temperature=float(temperature)))


def _model_kwargs(config: ml_collections.ConfigDict, seq_len: int) -> dict[str, Any]:
  kwargs = models_lib.options_from_config(precision.model_section(config))  # train.dtype as model.dtype
  # A learned position table must cover the window; the preset need not
  # repeat data.seq_len for it.
  if "max_len" in models_lib.model_options(config.model.name) and "max_len" not in kwargs:
    kwargs["max_len"] = seq_len
  return kwargs


def lm_model(config: ml_collections.ConfigDict, vocab_size: int) -> nn.Module:
  """The module ``config.model`` names, for this vocabulary and window; not yet checked (see build_model)."""
  return models_lib.get_model(config.model.name, vocab_size, **_model_kwargs(config, config.data.seq_len))


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> tuple[nn.Module, Any]:
  """The model and its abstract variables; one-line errors for models that are not LMs."""
  seq_len = config.data.seq_len
  model = lm_model(config, vocab_size)
  sample = jax.ShapeDtypeStruct((2, seq_len), jnp.int32)  # abstract: no device work
  lms = ", ".join(n for n in models_lib.MODELS if n.endswith("_lm"))
  try:
    shapes = jax.eval_shape(functools.partial(model.init, train=False),
                            jax.ShapeDtypeStruct((2,), jnp.uint32), sample)
    out = jax.eval_shape(functools.partial(model.apply, train=False), shapes, sample)
  except JaxdlError as e:
    if "expects integer tokens" in str(e):  # a language model with a bad option
      raise
    raise JaxdlError(f"model '{config.model.name}' is not a language model ({e}); "
                     f"use one of: {lms}") from e
  except Exception as e:  # shape errors from inside Flax, made one line
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise JaxdlError(
        f"model '{config.model.name}' cannot take tokens (B, {seq_len}): {first}") from e
  if out.shape != (2, seq_len, vocab_size):
    raise JaxdlError(f"model '{config.model.name}' is not a language model: it maps tokens "
                     f"(B, T) to {out.shape[1:]} per batch, not (T, V); use one of: {lms}")
  return model, shapes


def load_run(workdir: str | os.PathLike
             ) -> tuple[nn.Module, Any, tuple[str, ...], ml_collections.ConfigDict]:
  """The model, variables, vocabulary and config of an LM run in ``workdir``.

  The parameters are the run's best by validation bpc (``checkpoints_best/``)
  or, where it has none (yet), its newest intact checkpoint, so a run still
  in progress (or killed) can be sampled too. The config has the derived
  values of its ``'auto'`` keys filled in.
  """
  workdir = pathlib.Path(workdir)
  for name in (CONFIG_FILE, VOCAB_FILE, CHECKPOINTS):
    if not (workdir / name).exists():
      what = "no such directory" if not workdir.is_dir() else f"no {name}"
      raise JaxdlError(f"{workdir}: {what}; expected the workdir of a language-model run "
                       f"(jaxdl run charlm_transformer --workdir DIR)")
  try:
    config = ml_collections.ConfigDict(json.loads((workdir / CONFIG_FILE).read_text()))
    record = json.loads((workdir / VOCAB_FILE).read_text(encoding="utf-8"))
    vocab = tuple(record["chars"])
  except (ValueError, KeyError, TypeError) as e:
    raise JaxdlError(f"{workdir}: {CONFIG_FILE} or {VOCAB_FILE} is unreadable ({e})") from None
  if config.get("loop") != "lm":
    raise JaxdlError(f"{workdir} holds a '{config.get('loop')}' run, not a language model")
  config = with_values(config, record.get("derived", {}))
  model, shapes = build_model(config, len(vocab))
  target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])
  best = workdir / BEST_CHECKPOINTS
  params, _ = restore_params(best if Checkpointer(best).steps() else workdir / CHECKPOINTS, target)
  return model, {"params": params}, vocab, config


def sample_from_workdir(workdir: str | os.PathLike, *, prompt: str, length: int,
                        temperature: float, seed: int = 0) -> str:
  """Generates ``length`` characters after ``prompt`` with the model trained in ``workdir``.

  Args:
    workdir: a finished ``jaxdl run`` of a language-model preset.
    prompt: the text to continue; every character must be in the run's
      vocabulary.
    length: characters to generate (>= 1).
    temperature: >= 0; 0 is greedy.
    seed: the sampling seed.

  Returns:
    The generated text, without the prompt.
  """
  if length < 1:
    raise JaxdlError(f"--length {length} must be >= 1")
  if not temperature >= 0 or math.isinf(temperature):
    raise JaxdlError(f"--temperature {temperature} must be a finite number >= 0")
  if not prompt:
    raise JaxdlError("--prompt is empty; give at least one character to continue")
  model, variables, vocab, config = load_run(workdir)
  missing = sorted(set(prompt) - set(vocab))
  if missing:
    raise JaxdlError(f"--prompt has {len(missing)} character(s) the run's vocabulary lacks: "
                     f"{', '.join(map(repr, missing[:10]))}")
  ids = generate(model.apply, variables, text_lib.encode(prompt, vocab), length=length,
                 seq_len=config.data.seq_len, temperature=temperature,
                 rng=jax.random.PRNGKey(seed))
  return text_lib.decode(ids, vocab)
