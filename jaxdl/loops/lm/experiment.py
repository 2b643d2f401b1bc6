"""The language-model run: a character-level model trained on windows of one text.

The metric is bits per character on the validation split (the last
``data.val_fraction`` of the text): the mean next-token cross-entropy in nats
divided by ln 2, over non-overlapping windows of T + 1 tokens. Add-one
smoothed unigram and bigram models, counted on the training split and scored
on exactly the same validation targets, are the baselines.

The run keeps its best checkpoint by validation bpc (``checkpoints_best/``):
the end-of-run sample, ``metrics.json``'s ``best_val_bpc`` and
``bpc_vs_bigram``, and ``jaxdl sample`` use it; ``checkpoints/`` holds the
latest state, which a resume starts from.
"""

import functools
import hashlib
import math
import pathlib
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from jaxdl import models as models_lib
from jaxdl.checkpoint import restore_params
from jaxdl.configs import to_dict
from jaxdl.data import text as text_lib
from jaxdl.loops.lm import config as config_lib
from jaxdl.loops.lm.config import validate
from jaxdl.loops.lm.sampling import BEST_CHECKPOINTS, VOCAB_FILE, build_model, generate, lm_model
from jaxdl.loops.lm.step import LN2, eval_windows, lm_eval_step, lm_train_step, make_lm_chunk, window_count
from jaxdl.train import accumulate, parallel, programs
from jaxdl.train import sharding as sharding_lib
from jaxdl.train import workdir as workdir_lib
from jaxdl.train.evaluate import make_evaluate
from jaxdl.train.fit import TaskBase, build_and_fit, optimizer_or
from jaxdl.train.plots import plot_attention_maps, plot_learning_curves
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.writers import console, write_json, write_atomic
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256

# The sample written at the end of a run: long enough to show structure
# (a few lines), at a temperature a little below 1, which trades a few rare
# characters for fewer typos.
END_SAMPLE_LENGTH, END_SAMPLE_TEMPERATURE = 400, 0.8


class LMTask(TaskBase):
  """Everything a language-model run needs, built from a config and checked.

  Building it validates the config, reads the text, splits it, builds and
  initialises the model: every bad input fails here, before anything is
  written. ``text`` (a ``str``) and ``tx`` (an Optax optimizer) replace
  ``data.name`` / ``data.path`` and the ``optim`` section.

  Attributes:
    config, corpus, train_tokens, val_tokens, val_windows, model, mesh,
    state, schedule, train_step (bound, pure), chunk (jitted, donating the
    state), steps_per_epoch, and the :class:`jaxdl.train.fit.Task` fields;
    ``derived``: the values given to the keys the config leaves at
    ``'auto'`` (``jaxdl.loops.lm.config.derive``), and ``settings``: the
    config with them filled in, which the model, optimizer and step count
    are built from (``config`` itself, with its ``'auto'`` values, is what
    ``config.json`` records).
  """

  def __init__(self, config: ml_collections.ConfigDict, *, text: str | None = None,
               tx: optax.GradientTransformation | None = None):
    validate(config)
    tx_given = tx
    if text is None:
      self.corpus = corpus = text_lib.load_text(config.data.name, config.data.path or None)
    else:
      self.corpus = corpus = text_lib.corpus_from_text(text)
      # config.json says what was read: a text from Python, known by vocab.json's sha256.
      config = ml_collections.ConfigDict(config.to_dict())
      config.data.name, config.data.path = "text", ""
    self.config = config
    t, seq_len = config.train, config.data.seq_len
    self.train_tokens, self.val_tokens = text_lib.split_by_position(
        corpus.ids, config.data.val_fraction)
    self._check_length()
    self.mesh = parallel.make_mesh(t.num_devices)
    parallel.check_divisible(t.batch_size, self.mesh)
    self.derived, self.settings = self._size_to_text()
    steps = self.settings.train.steps
    # _size_to_text checked the model's shapes; the derived keys (AUTO_KEYS:
    # steps, dropout, weight decay) change no shape, so it is not traced again.
    self.model = lm_model(self.settings, corpus.vocab_size)
    tx, self.schedule = optimizer_or(tx, self.settings.optim, steps)
    state = create_train_state(self.model, tx, int(t.seed), np.zeros((2, seq_len), np.int32))
    if t.sharding == "replicated":
      self.state = parallel.put_replicated(state, self.mesh)
    else:
      self.state_shardings = sharding_lib.state_shardings(state, self.mesh, t.sharding)
      self.state = sharding_lib.place(state, self.state_shardings)
    self.train_step = functools.partial(
        lm_train_step, schedule=self.schedule,
        accumulate_steps=accumulate.check_accumulate(t.accumulate_steps, t.batch_size, self.mesh.devices.size))
    chunk = make_lm_chunk(self.train_step, num_tokens=len(self.train_tokens), seq_len=seq_len,
                          batch_size=t.batch_size, batch_sharding=parallel.batch_sharded(self.mesh),
                          nan_policy=t.nan_policy, state_sharding=self.state_shardings)
    self.steps_per_epoch = chunk.steps_per_epoch
    # Kept across runs (jaxdl.train.programs) unless the optimizer or the model is not jaxdl's: the settings
    # and the text decide it.
    own_code = tx_given is None and programs.from_jaxdl(models_lib.constructor_of(config.model.name))
    key = ("lm", to_dict(self.settings), hashlib.sha256(corpus.ids.tobytes()).hexdigest(), corpus.vocab_size)
    self.chunk = programs.PersistentJit(chunk, key=key if own_code else None, donate_argnums=(0,),
                                        **sharding_lib.jit_out(self.state_shardings, self.mesh))
    self.train_data = parallel.put_replicated(self.train_tokens, self.mesh)
    self.val_windows = eval_windows(self.val_tokens, seq_len)  # (N, T + 1)
    # make_evaluate batches, pads and shards examples with integer labels;
    # here an example is a whole window and its labels are inside it.
    self._evaluate = make_evaluate(
        lambda s, b: lm_eval_step(s, {"x": b["x"][:, :-1], "y": b["x"][:, 1:], "mask": b["mask"]}),
        self.val_windows, np.zeros(len(self.val_windows), np.int32), mesh=self.mesh,
        batch_size=t.eval_batch_size)
    self.total_steps, self.max_chunk = steps, self.steps_per_epoch
    self.eval_every = t.eval_every or self.steps_per_epoch  # 0: once per epoch

  @property
  def where(self) -> str:
    """The text's name in messages: ``data.path=FILE``, ``data.name=pystdlib`` or the text passed in."""
    if self.corpus.name != "text":
      return f"data.name={self.corpus.name}"
    return f"data.path={self.config.data.path}" if self.config.data.path else "the text passed in"

  def _check_length(self) -> None:
    config, corpus, where = self.config, self.corpus, self.where
    seq_len, batch_size, val_fraction = config.data.seq_len, config.train.batch_size, config.data.val_fraction
    # A training batch needs batch_size windows of the tiling (see
    # make_lm_chunk), validation at least one window of T + 1 tokens.
    need_train = (batch_size + 1) * seq_len
    need_val = seq_len + 1
    need = max(math.ceil(need_train / (1 - val_fraction)), math.ceil(need_val / val_fraction))
    if len(self.train_tokens) < need_train or len(self.val_tokens) < need_val:
      raise JaxdlError(
          f"{where} is too short: {len(corpus.ids)} characters, but data.seq_len={seq_len}, "
          f"train.batch_size={batch_size} and data.val_fraction={val_fraction} "
          f"need at least {need}")

  def _size_to_text(self) -> tuple[dict[str, Any], ml_collections.ConfigDict]:
    """``(derived, settings)``: the 'auto' keys' values for this text, logged, and the config with them.

    Also warns in one line when the text is too small for the model (fewer
    than ``WARN_CHARS_PER_PARAM`` training characters per parameter).
    """
    config, n = self.config, len(self.train_tokens)
    # The parameter count does not depend on the derived values: any number stands in for them.
    standin = config_lib.with_values(config, {k: 0 for k in config_lib.AUTO_KEYS if config_lib.is_auto(config, k)})
    num_params = param_count(build_model(standin, self.corpus.vocab_size)[1]["params"])
    per_param = n / num_params
    steps_per_epoch = window_count(n, config.data.seq_len) // config.train.batch_size
    derived = config_lib.derive(config, train_chars=n, num_params=num_params, steps_per_epoch=steps_per_epoch)
    if derived:
      console(f"jaxdl: sized to the text ({n:,} training characters, {per_param:.2f} per parameter): "
              + ", ".join(f"{k}={v}" for k, v in derived.items()) + f" (a number set with --set replaces "
              f"'{config_lib.AUTO}')")
    if per_param < config_lib.WARN_CHARS_PER_PARAM:
      need = math.ceil(config_lib.WARN_CHARS_PER_PARAM * num_params)
      console(f"jaxdl: warning: {self.where} is small for model {config.model.name} ({num_params:,} "
              f"parameters): {n:,} training characters, fewer than the {need:,} that the derived "
              f"regularisation covers (model.dropout reaches its cap of {config_lib.MAX_DROPOUT}); expect it "
              f"to overfit, or train a smaller model")
    return derived, config_lib.with_values(config, derived)

  def run_chunk(self, state: TrainState, n) -> tuple[TrainState, dict]:
    return self.chunk(state, self.train_data, n)

  def evaluate(self, state: TrainState) -> dict[str, float]:
    metrics = dict(self._evaluate(state))
    metrics["bpc"] = metrics["loss"] / LN2
    return metrics

  def headline(self, state: TrainState) -> str:
    config, corpus, t = self.settings, self.corpus, self.settings.train
    return (f"jaxdl: {config.model.name} ({param_count(state.params):,} params) on {corpus.name} "
            f"({len(self.train_tokens):,} train / {len(self.val_tokens):,} validation characters, "
            f"vocabulary {corpus.vocab_size}), {self.mesh.devices.size} {jax.default_backend()} "
            f"device(s), {t.steps} steps of {t.batch_size} windows of {config.data.seq_len}")

  def on_start(self, workdir: pathlib.Path, resuming: bool) -> None:
    """Writes ``vocab.json`` (with ``derived``), or on resume refuses a text that is not the one the run began on."""
    corpus = self.corpus
    record = {"chars": list(corpus.vocab), "corpus": corpus.info, "derived": self.derived}
    workdir_lib.record_inputs(
        workdir, VOCAB_FILE, record, resuming=resuming,
        digest_of=lambda record: record.get("corpus", {}).get("sha256"),
        refusal=lambda saved: (f"{self.where} changed since the run in {workdir} started (its sha256 "
                               f"{corpus.info['sha256'][:12]}... differs from the run's "
                               f"{str(saved.get('corpus', {}).get('sha256'))[:12]}...); resume with the "
                               f"same text or choose another --workdir"))

  def baselines(self) -> dict[str, float]:
    """Unigram and bigram bits per character on the validation targets the model is scored on."""
    w = self.val_windows
    contexts, targets = w[:, :-1].reshape(-1), w[:, 1:].reshape(-1)
    v = self.corpus.vocab_size
    return {"unigram_bpc": text_lib.unigram_bpc(self.train_tokens, targets, v),
            "bigram_bpc": text_lib.bigram_bpc(self.train_tokens, contexts, targets, v)}


# Kept for code written against the earlier name.
LMExperiment = LMTask


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       text: str | None = None,
                       tx: optax.GradientTransformation | None = None) -> tuple[TrainState, dict]:
  """Trains a character-level language model as the config says.

  Writes into ``workdir``: ``config.json``, ``vocab.json`` (the characters in
  token-id order, the corpus's file list and hash, and the derived values of
  the ``'auto'`` keys), ``checkpoints/`` (Orbax, the latest states),
  ``checkpoints_best/`` (the best by validation bpc, which ``jaxdl sample``
  reads), ``metrics.jsonl`` (``train/*`` and ``test/*`` records; the test
  split is the validation text), TensorBoard events under ``tb/``,
  ``learning_curves.png``, ``sample.txt`` and ``attention.png`` (Transformer
  models) of the best model, and ``metrics.json``: ``best_val_bpc`` and
  ``best_step``, ``bpc_vs_bigram`` (of the best), ``val_bpc``, ``val_loss``
  (of the final state), ``train_loss``, ``unigram_bpc``, ``bigram_bpc``,
  ``derived``, ``steps``, ``wall_seconds``, ``params_sha256`` (final),
  ``corpus_sha256``, ``corpus_files``, ``vocab_size``, ...

  A workdir that already holds this run resumes from its newest intact
  checkpoint, exactly, like the supervised loop; a text that changed since
  the run started is refused.

  Args:
    config: a language-model preset's config (``jaxdl.loops.lm.default_config()``).
    workdir: the run's output directory.
    text: your own text (a ``str``) instead of ``data.name`` / ``data.path``;
      ``config.json`` then says ``data.name=text`` with no path, and
      ``vocab.json`` holds the text's SHA-256, so a resume with another text
      is refused.
    tx: your own Optax optimizer instead of the ``optim`` section (it is not
      in ``config.json``: resume with the same one).

  Returns:
    The final state (the latest, not the best) and the final metrics dict.
  """
  task, fitted, t0 = build_and_fit(lambda: LMTask(config, text=text, tx=tx), config, workdir)
  workdir = pathlib.Path(workdir)
  corpus = task.corpus
  if fitted.finished is not None:  # a rerun of a finished run: nothing trained, nothing written
    return fitted.state, fitted.finished
  state, test = fitted.state, fitted.test_metrics(task.evaluate)
  best_step, best_params, best = _best(task, fitted, test, workdir)
  last_train = fitted.last("train/loss")
  baselines = task.baselines()
  final = {
      "best_val_bpc": best["bpc"],
      "best_step": best_step,
      "val_bpc": test["bpc"],
      "val_loss": test["loss"],
      "val_accuracy": test["accuracy"],
      "best_val_loss": best["loss"],
      "best_val_accuracy": best["accuracy"],
      "train_loss": last_train.get("train/loss", float("nan")),
      "train_bpc": last_train.get("train/bpc", float("nan")),
      **baselines,
      "bpc_vs_bigram": 1.0 - best["bpc"] / baselines["bigram_bpc"],
      "derived": task.derived,
      "train_chars": len(task.train_tokens),
      "steps": int(jax.device_get(state.step)),
      **fitted.record(t0),
      "params_sha256": tree_sha256(state.params),
      "param_count": param_count(state.params),
      "corpus_sha256": corpus.info["sha256"],
      "corpus_files": corpus.info["num_files"],
      "corpus_chars": len(corpus.ids),
      "vocab_size": corpus.vocab_size,
      "seq_len": config.data.seq_len,
      "num_devices": int(task.mesh.devices.size),
      "dataset": corpus.name,
      "model": config.model.name,
  }
  if jax.process_index() == 0:
    _write_extras(task, {"params": best_params}, workdir)
    where = pathlib.Path(task.config.data.path).name if task.config.data.path else corpus.name
    plot_learning_curves(fitted.history, workdir / "learning_curves.png", test_label="validation",
                         title=f"{config.model.name} on {where}")
    final["wall_seconds"] = time.perf_counter() - t0
    write_json(workdir / "metrics.json", final)
  gain = final["bpc_vs_bigram"]
  console(f"best val_bpc={final['best_val_bpc']:.4f} at step {best_step}, {abs(gain):.0%} "
          f"{'below' if gain >= 0 else 'above'} the bigram (last {final['val_bpc']:.4f}; unigram "
          f"{final['unigram_bpc']:.3f}, bigram {final['bigram_bpc']:.3f}) ({final['steps']} steps, "
          f"{final['wall_seconds']:.1f} s) "
          f"-> {workdir}/metrics.json")
  return state, final


def _best(task: LMTask, fitted: Any, test: dict[str, float],
          workdir: pathlib.Path) -> tuple[int, Any, dict[str, float]]:
  """``(step, host params, validation metrics)`` of the best checkpoint; the final state's without one."""
  state = fitted.state
  steps = int(jax.device_get(state.step))
  if fitted.best is None or fitted.best[0] == steps:
    return steps, jax.device_get(state.params), test
  params, _ = restore_params(workdir / BEST_CHECKPOINTS, jax.device_get(state.params))
  return fitted.best[0], params, dict(task.evaluate(state.replace(params=parallel.put_replicated(params, task.mesh))))


def _write_extras(task: LMTask, variables: Any, workdir: pathlib.Path) -> None:
  """``sample.txt`` (and ``attention.png`` for a Transformer) from the best model."""
  vocab, seq_len = task.corpus.vocab, task.config.data.seq_len
  # The prompt is the start of the validation text: text the model never trained on.
  prompt = task.val_tokens[:min(seq_len, 64)]
  ids = generate(task.model.apply, variables, prompt, length=END_SAMPLE_LENGTH, seq_len=seq_len,
                 temperature=END_SAMPLE_TEMPERATURE, rng=jax.random.PRNGKey(task.config.train.seed))
  write_atomic(workdir / "sample.txt", text_lib.decode(prompt, vocab) + text_lib.decode(ids, vocab) + "\n")
  if isinstance(task.model, models_lib.TransformerLanguageModel):
    window = task.val_tokens[None, :min(seq_len, 32)]  # short enough to read the characters
    maps = jax.jit(functools.partial(models_lib.attention_maps, task.model))(variables, window)
    plot_attention_maps(np.stack([np.asarray(m)[0] for m in maps]), workdir / "attention.png",
                        tokens=list(text_lib.decode(window[0], vocab)),
                        title=f"{task.config.model.name}: attention on validation text")
