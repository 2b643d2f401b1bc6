"""Supervised classification: the pure steps and ``train_and_evaluate``.

The protocol every loop in jaxdl follows::

    state, metrics = train_step(state, batch)

``train_step`` is pure: bind its options with ``functools.partial`` and it runs
eagerly, under ``jax.jit`` with sharded inputs, or under ``jax.vmap``. For
speed, :func:`make_train_chunk` runs many steps in one jitted call with the
training set on the device: each epoch's order is a permutation drawn from the
state's key, and batches are gathered on the device, so the host never touches
a batch.
"""

import dataclasses
import functools
import json
import os
import pathlib
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdl import data as data_lib
from jaxdl import models as models_lib
from jaxdl import optim as optim_lib
from jaxdl.checkpoint import Checkpointer
from jaxdl.configs import to_dict
from jaxdl.train import losses, parallel
from jaxdl.train import workdir as workdir_lib
from jaxdl.train.loop import Diverged, run
from jaxdl.train.plots import plot_attention_maps, plot_gradient_norms, plot_learning_curves
from jaxdl.train.state import TrainState, step_keys
from jaxdl.train.writers import MetricWriter, console, write_json, write_text_atomic
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256

Batch = Mapping[str, jax.Array]
Augment = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


# -------------------------------------------------------------------- state --


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array, sample_x: jax.Array
) -> TrainState:
  """Initialises the model on ``sample_x`` and wraps everything in a TrainState.

  Args:
    model: a Flax module called as ``model(x, train=...)``.
    tx: the Optax optimizer.
    rng: the run's root key; initialisation uses ``fold_in(rng, 0)`` and the
      state keeps ``fold_in(rng, 1)`` as its root for steps and data order.
    sample_x: a batch of inputs (only its shape and dtype matter).

  Returns:
    The initial state, on the default device.
  """
  init_rng, run_rng = jax.random.fold_in(rng, 0), jax.random.fold_in(rng, 1)
  variables = jax.jit(functools.partial(model.init, train=False))(init_rng, sample_x)
  params = variables["params"]
  state = TrainState.create(
      apply_fn=model.apply, params=params, tx=tx,
      batch_stats=variables.get("batch_stats", {}), rng=run_rng, skipped=jnp.zeros((), jnp.int32))
  return state.replace(step=jnp.zeros((), jnp.int32))  # an array leaf, like every other


# --------------------------------------------------------------------- steps --


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    num_classes: int,
    augment: Augment | None = None,
    label_smoothing: float = 0.0,
    schedule: optax.Schedule | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on a batch ``{"x": (B, ...), "y": (B,)}``.

  Randomness (augmentation, dropout) comes from ``fold_in(key, state.step)``,
  so the same state and batch always give the same result.

  Args:
    state: the current state.
    batch: inputs and integer labels.
    num_classes: K, for the one-hot targets.
    augment: ``fn(key, x, y_soft) -> (x, y_soft)`` run on the device, or None.
    label_smoothing: the smoothing of the one-hot targets.
    schedule: if given, the learning rate is reported in the metrics.

  Returns:
    The next state and scalar metrics: loss, accuracy, grad_norm (and
    learning_rate).
  """
  _, key = step_keys(state.rng, state.step)
  augment_key, dropout_key = jax.random.split(key)
  x, labels = batch["x"], batch["y"]
  targets = losses.soft_targets(labels, num_classes, label_smoothing)  # (B, K)
  if augment is not None:
    x, targets = augment(augment_key, x, targets)
  has_stats = bool(state.batch_stats)

  def loss_fn(params):
    out = state.apply_fn(
        state.variables(params), x, train=True, rngs={"dropout": dropout_key},
        mutable=["batch_stats"] if has_stats else False)
    logits, updates = out if has_stats else (out, {})
    return losses.cross_entropy(logits, targets).mean(), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=updates["batch_stats"] if has_stats else state.batch_stats)
  metrics = {
      "loss": loss,
      "accuracy": losses.accuracy(logits, labels).mean(),
      "grad_norm": optax.tree.norm(grads),
  }
  if schedule is not None:
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
  return new_state, metrics


def eval_step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
  """Loss and accuracy on a batch, with an optional ``mask`` for padding.

  Returns:
    ``loss`` and ``accuracy`` averaged over the unmasked examples, and
    ``count``, their number (so batches can be combined exactly).
  """
  logits = state.apply_fn(state.variables(), batch["x"], train=False)
  mask = batch.get("mask", jnp.ones(batch["y"].shape, jnp.float32))
  count = mask.sum()
  labels = batch["y"]
  num_classes = logits.shape[-1]
  loss = losses.cross_entropy(logits, losses.soft_targets(labels, num_classes))
  return {
      "loss": (loss * mask).sum() / jnp.maximum(count, 1.0),
      "accuracy": (losses.accuracy(logits, labels) * mask).sum() / jnp.maximum(count, 1.0),
      "count": count,
  }


# ------------------------------------------------------- device-side epochs --


NAN_POLICIES = ("halt", "skip")


def _guard(step_fn, nan_policy: str):
  """Wraps a step so a non-finite update never lands in the state.

  Returns ``step(state, batch) -> (state, metrics, ok, first_bad_leaf)``.
  Under 'halt' a bad update leaves the state as it was (the loop then stops);
  under 'skip' only the step counter and ``state.skipped`` move on. The
  checks are reductions on the device: no host round trip.
  """

  def guarded(state, batch):
    new_state, metrics = step_fn(state, batch)
    leaves = jax.tree_util.tree_leaves(getattr(new_state, "params", {}))
    leaf_ok = jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]) if leaves else jnp.ones((1,), bool)
    ok = jnp.all(leaf_ok)
    for key in ("loss", "grad_norm"):
      if key in metrics:
        ok &= jnp.isfinite(metrics[key])
    first_bad = jnp.where(jnp.all(leaf_ok), -1, jnp.argmin(leaf_ok)).astype(jnp.int32)
    if nan_policy == "skip":
      fallback = state.replace(step=state.step + 1, skipped=state.skipped + 1)
    else:
      fallback = state
    new_state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_state, fallback)
    return new_state, metrics, ok, first_bad

  return guarded


def make_train_chunk(
    step_fn: Callable[[TrainState, Batch], tuple[TrainState, dict]],
    *,
    num_examples: int,
    batch_size: int,
    batch_sharding: jax.sharding.Sharding | None = None,
    nan_policy: str = "halt",
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]:
  """Builds ``chunk(state, data, n)``: ``n`` steps over on-device data, jit-ready.

  The data order is a fresh permutation per epoch, from
  ``fold_in(data_key, epoch)``; it depends only on the step, so a chunk can
  start anywhere (a resumed run sees the same batches). An epoch drops the
  last ``num_examples % batch_size`` examples of its permutation. ``n`` is a
  traced scalar, so chunks of any length up to one epoch share one compile.

  Non-finite updates (loss, gradient norm or parameters) are caught on the
  device. Under ``nan_policy='halt'`` the chunk stops at the first one and
  reports it as ``nonfinite_step`` (the step whose update was dropped) and
  ``nonfinite_leaf`` (the first bad leaf of ``tree_leaves(params)``), both -1
  when all was well; under 'skip' the update is dropped, counted in
  ``state.skipped``, and training goes on.

  Args:
    step_fn: ``state, metrics = step_fn(state, batch)``.
    num_examples: N, the training set's size.
    batch_size: B, the global batch.
    batch_sharding: how each gathered batch is laid out (split over devices).
    nan_policy: 'halt' or 'skip'.

  Returns:
    ``chunk(state, data, n) -> (state, metrics)``: the mean of each metric
    over the chunk's finite steps, plus the fault report above.
  """
  if batch_size > num_examples:
    raise JaxdlError(
        f"train.batch_size={batch_size} exceeds the {num_examples} training examples")
  if nan_policy not in NAN_POLICIES:
    raise JaxdlError(f"train.nan_policy='{nan_policy}' must be one of {', '.join(NAN_POLICIES)}")
  steps_per_epoch = num_examples // batch_size
  guarded = _guard(step_fn, nan_policy)

  def epoch_order(data_root, epoch):
    return jax.random.permutation(jax.random.fold_in(data_root, epoch), num_examples)

  def chunk(state, data, n):
    data_root, _ = step_keys(state.rng, state.step)
    first_epoch = state.step // steps_per_epoch
    # A chunk spans at most two epochs (n <= steps_per_epoch), so two
    # permutations per call suffice instead of one sort per step.
    orders = (epoch_order(data_root, first_epoch), epoch_order(data_root, first_epoch + 1))

    def gather(step):
      start = (step % steps_per_epoch) * batch_size
      idx = jnp.where(step // steps_per_epoch == first_epoch,
                      jax.lax.dynamic_slice(orders[0], (start,), (batch_size,)),
                      jax.lax.dynamic_slice(orders[1], (start,), (batch_size,)))  # (B,)
      batch = {k: jnp.take(v, idx, axis=0) for k, v in data.items()}
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      return batch

    sample = jax.eval_shape(lambda s: step_fn(s, gather(s.step))[1], state)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), sample)
    minus_one = jnp.full((), -1, jnp.int32)

    def body(carry):
      i, state, sums, count, bad_step, bad_leaf = carry
      at = state.step
      state, metrics, ok, first_bad = guarded(state, gather(state.step))
      sums = jax.tree_util.tree_map(lambda s, v: s + jnp.where(ok, v, jnp.zeros_like(v)), sums, metrics)
      if nan_policy == "halt":
        bad_step = jnp.where(ok, bad_step, at.astype(jnp.int32))
        bad_leaf = jnp.where(ok, bad_leaf, first_bad)
      return i + 1, state, sums, count + ok.astype(jnp.int32), bad_step, bad_leaf

    def keep_going(carry):  # a while loop, so 'halt' ends the chunk at once
      i, _, _, _, bad_step, _ = carry
      return (i < n) & (bad_step < 0)

    _, state, sums, count, bad_step, bad_leaf = jax.lax.while_loop(
        keep_going, body, (jnp.zeros((), jnp.int32), state, zeros, jnp.zeros((), jnp.int32),
                           minus_one, minus_one))
    metrics = jax.tree_util.tree_map(lambda s: s / jnp.maximum(count, 1), sums)
    if nan_policy == "halt":
      metrics.update(nonfinite_step=bad_step, nonfinite_leaf=bad_leaf)
    if hasattr(state, "skipped"):
      metrics["skipped"] = state.skipped
    return state, metrics

  chunk.steps_per_epoch = steps_per_epoch
  return chunk


def make_evaluate(
    state_eval_step: Callable[[TrainState, Batch], dict],
    x: np.ndarray,
    y: np.ndarray,
    *,
    mesh: jax.sharding.Mesh,
    batch_size: int,
) -> Callable[[TrainState], dict[str, float]]:
  """Puts a test set on the devices once; returns ``evaluate(state)``.

  The set is padded to whole batches (a mask keeps the padding out of the
  means) and scanned in one jitted call, each batch split over the devices.
  """
  n_dev = mesh.devices.size
  batch_size = -(-min(batch_size, len(x)) // n_dev) * n_dev  # round up to the devices
  num_batches = -(-len(x) // batch_size)
  pad = num_batches * batch_size - len(x)
  mask = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
  xs = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
  ys = np.concatenate([y, np.zeros(pad, y.dtype)])
  batches = {
      "x": xs.reshape(num_batches, batch_size, *x.shape[1:]),
      "y": ys.reshape(num_batches, batch_size),
      "mask": mask.reshape(num_batches, batch_size),
  }
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))
  batches = jax.tree_util.tree_map(
      lambda a: jax.make_array_from_callback(a.shape, sharding, lambda i, a=a: a[i]), batches)

  @jax.jit
  def evaluate_all(state, batches):
    def body(totals, batch):
      m = state_eval_step(state, batch)
      return jax.tree_util.tree_map(jnp.add, totals, {
          "loss": m["loss"] * m["count"], "accuracy": m["accuracy"] * m["count"],
          "count": m["count"]}), None

    zero = jnp.zeros((), jnp.float32)
    totals, _ = jax.lax.scan(body, {"loss": zero, "accuracy": zero, "count": zero}, batches)
    return {"loss": totals["loss"] / totals["count"], "accuracy": totals["accuracy"] / totals["count"]}

  def evaluate(state):
    return {k: float(v) for k, v in jax.device_get(evaluate_all(state, batches)).items()}

  return evaluate


# ------------------------------------------------------------------ builder --


def model_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """``config.model`` without its name, as keyword arguments: dtypes parsed, lists made tuples."""
  kwargs = {k: v for k, v in config.model.items() if k != "name"}
  for key in ("dtype", "param_dtype"):
    if isinstance(kwargs.get(key), str):
      try:
        kwargs[key] = jnp.dtype(kwargs[key])
      except TypeError:
        raise JaxdlError(f"model.{key}='{kwargs[key]}' is not a dtype") from None
  return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def validate_schedule(config: ml_collections.ConfigDict,
                      positive: tuple[str, ...] = ("steps", "batch_size", "log_every")) -> None:
  """One-line errors for the keys every :func:`fit`-driven loop reads.

  Args:
    config: the run's config.
    positive: the ``train.*`` keys that must be > 0.
  """
  t = config.train
  for key in positive:
    if t[key] <= 0:
      raise JaxdlError(f"train.{key}={t[key]} must be > 0")
  if t.eval_every < 0:
    raise JaxdlError(f"train.eval_every={t.eval_every} must be >= 0 (0: only at the end)")
  if config.checkpoint.every_steps < 0:
    raise JaxdlError(f"checkpoint.every_steps={config.checkpoint.every_steps} must be >= 0 (0: only at the end)")
  if config.optim.learning_rate <= 0:
    raise JaxdlError(f"optim.learning_rate={config.optim.learning_rate} must be > 0")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """One-line errors for values no run can use."""
  t = config.train
  validate_schedule(config, ("steps", "batch_size", "eval_batch_size", "log_every"))
  if not 0 <= t.label_smoothing < 1:
    raise JaxdlError(f"train.label_smoothing={t.label_smoothing} must be in [0, 1)")
  a = config.augment
  if a.shift < 0 or a.noise < 0 or a.mixup < 0 or not 0 <= a.scale < 1:
    raise JaxdlError("augment.shift, noise and mixup must be >= 0 and augment.scale in [0, 1)")


class Experiment:
  """Everything a supervised run needs, built from a config and checked.

  Building it validates the config, loads the data, builds the model and
  initialises it, so every bad input fails here, before anything is written.

  Attributes:
    config, dataset, model, mesh, state, schedule, train_step (bound, pure),
    chunk (jitted, donating the state), evaluate, steps_per_epoch.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    validate_config(config)
    self.config = config
    t = config.train
    self.dataset = data_lib.load_dataset(
        config.data.name, config.data.path or None, num_classes=config.data.num_classes)
    ds = self.dataset
    self.mesh = parallel.make_mesh(t.num_devices)
    parallel.check_divisible(t.batch_size, self.mesh)
    self.model = models_lib.get_model(config.model.name, ds.num_classes, **model_kwargs(config))
    tx, self.schedule = optim_lib.from_config(config.optim, t.steps)
    try:
      state = create_train_state(self.model, tx, jax.random.PRNGKey(t.seed), ds.x_train[:2])
    except JaxdlError:
      raise
    except Exception as e:  # shape errors from inside Flax/XLA, made one line
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise JaxdlError(
          f"model '{config.model.name}' cannot take data '{ds.name}' with inputs of shape "
          f"{ds.input_shape}: {first}") from e
    self.state = parallel.put_replicated(state, self.mesh)
    augment = data_lib.make_augment(
        shift=config.augment.shift, flip=config.augment.flip, noise=config.augment.noise,
        mixup=config.augment.mixup, scale=config.augment.scale)
    # Trace the augmentation once now, so an option that does not fit the
    # data (a shift on vector inputs, say) fails before anything is written.
    jax.eval_shape(augment, jax.random.PRNGKey(0), ds.x_train[:2],
                   np.zeros((2, ds.num_classes), np.float32))
    self.train_step = functools.partial(
        train_step, num_classes=ds.num_classes, augment=augment,
        label_smoothing=t.label_smoothing, schedule=self.schedule)
    chunk = make_train_chunk(
        self.train_step, num_examples=ds.num_train, batch_size=t.batch_size,
        batch_sharding=parallel.batch_sharded(self.mesh), nan_policy=t.nan_policy)
    self.steps_per_epoch = chunk.steps_per_epoch
    self.chunk = jax.jit(chunk, donate_argnums=(0,))
    self.train_data = parallel.put_replicated(
        {"x": ds.x_train, "y": ds.y_train}, self.mesh)
    self.evaluate = make_evaluate(
        eval_step, ds.x_test, ds.y_test, mesh=self.mesh, batch_size=t.eval_batch_size)

  def run_chunk(self, state: TrainState, n) -> tuple[TrainState, dict]:
    return self.chunk(state, self.train_data, n)


def _param_path(params, leaf: int) -> str:
  """Dotted path (``params.Dense_0.kernel``) of the leaf-th parameter."""
  if leaf < 0:
    return "none (the loss itself)"
  path, _ = jax.tree_util.tree_flatten_with_path(params)[0][leaf]
  return "params." + ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


@dataclasses.dataclass
class Fitted:
  """What :func:`fit` hands back to a loop's ``train_and_evaluate``.

  Attributes:
    state: the final state (on the devices).
    summary: ``jaxdl.train.loop.run``'s summary (last metrics, timings).
    history: every record written to ``metrics.jsonl`` by this process.
    start: the step this process started from (0 unless it resumed).
    checkpoint_saves, checkpoint_seconds: checkpoints written, and the time
      training waited on them.
  """

  state: Any
  summary: dict
  history: list
  start: int
  checkpoint_saves: int
  checkpoint_seconds: float


def fit(
    exp: Any,
    workdir: str | pathlib.Path,
    *,
    eval_fn: Callable[[Any], Mapping[str, float]],
    headline: Callable[[Any], str],
    on_start: Callable[[bool], None] | None = None,
    desc: str = "train",
    total_steps: int | None = None,
    eval_every: int | None = None,
    place: Callable[[Any], Any] | None = None,
) -> Fitted:
  """Trains an experiment in ``workdir``: the part every loop shares.

  Checks the workdir (fresh start, resume of the same config, or a one-line
  refusal), restores the newest intact checkpoint, writes ``config.json``,
  runs ``jaxdl.train.loop.run`` over ``exp.run_chunk`` with checkpoints every
  ``checkpoint.every_steps`` and at the end, and turns a divergence into a
  one-line error naming the parameter and the last good checkpoint.

  Args:
    exp: built experiment: ``config``, ``state`` (replicated over
      ``mesh``), ``mesh``, ``run_chunk(state, n)``, ``steps_per_epoch`` (the
      longest chunk), and optionally ``param_path(state, leaf) -> str`` and
      ``on_checkpoint(step, state, directory)``: called on process 0 just
      before checkpoint ``step`` is started in ``directory``, to save what
      lives outside the state pytree (the DQN host loop's Gymnasium envs), so
      that whatever it writes is on disk before the checkpoint can be.
    workdir: the run's output directory.
    eval_fn: ``state -> metrics`` on the held-out data.
    headline: ``state -> str``, the line printed before training starts.
    on_start: called with ``resuming`` once the workdir is accepted and
      before anything is written (a loop's own files, or its own refusals).
    desc: the progress bar's label.
    total_steps: the step to train to; default ``train.steps``.
    eval_every: steps between evaluations; default ``train.eval_every``, or
      once per ``exp.steps_per_epoch`` when that is 0.
    place: puts a restored host state where training wants it; default
      replicated over ``exp.mesh``.

  Returns:
    A :class:`Fitted`.
  """
  config = exp.config
  t, c = config.train, config.checkpoint
  # Names the leaf a divergence points at; a state without ``params`` (a
  # GAN's two networks) says how its leaves are numbered.
  param_path = getattr(exp, "param_path", None) or (lambda state, leaf: _param_path(state.params, leaf))
  workdir = pathlib.Path(workdir)
  resuming = workdir_lib.check(workdir, to_dict(config), resume=c.resume)
  if on_start is not None:
    on_start(resuming)
  ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=c.max_to_keep, async_save=c.async_save,
                      best_metric=c.keep_best, best_mode=c.best_mode, log=console)
  state, start = exp.state, 0
  if resuming:
    restored = ckpt.restore_latest(jax.device_get(exp.state))
    if restored is not None:
      host_state, start = restored
      state = (place or (lambda s: parallel.put_replicated(s, exp.mesh)))(host_state)
      console(f"jaxdl: resuming from step {start} ({ckpt.directory / str(start)})")
  workdir.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:
    write_text_atomic(workdir / "config.json", json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")
  console(headline(state))
  total_steps = t.steps if total_steps is None else total_steps
  if eval_every is None:
    eval_every = t.eval_every or exp.steps_per_epoch
  every = c.every_steps
  on_checkpoint = getattr(exp, "on_checkpoint", None)

  def save_checkpoint(step, state, metrics):
    if (every > 0 and step % every == 0) or step == total_steps:
      if on_checkpoint is not None and jax.process_index() == 0:
        on_checkpoint(step, state, ckpt.directory)
      ckpt.save(step, state, metrics=metrics)
      if os.environ.get("JAXDL_FAULT_KILL_AFTER_SAVE") == str(step):  # fault injection for tests
        os.kill(os.getpid(), signal.SIGKILL)

  writer = MetricWriter(workdir, resume_step=start)
  try:
    state, summary = run(
        state, total_steps=total_steps, chunk_fn=exp.run_chunk, eval_fn=eval_fn,
        writer=writer, log_every=t.log_every, eval_every=eval_every, max_chunk=exp.steps_per_epoch,
        checkpoint_every=every, hooks=[save_checkpoint], desc=desc)
  except Diverged as e:
    ckpt.close()  # the saves already started are good: let them land
    kept = ckpt.steps()
    raise Diverged(e.step, e.leaf,
        f"non-finite loss or parameters at step {e.step} (first non-finite parameter: "
        f"{param_path(state, e.leaf)}); the update was not applied; last good checkpoint: "
        f"{f'step {kept[-1]}' if kept else 'none'} (train.nan_policy=skip drops such updates)") from None
  finally:
    writer.close()
  ckpt.close()
  return Fitted(state=state, summary=summary, history=writer.history, start=start,
                checkpoint_saves=ckpt.saves, checkpoint_seconds=ckpt.blocking_seconds)


def _plot_sequence_model(exp: Experiment, state: TrainState, workdir: pathlib.Path) -> None:
  """``input_gradients.png`` for a recurrent classifier, ``attention.png`` for a Transformer.

  The first shows how much gradient reaches each input step (the vanishing
  gradient of a tanh RNN), on the first 256 test examples; the second each
  layer's and head's attention on the first test example.
  """
  model, ds, name = exp.model, exp.dataset, exp.config.model.name
  variables = jax.device_get(state.variables())
  if isinstance(model, models_lib.RNNClassifier):
    x, y = ds.x_test[:256], ds.y_test[:256]
    norms = jax.jit(functools.partial(models_lib.input_gradient_norms, model.apply))(variables, x, y)
    plot_gradient_norms({name: np.asarray(norms)}, workdir / "input_gradients.png",
                        title=f"{name} on {ds.name}: gradient reaching each input step")
  elif isinstance(model, models_lib.TransformerClassifier):
    maps = jax.jit(functools.partial(models_lib.attention_maps, model))(variables, ds.x_test[:1])
    plot_attention_maps(np.stack([np.asarray(m[0]) for m in maps]), workdir / "attention.png",
                        title=f"{name} on {ds.name}: attention on test example 0 "
                              f"(label {int(ds.y_test[0])})")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> tuple[TrainState, dict]:
  """Trains a classifier as the config says and evaluates it on the test set.

  Writes into ``workdir``: ``config.json`` (the resolved config),
  ``metrics.jsonl`` (one record per log), TensorBoard events under ``tb/``,
  ``checkpoints/`` (Orbax), ``learning_curves.png``, ``input_gradients.png``
  (recurrent models) or ``attention.png`` (Transformers), and
  ``metrics.json`` (the final metrics, one flat object, including
  ``params_sha256``).

  A workdir that already holds this run resumes from its newest intact
  checkpoint and ends exactly where an uninterrupted run would have.

  Args:
    config: a config from ``jaxdl.configs.base_config()`` or a preset.
    workdir: the run's output directory.

  Returns:
    The final state and the final metrics dict.

  Raises:
    JaxdlError: bad input (before anything is written), or
      ``jaxdl.train.loop.Diverged`` under ``train.nan_policy=halt``.
  """
  parallel.maybe_initialize_distributed(config.train.distributed)
  t0 = time.perf_counter()
  exp = Experiment(config)  # every bad input fails here, before anything is written
  ds, t = exp.dataset, config.train
  workdir = pathlib.Path(workdir)
  n_params = param_count(exp.state.params)
  fitted = fit(exp, workdir, eval_fn=exp.evaluate, headline=lambda state: (
      f"jaxdl: {config.model.name} ({n_params:,} params) on {ds.name} "
      f"({ds.num_train} train / {ds.num_test} test, inputs {ds.input_shape}, "
      f"{ds.num_classes} classes), {exp.mesh.devices.size} {jax.default_backend()} device(s), "
      f"{t.steps} steps of batch {t.batch_size}"))
  state, summary = fitted.state, fitted.summary
  last_train = next((r for r in reversed(fitted.history) if "train/loss" in r), {})
  test = ({"test/loss": summary["test/loss"], "test/accuracy": summary["test/accuracy"]}
          if "test/loss" in summary else {f"test/{k}": v for k, v in exp.evaluate(state).items()})
  steps_done = int(jax.device_get(state.step))
  final = {
      "test_accuracy": test["test/accuracy"],
      "test_loss": test["test/loss"],
      "train_loss": last_train.get("train/loss", float("nan")),
      "train_accuracy": last_train.get("train/accuracy", float("nan")),
      "steps": steps_done,
      "epochs": steps_done / exp.steps_per_epoch,
      "skipped_steps": int(jax.device_get(state.skipped)),
      "resumed_from_step": fitted.start,
      "wall_seconds": time.perf_counter() - t0,
      "train_seconds": summary["wall_seconds"],
      "first_chunk_seconds": summary["first_chunk_seconds"],
      "steps_per_second": summary.get("steps_per_second", 0.0),
      "checkpoint_saves": fitted.checkpoint_saves,
      "checkpoint_seconds": fitted.checkpoint_seconds,  # time training waited on checkpoints
      "params_sha256": tree_sha256(state.params),
      "param_count": n_params,
      "num_devices": int(exp.mesh.devices.size),
      "backend": jax.default_backend(),
      "dataset": ds.name,
      "model": config.model.name,
      "seed": t.seed,
  }
  if jax.process_index() == 0:
    write_json(workdir / "metrics.json", final)
    plot_learning_curves(fitted.history, workdir / "learning_curves.png",
                         title=f"{config.model.name} on {ds.name}")
    _plot_sequence_model(exp, state, workdir)
  console(f"test_accuracy={final['test_accuracy']:.4f} test_loss={final['test_loss']:.4f} "
          f"({final['steps']} steps, {final['wall_seconds']:.1f} s) -> {workdir}/metrics.json")
  return state, final
