"""The on-device chunk: many steps in one jitted ``while_loop``, the NaN guard, batch sources.

Every loop trains through :func:`make_chunk`. A loop brings its pure step and
a *batch source*, which says where step t's batch comes from:

- :func:`epoch_batches`: a fresh permutation of a device-resident training
  set each epoch (the supervised loop; the language model's windows);
- :func:`sharded_epoch_batches`: the same for a set sharded on its rows over
  the devices, each device drawing its part of the batch from its own rows
  (the supervised loop under ``data.placement=sharded``);
- :func:`fresh_batches`: a new draw each step from ``fold_in(data_root, t)``,
  with no epochs to finish (a GAN's real samples);
- :func:`no_batches`: nothing, for a step that makes its own data (self-play).

Either way a batch depends only on the step and the state's key, so a chunk
can start anywhere and a resumed run sees the same batches. ``n``, the
chunk's length, is traced: chunks of any length share one compile.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxdl.train.parallel import DATA_AXIS
from jaxdl.train.state import step_keys
from jaxdl.utils.errors import JaxdlError

Batch = Mapping[str, jax.Array]
StepFn = Callable[[Any, Batch], tuple[Any, dict]]
# source(state, data) -> draw, called once per chunk (its work is shared by the
# chunk's steps); draw(state) -> the batch for state.step, called every step.
BatchSource = Callable[[Any, Any], Callable[[Any], Batch]]

NAN_POLICIES = ("halt", "skip")


def check_nan_policy(nan_policy: str) -> None:
  if nan_policy not in NAN_POLICIES:
    raise JaxdlError(f"train.nan_policy='{nan_policy}' must be one of {', '.join(NAN_POLICIES)}")


def guard(step_fn: StepFn, nan_policy: str, *, params_of: Callable[[Any], Any],
          watch: Sequence[str]):
  """Wraps a step so a non-finite update never lands in the state.

  Returns ``step(state, batch) -> (state, metrics, ok, first_bad_leaf)``.
  Under 'halt' a bad update leaves the state as it was (the chunk then
  stops); under 'skip' only the step counter and ``state.skipped`` move on.
  The checks are reductions on the device: no host round trip.

  Args:
    step_fn: the pure step.
    nan_policy: 'halt' or 'skip'.
    params_of: the parameters to check in a state (their leaves are numbered
      in ``tree_leaves`` order for the fault report).
    watch: metrics that must be finite too (those the step reports).
  """

  def guarded(state, batch):
    new_state, metrics = step_fn(state, batch)
    leaves = jax.tree_util.tree_leaves(params_of(new_state))
    leaf_ok = jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]) if leaves else jnp.ones((1,), bool)
    ok = jnp.all(leaf_ok)
    for key in watch:
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


def make_chunk(
    step_fn: StepFn,
    source: BatchSource,
    *,
    nan_policy: str = "halt",
    params_of: Callable[[Any], Any] = lambda state: getattr(state, "params", {}),
    watch: Sequence[str] = ("loss", "grad_norm"),
    state_sharding: Any = None,
) -> Callable[[Any, Any, jax.Array], tuple[Any, dict]]:
  """Builds ``chunk(state, data, n)``: ``n`` guarded steps in one ``while_loop``, jit-ready.

  Non-finite updates (a watched metric or the parameters) are caught on the
  device. Under ``nan_policy='halt'`` the chunk stops at the first one and
  reports it as ``nonfinite_step`` (the step whose update was dropped) and
  ``nonfinite_leaf`` (the first bad leaf of ``tree_leaves(params_of(state))``),
  both -1 when all was well; under 'skip' the update is dropped, counted in
  ``state.skipped``, and training goes on.

  Args:
    step_fn: ``state, metrics = step_fn(state, batch)``; the state has
      ``step`` and ``rng`` fields (and ``skipped`` for ``nan_policy='skip'``).
    source: where each step's batch comes from (:func:`epoch_batches`,
      :func:`fresh_batches`).
    nan_policy: 'halt' or 'skip'.
    params_of: the parameters the guard checks (default: ``state.params``, or
      none for a state without them).
    watch: the metrics the guard checks.
    state_sharding: the state's layout (``jaxdl.train.sharding.state_shardings``),
      held after every step so a sharded state stays sharded through the loop
      and comes out as it went in (which donation needs); None: XLA's choice
      (a replicated state stays replicated).

  Returns:
    ``chunk(state, data, n) -> (state, metrics)``: the mean of each metric
    over the chunk's applied steps, ``skipped`` (if the state counts them),
    plus the fault report above.
  """
  check_nan_policy(nan_policy)
  # Jitted so that tracing it for the metrics' shapes below and again in the
  # loop's body is one trace (JAX caches it), not two; XLA inlines the call.
  step_fn = jax.jit(step_fn)
  guarded = guard(step_fn, nan_policy, params_of=params_of, watch=watch)

  def chunk(state, data, n):
    draw = source(state, data)
    sample = jax.eval_shape(lambda s: step_fn(s, draw(s))[1], state)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), sample)
    minus_one = jnp.full((), -1, jnp.int32)

    def body(carry):
      i, state, sums, count, bad_step, bad_leaf = carry
      at = state.step
      state, metrics, ok, first_bad = guarded(state, draw(state))
      if state_sharding is not None:
        state = jax.lax.with_sharding_constraint(state, state_sharding)
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
    if hasattr(state, "skipped"):  # 'halt' needs no counter: a state may go without one
      metrics["skipped"] = state.skipped
    return state, metrics

  return chunk


# ------------------------------------------------------------ batch sources --


def epoch_batches(*, num_examples: int, batch_size: int,
                  batch_sharding: jax.sharding.Sharding | None = None) -> BatchSource:
  """Batches of a device-resident set ``data`` (a dict of (N, ...) arrays), epoch by epoch.

  Each epoch's order is a permutation from ``fold_in(data_root, epoch)``, and
  an epoch drops the last ``num_examples % batch_size`` examples of it. The
  source has ``steps_per_epoch``; a chunk may span at most one epoch's steps.

  Args:
    num_examples: N, the training set's size.
    batch_size: B, the global batch.
    batch_sharding: how each gathered batch is laid out (split over devices).
  """
  if batch_size > num_examples:
    raise JaxdlError(
        f"train.batch_size={batch_size} exceeds the {num_examples} training examples")
  steps_per_epoch = num_examples // batch_size

  def epoch_order(data_root, epoch):
    return jax.random.permutation(jax.random.fold_in(data_root, epoch), num_examples)

  def source(state, data):
    data_root, _ = step_keys(state.rng, state.step)
    first_epoch = state.step // steps_per_epoch
    # A chunk spans at most two epochs (n <= steps_per_epoch), so two
    # permutations per call suffice instead of one sort per step.
    orders = (epoch_order(data_root, first_epoch), epoch_order(data_root, first_epoch + 1))

    def draw(s):
      step = s.step
      start = (step % steps_per_epoch) * batch_size
      idx = jnp.where(step // steps_per_epoch == first_epoch,
                      jax.lax.dynamic_slice(orders[0], (start,), (batch_size,)),
                      jax.lax.dynamic_slice(orders[1], (start,), (batch_size,)))  # (B,)
      batch = {k: jnp.take(v, idx, axis=0) for k, v in data.items()}
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      return batch

    return draw

  source.steps_per_epoch = steps_per_epoch
  return source


def sharded_epoch_batches(*, rows_per_shard: int, batch_size: int, mesh: jax.sharding.Mesh) -> BatchSource:
  """Batches of a set ``data`` sharded on its rows over ``mesh``'s ``data`` axis, epoch by epoch.

  Shard d (the device at position d of the axis) holds ``rows_per_shard``
  rows and gives ``batch_size / devices`` of each batch, in the order of a
  permutation of its own rows from ``fold_in(fold_in(data_root, epoch), d)``:
  rows never leave their device (a ``shard_map``, no gather across devices),
  and each epoch visits every row once, less each shard's last
  ``rows_per_shard % (batch_size / devices)``. The order depends on the
  number of shards, not on how they are spread over processes: one process
  of 4 devices and two of 2 draw the same batches. It differs from
  :func:`epoch_batches`'s single global permutation.

  Args:
    rows_per_shard: the rows each device holds (``data``'s leaves are
      ``(rows_per_shard * devices, ...)``, sharded on their leading axis).
    batch_size: B, the global batch, a multiple of the device count.
    mesh: the 1-D mesh ``data`` is sharded over.
  """
  shards = mesh.devices.size
  local_batch = batch_size // shards
  if local_batch > rows_per_shard:
    raise JaxdlError(f"train.batch_size={batch_size} needs {local_batch} rows on each of the {shards} devices, "
                     f"but the sharded training set holds {rows_per_shard} per device")
  steps_per_epoch = rows_per_shard // local_batch
  sharded, whole = P(DATA_AXIS), P()

  def local_orders(data_root, first_epoch):  # on one shard: its permutations of two epochs, (2 * rows,)
    shard = jax.lax.axis_index(DATA_AXIS)
    return jnp.concatenate([
        jax.random.permutation(jax.random.fold_in(jax.random.fold_in(data_root, e), shard), rows_per_shard)
        for e in (first_epoch, first_epoch + 1)])

  def local_batch_of(orders, step, first_epoch, data):  # on one shard: its (B / devices, ...) rows
    start = (step % steps_per_epoch) * local_batch + jnp.where(step // steps_per_epoch == first_epoch, 0,
                                                               rows_per_shard)
    idx = jax.lax.dynamic_slice(orders, (start,), (local_batch,))  # (B / devices,)
    return {k: jnp.take(v, idx, axis=0) for k, v in data.items()}

  def source(state, data):
    data_root, _ = step_keys(state.rng, state.step)
    first_epoch = state.step // steps_per_epoch
    # As in epoch_batches, a chunk spans at most two epochs: both orders once per chunk.
    orders = jax.shard_map(local_orders, mesh=mesh, in_specs=(whole, whole), out_specs=sharded)(
        data_root, first_epoch)

    def draw(s):
      return jax.shard_map(local_batch_of, mesh=mesh, in_specs=(sharded, whole, whole, sharded),
                           out_specs=sharded)(orders, s.step, first_epoch, data)

    return draw

  source.steps_per_epoch = steps_per_epoch
  return source


def fresh_batches(draw_fn: Callable[[jax.Array, Any], Batch], *,
                  batch_sharding: jax.sharding.Sharding | None = None) -> BatchSource:
  """Step t's batch is ``draw_fn(fold_in(data_root, t), data)``: drawn anew each step.

  For data without epochs: samples from a distribution, or a set drawn from
  with replacement. ``data_root`` is the data half of ``step_keys``.
  """

  def source(state, data):
    def draw(s):
      data_root, _ = step_keys(s.rng, s.step)
      batch = draw_fn(jax.random.fold_in(data_root, s.step), data)
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      return batch
    return draw

  return source


def no_batches(state, data) -> Callable[[Any], Batch]:
  """The source of a loop that makes its own data inside the step (self-play): every batch is empty."""
  del state, data
  return lambda s: {}


def make_train_chunk(
    step_fn: StepFn,
    *,
    num_examples: int,
    batch_size: int,
    batch_sharding: jax.sharding.Sharding | None = None,
    nan_policy: str = "halt",
    state_sharding: Any = None,
    sharded_over: jax.sharding.Mesh | None = None,
) -> Callable[[Any, Batch, jax.Array], tuple[Any, dict]]:
  """``make_chunk`` over :func:`epoch_batches`: ``chunk(state, data, n)`` with ``chunk.steps_per_epoch``.

  ``n`` may be at most ``chunk.steps_per_epoch``. See :func:`make_chunk` for
  the NaN guard and the metrics. With ``sharded_over``, ``data`` is sharded on
  its rows over that mesh and :func:`sharded_epoch_batches` draws from it
  (``num_examples`` is then the rows of all shards, a multiple of the device
  count).
  """
  if sharded_over is not None:
    rows = num_examples // sharded_over.devices.size
    source = sharded_epoch_batches(rows_per_shard=rows, batch_size=batch_size, mesh=sharded_over)
  else:
    source = epoch_batches(num_examples=num_examples, batch_size=batch_size,
                           batch_sharding=batch_sharding)
  chunk = make_chunk(step_fn, source, nan_policy=nan_policy, state_sharding=state_sharding)
  chunk.steps_per_epoch = source.steps_per_epoch
  return chunk
