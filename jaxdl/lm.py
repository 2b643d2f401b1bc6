"""Character-level language modelling: the pure steps, sampling, ``train_and_evaluate``.

The same protocol as the supervised loop::

    state, metrics = lm_train_step(state, {"x": (B, T) tokens, "y": (B, T) next tokens})

and the same machinery: ``TrainState``, ``create_train_state``, the on-device
epoch of ``make_train_chunk``, the host loop ``jaxdl.train.loop.run``, the
metric writers. The training split lives on the device as one token array; an
"example" is a window of T + 1 tokens in a tiling of the text whose phase
moves every epoch, and each batch's windows are sliced on the device inside
the jitted chunk.

The metric is bits per character on the validation split (the last
``data.val_fraction`` of the text): the mean next-token cross-entropy in nats
divided by ln 2, over non-overlapping windows of T + 1 tokens. Add-one
smoothed unigram and bigram models, counted on the training split and scored
on exactly the same validation targets, are the baselines.
"""

import functools
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdl import models as models_lib
from jaxdl import optim as optim_lib
from jaxdl.checkpoint import restore_params
from jaxdl.data import text as text_lib
from jaxdl.supervised import (create_train_state, fit, make_evaluate, make_train_chunk,
                              model_kwargs, validate_config)
from jaxdl.train import parallel
from jaxdl.train.plots import plot_attention_maps, plot_learning_curves
from jaxdl.train.state import TrainState, step_keys
from jaxdl.train.writers import console, write_json, write_text_atomic
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256

Batch = Mapping[str, jax.Array]

LN2 = math.log(2.0)
# Files a run leaves for `jaxdl sample` (the parameters are its checkpoints).
VOCAB_FILE, CONFIG_FILE, CHECKPOINTS = "vocab.json", "config.json", "checkpoints"
# The sample written at the end of a run: long enough to show structure
# (a few lines), at a temperature a little below 1, which trades a few rare
# characters for fewer typos.
END_SAMPLE_LENGTH, END_SAMPLE_TEMPERATURE = 400, 0.8


# --------------------------------------------------------------------- steps --


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-token next-token cross-entropy in nats, float32. (B, T)"""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def lm_train_step(
    state: TrainState,
    batch: Batch,
    *,
    schedule: optax.Schedule | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on next-token prediction over ``{"x": (B, T), "y": (B, T)}``.

  Dropout draws from ``fold_in(key, state.step)``: the same state and batch
  give the same result.

  Args:
    state: the current state (a model that maps tokens (B, T) to logits (B, T, V)).
    batch: input tokens and the tokens that follow each of them.
    schedule: if given, the learning rate is reported in the metrics.

  Returns:
    The next state and scalar metrics: ``loss`` (nats per token), ``bpc``
    (bits per character), ``accuracy`` (of the most likely next token),
    ``grad_norm`` (and ``learning_rate``).
  """
  _, key = step_keys(state.rng, state.step)
  x, y = batch["x"], batch["y"]

  def loss_fn(params):
    logits = state.apply_fn(state.variables(params), x, train=True, rngs={"dropout": key})
    return token_cross_entropy(logits, y).mean(), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics = {
      "loss": loss,
      "bpc": loss / LN2,
      "accuracy": (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32).mean(),
      "grad_norm": optax.tree.norm(grads),
  }
  if schedule is not None:
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
  return state.apply_gradients(grads=grads), metrics


def lm_eval_step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
  """Loss, bits per character and accuracy on windows, with an optional ``mask`` (B,).

  Args:
    state: the state to evaluate.
    batch: ``{"x": (B, T), "y": (B, T)}`` and optionally ``"mask"`` (B,),
      0 for padding windows.

  Returns:
    Means over the tokens of the unmasked windows (all windows have T
    tokens), and ``count``, the number of unmasked windows.
  """
  logits = state.apply_fn(state.variables(), batch["x"], train=False)  # (B, T, V)
  y = batch["y"]
  mask = batch.get("mask", jnp.ones(y.shape[:1], jnp.float32))
  count = mask.sum()
  per_window = token_cross_entropy(logits, y).mean(axis=1)  # (B,)
  correct = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32).mean(axis=1)  # (B,)
  loss = (per_window * mask).sum() / jnp.maximum(count, 1.0)
  return {"loss": loss, "bpc": loss / LN2,
          "accuracy": (correct * mask).sum() / jnp.maximum(count, 1.0), "count": count}


def take_windows(tokens: jax.Array, starts: jax.Array, length: int) -> jax.Array:
  """Windows ``tokens[s : s + length]`` for each start s: (B,) -> (B, length)."""
  return jax.vmap(lambda s: jax.lax.dynamic_slice(tokens, (s,), (length,)))(starts)


def make_lm_chunk(
    step_fn: Callable[[TrainState, Batch], tuple[TrainState, dict]],
    *,
    num_tokens: int,
    seq_len: int,
    batch_size: int,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict]]:
  """Builds ``chunk(state, tokens, n)``: ``n`` steps on windows of ``tokens``.

  ``make_train_chunk`` does the work. Its examples are the windows of a
  tiling of the text: window k starts at ``k * seq_len + phase`` and holds
  ``seq_len + 1`` tokens (inputs and their next tokens). Each epoch draws a
  fresh order of the windows and a fresh phase in ``[0, seq_len)``, both from
  the epoch number, so every epoch predicts each character about once, with
  window boundaries that move, and a resumed run sees the same windows.
  Tiling rather than every start position: the permutation of a million
  starts cost a second per chunk on CPU, that of ``N / seq_len`` windows
  costs nothing.

  Args:
    step_fn: ``state, metrics = step_fn(state, {"x": (B, T), "y": (B, T)})``.
    num_tokens: the training split's length.
    seq_len: T, the tokens each window predicts.
    batch_size: B, the global batch.
    batch_sharding: how each batch of windows is laid out over the devices.

  Returns:
    ``chunk(state, tokens, n) -> (state, mean metrics)``, jit-ready, with
    ``chunk.steps_per_epoch`` and ``chunk.num_windows``.
  """
  # The last window starts at most at (K - 1) T + T - 1 and ends T + 1 later.
  num_windows = num_tokens // seq_len - 1
  if num_windows < batch_size:
    raise JaxdlError(f"the training text holds {max(num_windows, 0)} windows of data.seq_len="
                     f"{seq_len}, fewer than train.batch_size={batch_size}")
  steps_per_epoch = num_windows // batch_size

  def window_step(state, batch):
    data_root, _ = step_keys(state.rng, state.step)
    epoch_key = jax.random.fold_in(data_root, state.step // steps_per_epoch)
    # fold_in(epoch_key, 1): a stream apart from the epoch's permutation key.
    phase = jax.random.randint(jax.random.fold_in(epoch_key, 1), (), 0, seq_len)
    starts = batch["window"] * seq_len + phase  # (B,)
    w = take_windows(batch["tokens"], starts, seq_len + 1)  # (B, T + 1)
    if batch_sharding is not None:
      w = jax.lax.with_sharding_constraint(w, batch_sharding)
    return step_fn(state, {"x": w[:, :-1], "y": w[:, 1:]})

  def chunk(state, tokens, n):
    # The gathered "batch" of the inner chunk is only window indices; the
    # token array rides along by closure, never gathered.
    inner = make_train_chunk(
        lambda s, b: window_step(s, {"tokens": tokens, "window": b["window"]}),
        num_examples=num_windows, batch_size=batch_size, batch_sharding=batch_sharding)
    return inner(state, {"window": jnp.arange(num_windows, dtype=jnp.int32)}, n)

  chunk.steps_per_epoch = steps_per_epoch
  chunk.num_windows = num_windows
  return chunk


def eval_windows(tokens: np.ndarray, seq_len: int) -> np.ndarray:
  """Non-overlapping windows (N, T + 1) of a split: every target scored once."""
  n = (len(tokens) - 1) // seq_len
  starts = np.arange(n) * seq_len
  return tokens[starts[:, None] + np.arange(seq_len + 1)[None, :]]


# ------------------------------------------------------------------ sampling --


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
  kwargs = model_kwargs(config)
  # A learned position table must cover the window; the preset need not
  # repeat data.seq_len for it.
  if "max_len" in models_lib.model_options(config.model.name) and "max_len" not in kwargs:
    kwargs["max_len"] = seq_len
  return kwargs


def _build_model(config: ml_collections.ConfigDict, vocab_size: int) -> tuple[nn.Module, Any]:
  """The model and its abstract variables; one-line errors for models that are not LMs."""
  seq_len = config.data.seq_len
  model = models_lib.get_model(config.model.name, vocab_size, **_model_kwargs(config, seq_len))
  sample = jnp.zeros((2, seq_len), jnp.int32)
  lms = ", ".join(n for n in models_lib.MODELS if n.endswith("_lm"))
  try:
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                            sample)
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

  The parameters come from the run's newest intact checkpoint, so a run
  still in progress (or killed) can be sampled too.
  """
  workdir = pathlib.Path(workdir)
  for name in (CONFIG_FILE, VOCAB_FILE, CHECKPOINTS):
    if not (workdir / name).exists():
      what = "no such directory" if not workdir.is_dir() else f"no {name}"
      raise JaxdlError(f"{workdir}: {what}; expected the workdir of a language-model run "
                       f"(jaxdl run charlm_transformer --workdir DIR)")
  try:
    config = ml_collections.ConfigDict(json.loads((workdir / CONFIG_FILE).read_text()))
    vocab = tuple(json.loads((workdir / VOCAB_FILE).read_text(encoding="utf-8"))["chars"])
  except (ValueError, KeyError, TypeError) as e:
    raise JaxdlError(f"{workdir}: {CONFIG_FILE} or {VOCAB_FILE} is unreadable ({e})") from None
  if config.get("loop") != "lm":
    raise JaxdlError(f"{workdir} holds a '{config.get('loop')}' run, not a language model")
  model, shapes = _build_model(config, len(vocab))
  target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])
  params, _ = restore_params(workdir / CHECKPOINTS, target)
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


# ------------------------------------------------------------------ builder --


def validate_lm_config(config: ml_collections.ConfigDict) -> None:
  """One-line errors for values no language-model run can use."""
  validate_config(config)
  for key in ("seq_len", "val_fraction"):
    if key not in config.data:
      raise JaxdlError(f"a language-model config needs data.{key} (see experiments/charlm_*.py)")
  if config.data.seq_len < 1:
    raise JaxdlError(f"data.seq_len={config.data.seq_len} must be >= 1")
  if not 0 < config.data.val_fraction < 1:
    raise JaxdlError(f"data.val_fraction={config.data.val_fraction} must be in (0, 1)")


class LMExperiment:
  """Everything a language-model run needs, built from a config and checked.

  Building it validates the config, reads the text, splits it, builds and
  initialises the model: every bad input fails here, before anything is
  written.

  Attributes:
    config, corpus, train_tokens, val_tokens, val_windows, model, mesh,
    state, schedule, train_step (bound, pure), chunk (jitted, donating the
    state), evaluate, steps_per_epoch.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    validate_lm_config(config)
    self.config = config
    t, seq_len = config.train, config.data.seq_len
    self.corpus = corpus = text_lib.load_text(config.data.name, config.data.path or None)
    self.train_tokens, self.val_tokens = text_lib.split_by_position(
        corpus.ids, config.data.val_fraction)
    where = (f"data.path={config.data.path}" if corpus.name == "text"
             else f"data.name={corpus.name}")
    # A training batch needs batch_size windows of the tiling (see
    # make_lm_chunk), validation at least one window of T + 1 tokens.
    need_train = (t.batch_size + 1) * seq_len
    need_val = seq_len + 1
    need = max(math.ceil(need_train / (1 - config.data.val_fraction)),
               math.ceil(need_val / config.data.val_fraction))
    if len(self.train_tokens) < need_train or len(self.val_tokens) < need_val:
      raise JaxdlError(
          f"{where} is too short: {len(corpus.ids)} characters, but data.seq_len={seq_len}, "
          f"train.batch_size={t.batch_size} and data.val_fraction={config.data.val_fraction} "
          f"need at least {need}")
    self.mesh = parallel.make_mesh(t.num_devices)
    parallel.check_divisible(t.batch_size, self.mesh)
    self.model, _ = _build_model(config, corpus.vocab_size)
    tx, self.schedule = optim_lib.from_config(config.optim, t.steps)
    state = create_train_state(self.model, tx, jax.random.PRNGKey(t.seed),
                               jnp.zeros((2, seq_len), jnp.int32))
    self.state = parallel.put_replicated(state, self.mesh)
    self.train_step = functools.partial(lm_train_step, schedule=self.schedule)
    chunk = make_lm_chunk(self.train_step, num_tokens=len(self.train_tokens), seq_len=seq_len,
                          batch_size=t.batch_size, batch_sharding=parallel.batch_sharded(self.mesh))
    self.steps_per_epoch = chunk.steps_per_epoch
    self.chunk = jax.jit(chunk, donate_argnums=(0,))
    self.train_data = parallel.put_replicated(self.train_tokens, self.mesh)
    self.val_windows = eval_windows(self.val_tokens, seq_len)  # (N, T + 1)
    # make_evaluate batches, pads and shards examples with integer labels;
    # here an example is a whole window and its labels are inside it.
    self.evaluate = make_evaluate(
        lambda s, b: lm_eval_step(s, {"x": b["x"][:, :-1], "y": b["x"][:, 1:], "mask": b["mask"]}),
        self.val_windows, np.zeros(len(self.val_windows), np.int32), mesh=self.mesh,
        batch_size=t.eval_batch_size)

  def run_chunk(self, state: TrainState, n) -> tuple[TrainState, dict]:
    return self.chunk(state, self.train_data, n)

  def baselines(self) -> dict[str, float]:
    """Unigram and bigram bits per character on the validation targets the model is scored on."""
    w = self.val_windows
    contexts, targets = w[:, :-1].reshape(-1), w[:, 1:].reshape(-1)
    v = self.corpus.vocab_size
    return {"unigram_bpc": text_lib.unigram_bpc(self.train_tokens, targets, v),
            "bigram_bpc": text_lib.bigram_bpc(self.train_tokens, contexts, targets, v)}


def _eval_with_bpc(evaluate: Callable[[TrainState], dict]) -> Callable[[TrainState], dict]:
  def wrapped(state):
    metrics = dict(evaluate(state))
    metrics["bpc"] = metrics["loss"] / LN2
    return metrics
  return wrapped


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | pathlib.Path) -> tuple[TrainState, dict]:
  """Trains a character-level language model as the config says.

  Writes into ``workdir``: ``config.json``, ``vocab.json`` (the characters in
  token-id order, and the corpus's file list and hash), ``checkpoints/``
  (Orbax; ``jaxdl sample`` reads the newest), ``metrics.jsonl`` (``train/*``
  and ``test/*`` records; the test split is the validation text),
  TensorBoard events under ``tb/``, ``learning_curves.png``, ``sample.txt``,
  ``attention.png`` (Transformer models) and ``metrics.json``: ``val_bpc``,
  ``val_loss``, ``train_loss``, ``unigram_bpc``, ``bigram_bpc``, ``steps``,
  ``wall_seconds``, ``params_sha256``, ``corpus_sha256``, ``corpus_files``,
  ``vocab_size``, ...

  A workdir that already holds this run resumes from its newest intact
  checkpoint, exactly, like the supervised loop; a text that changed since
  the run started is refused. ``augment.*``, ``train.label_smoothing`` and
  ``data.num_classes`` do not apply to text.

  Args:
    config: a language-model preset's config (``config.loop == "lm"``).
    workdir: the run's output directory.

  Returns:
    The final state and the final metrics dict.
  """
  parallel.maybe_initialize_distributed(config.train.distributed)
  t0 = time.perf_counter()
  exp = LMExperiment(config)  # every bad input fails here, before anything is written
  corpus, t = exp.corpus, config.train
  workdir = pathlib.Path(workdir)
  vocab_record = {"chars": list(corpus.vocab), "corpus": corpus.info}

  def check_and_write_vocab(resuming: bool) -> None:
    path = workdir / VOCAB_FILE
    if resuming and path.is_file():
      saved = json.loads(path.read_text(encoding="utf-8"))
      if saved.get("corpus", {}).get("sha256") != corpus.info["sha256"]:
        where = f"data.path={config.data.path}" if corpus.name == "text" else corpus.name
        raise JaxdlError(f"{where} changed since the run in {workdir} started (its sha256 differs); "
                         f"choose another --workdir")
    elif jax.process_index() == 0:
      workdir.mkdir(parents=True, exist_ok=True)
      write_text_atomic(path, json.dumps(vocab_record, indent=1) + "\n")

  n_params = param_count(exp.state.params)
  fitted = fit(exp, workdir, eval_fn=_eval_with_bpc(exp.evaluate), on_start=check_and_write_vocab,
               headline=lambda state: (
      f"jaxdl: {config.model.name} ({n_params:,} params) on {corpus.name} "
      f"({len(exp.train_tokens):,} train / {len(exp.val_tokens):,} validation characters, "
      f"vocabulary {corpus.vocab_size}), {exp.mesh.devices.size} {jax.default_backend()} "
      f"device(s), {t.steps} steps of {t.batch_size} windows of {config.data.seq_len}"))
  state, summary = fitted.state, fitted.summary
  if "test/loss" not in summary:  # resumed at the last step: nothing ran, evaluate now
    summary = {**summary, **{f"test/{k}": v for k, v in _eval_with_bpc(exp.evaluate)(state).items()}}
  last_train = next((r for r in reversed(fitted.history) if "train/loss" in r), {})
  baselines = exp.baselines()
  final = {
      "val_bpc": summary["test/bpc"],
      "val_loss": summary["test/loss"],
      "val_accuracy": summary["test/accuracy"],
      "train_loss": last_train.get("train/loss", float("nan")),
      "train_bpc": last_train.get("train/bpc", float("nan")),
      **baselines,
      "bpc_vs_bigram": 1.0 - summary["test/bpc"] / baselines["bigram_bpc"],
      "steps": int(jax.device_get(state.step)),
      "resumed_from_step": fitted.start,
      "wall_seconds": time.perf_counter() - t0,
      "train_seconds": summary["wall_seconds"],
      "first_chunk_seconds": summary["first_chunk_seconds"],
      "steps_per_second": summary.get("steps_per_second", 0.0),
      "checkpoint_saves": fitted.checkpoint_saves,
      "checkpoint_seconds": fitted.checkpoint_seconds,
      "params_sha256": tree_sha256(state.params),
      "param_count": n_params,
      "corpus_sha256": corpus.info["sha256"],
      "corpus_files": corpus.info["num_files"],
      "corpus_chars": len(corpus.ids),
      "vocab_size": corpus.vocab_size,
      "seq_len": config.data.seq_len,
      "num_devices": int(exp.mesh.devices.size),
      "backend": jax.default_backend(),
      "dataset": corpus.name,
      "model": config.model.name,
      "seed": t.seed,
  }
  if jax.process_index() == 0:
    _write_extras(exp, {"params": jax.device_get(state.params)}, workdir)
    plot_learning_curves(fitted.history, workdir / "learning_curves.png",
                         title=f"{config.model.name} on {corpus.name}")
    final["wall_seconds"] = time.perf_counter() - t0
    write_json(workdir / "metrics.json", final)
  console(f"val_bpc={final['val_bpc']:.4f} (unigram {final['unigram_bpc']:.3f}, bigram "
          f"{final['bigram_bpc']:.3f}) ({final['steps']} steps, {final['wall_seconds']:.1f} s) "
          f"-> {workdir}/metrics.json")
  return state, final


def _write_extras(exp: LMExperiment, variables: Any, workdir: pathlib.Path) -> None:
  """``sample.txt`` (and ``attention.png`` for a Transformer) from the final model."""
  vocab, seq_len = exp.corpus.vocab, exp.config.data.seq_len
  # The prompt is the start of the validation text: text the model never trained on.
  prompt = exp.val_tokens[:min(seq_len, 64)]
  ids = generate(exp.model.apply, variables, prompt, length=END_SAMPLE_LENGTH, seq_len=seq_len,
                 temperature=END_SAMPLE_TEMPERATURE, rng=jax.random.PRNGKey(exp.config.train.seed))
  (workdir / "sample.txt").write_text(
      text_lib.decode(prompt, vocab) + text_lib.decode(ids, vocab) + "\n", encoding="utf-8")
  if isinstance(exp.model, models_lib.TransformerLanguageModel):
    window = exp.val_tokens[None, :min(seq_len, 32)]  # short enough to read the characters
    maps = jax.jit(functools.partial(models_lib.attention_maps, exp.model))(variables, window)
    plot_attention_maps(np.stack([np.asarray(m[0]) for m in maps]), workdir / "attention.png",
                        tokens=list(text_lib.decode(window[0], vocab)),
                        title=f"{exp.config.model.name}: attention on validation text")
