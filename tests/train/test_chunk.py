"""The on-device chunk: batch sources that depend only on the step, and the NaN guard."""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
