"""The on-device chunk: batch sources that depend only on the step, and the NaN guard."""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import train
from jaxdl.train import fresh_batches, make_chunk
from jaxdl.utils.errors import JaxdlError


@flax.struct.dataclass
class TwoNets:
  """A state with two parameter sets, like a GAN's; ``a`` goes NaN at step 3 when asked."""
  step: jax.Array
  rng: jax.Array
  skipped: jax.Array
  a: jax.Array
  b: jax.Array


def noisy_step(state, batch, *, nan_at=-1):
  a = state.a + batch["x"].mean()
  a = jnp.where(state.step == nan_at, jnp.nan, a)
  return state.replace(step=state.step + 1, a=a, b=state.b + 1.0), {"loss": a, "other": state.b}


def start():
  return TwoNets(step=jnp.int32(0), rng=jax.random.PRNGKey(0), skipped=jnp.int32(0), a=jnp.float32(0),
                 b=jnp.float32(0))


SOURCE = fresh_batches(lambda key, data: {"x": jax.random.normal(key, (4,)) + data["shift"]})
DATA = {"shift": jnp.float32(1.0)}


def test_fresh_batches_depend_only_on_the_step():
  chunk = jax.jit(make_chunk(noisy_step, SOURCE, params_of=lambda s: (s.a, s.b), watch=("loss",)))
  one, _ = chunk(start(), DATA, np.int32(5))
  split, _ = chunk(start(), DATA, np.int32(2))
  split, metrics = chunk(split, DATA, np.int32(3))
  chex.assert_trees_all_equal(one, split)
  assert int(metrics["nonfinite_step"]) == -1 and int(metrics["skipped"]) == 0
  np.testing.assert_allclose(metrics["other"], np.mean([2.0, 3.0, 4.0]))  # the mean over the chunk


def test_halt_stops_at_the_bad_step_and_names_the_leaf():
  step = lambda s, b: noisy_step(s, b, nan_at=3)
  chunk = jax.jit(make_chunk(step, SOURCE, params_of=lambda s: (s.b, s.a), watch=("loss",)))
  state, metrics = chunk(start(), DATA, np.int32(6))
  assert int(metrics["nonfinite_step"]) == 3 and int(metrics["nonfinite_leaf"]) == 1  # (b, a): a is leaf 1
  assert int(state.step) == 3 and np.isfinite(float(state.a))  # the bad update was not applied


def test_skip_drops_the_bad_update_and_goes_on():
  step = lambda s, b: noisy_step(s, b, nan_at=3)
  chunk = jax.jit(make_chunk(step, SOURCE, nan_policy="skip", params_of=lambda s: (s.a, s.b)))
  state, metrics = chunk(start(), DATA, np.int32(6))
  assert int(state.step) == 6 and int(state.skipped) == 1 and int(metrics["skipped"]) == 1
  assert float(state.b) == 5.0 and np.isfinite(float(state.a))
  assert "nonfinite_step" not in metrics


def test_an_unknown_nan_policy_is_refused():
  with pytest.raises(JaxdlError, match="train.nan_policy='ignore'"):
    make_chunk(noisy_step, SOURCE, nan_policy="ignore")


@flax.struct.dataclass
class CountingState:
  """A stand-in state that records which examples each step saw."""
  step: jax.Array
  rng: jax.Array
  seen: jax.Array


def test_each_epoch_visits_every_example_once_and_orders_differ():
  n, b = 50, 8  # 6 steps per epoch, 2 examples dropped per epoch
  data = {"x": jnp.arange(n, dtype=jnp.float32)[:, None], "y": jnp.arange(n)}

  def count_step(state, batch):
    seen = state.seen.at[state.step // 6, batch["y"]].add(1)
    return state.replace(step=state.step + 1, seen=seen), {"first": batch["x"][0, 0]}

  chunk = jax.jit(train.make_train_chunk(count_step, num_examples=n, batch_size=b))
  state = CountingState(step=jnp.int32(0), rng=jax.random.PRNGKey(0), seen=jnp.zeros((3, n), jnp.int32))
  # Chunks of uneven lengths that cross epoch boundaries.
  for length in (4, 5, 6, 3):
    state, _ = chunk(state, data, np.int32(length))
  assert int(state.step) == 18
  seen = np.asarray(state.seen)
  for epoch in range(3):
    assert seen[epoch].max() == 1 and seen[epoch].sum() == 48
  assert not np.array_equal(seen[0], seen[1])  # a fresh permutation per epoch

  # The order depends only on the step: one chunk of 6 + 6 sees the same as 4+5+3.
  other = CountingState(step=jnp.int32(0), rng=jax.random.PRNGKey(0), seen=jnp.zeros((3, n), jnp.int32))
  for length in (6, 6, 6):
    other, _ = chunk(other, data, np.int32(length))
  np.testing.assert_array_equal(other.seen, state.seen)


def test_sharded_batches_come_from_each_devices_own_rows_and_visit_each_once_per_epoch():
  mesh = train.parallel.make_mesh()
  shards, rows, b = mesh.devices.size, 7, 2 * mesh.devices.size  # 3 steps per epoch, 1 row per shard dropped
  n = shards * rows
  data = train.parallel.put_process_rows({"y": np.arange(n, dtype=np.int32)}, mesh, n)
  assert [s.data.shape for s in data["y"].addressable_shards] == [(rows,)] * shards

  def count_step(state, batch):
    seen = state.seen.at[state.step // 3, batch["y"]].add(1)
    return state.replace(step=state.step + 1, seen=seen), {"first": batch["y"][0].astype(jnp.float32)}

  chunk = jax.jit(train.make_train_chunk(count_step, num_examples=n, batch_size=b, sharded_over=mesh))
  assert chunk.steps_per_epoch == 3

  def run(lengths):
    state = CountingState(step=jnp.int32(0), rng=jax.random.PRNGKey(0), seen=jnp.zeros((3, n), jnp.int32))
    for length in lengths:
      state, _ = chunk(state, data, np.int32(length))
    return np.asarray(state.seen)

  seen = run((2, 3, 3, 1))
  for epoch in range(3):
    assert seen[epoch].max() == 1 and seen[epoch].sum() == b * 3
    per_shard = seen[epoch].reshape(shards, rows).sum(axis=1)  # rows of shard d are [d * rows, (d + 1) * rows)
    np.testing.assert_array_equal(per_shard, b // shards * 3)
  assert not np.array_equal(seen[0], seen[1])
  np.testing.assert_array_equal(run((3, 3, 3)), seen)  # the order depends only on the step

  # Step 0's batch: each device's part is drawn from its own rows only.
  draw = train.sharded_epoch_batches(rows_per_shard=rows, batch_size=b, mesh=mesh)
  state = CountingState(step=jnp.int32(0), rng=jax.random.PRNGKey(0), seen=jnp.zeros((3, n), jnp.int32))
  batch = jax.jit(lambda s, d: draw(s, d)(s))(state, data)
  for shard in batch["y"].addressable_shards:
    d = shard.index[0].start // (b // shards)
    assert np.all(np.asarray(shard.data) // rows == d), (d, shard.data)
