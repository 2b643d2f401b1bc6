"""``threefry.straight_line``: JAX's own random bits, lowered without a loop on the CPU."""

import concurrent.futures
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.utils import threefry

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the lowering only changes on the CPU")


def _draws(key):
  """Every kind of draw jaxdl's loops make, from one key."""
  k1, k2, k3 = jax.random.split(key, 3)
  return {
      "split": jax.random.split(k1, 5),
      "fold_in": jax.vmap(lambda i: jax.random.fold_in(k2, i))(jnp.arange(7)),
      "bits": jax.random.bits(k3, (3, 33), jnp.uint32),
      "uniform": jax.random.uniform(k1, (4, 17)),
      "normal": jax.random.normal(k2, (65,)),
      "truncated_normal": jax.random.truncated_normal(k3, -2.0, 2.0, (8, 8)),
      "randint": jax.random.randint(k1, (64,), 0, 10_007),
      "permutation": jax.random.permutation(k2, 100),
      "per_seed": jax.vmap(lambda k: jax.random.uniform(k, (3,)))(jax.random.split(k3, 4)),
  }


def _lower():
  """``_draws`` freshly traced and lowered (a new function: nothing comes from a cache)."""
  return jax.jit(lambda k: _draws(k)).lower(jax.random.PRNGKey(0))


def _loops(lowered) -> int:
  return lowered.as_text().count("stablehlo.while")


def test_straight_line_draws_the_same_bits_as_jax_loop():
  assert threefry.available()  # this JAX has the rules where expected
  loop = _lower()
  with threefry.straight_line():
    line = _lower()
  # Really two different programs: JAX's CPU lowering loops, the straight line does not.
  assert _loops(loop) > 0
  assert _loops(line) == 0
  loop_fn, line_fn = loop.compile(), line.compile()
  for seed in (0, 1, 12345, 2**31 - 1):
    key = jax.random.PRNGKey(seed)
    want, got = jax.device_get(loop_fn(key)), jax.device_get(line_fn(key))
    for name in want:
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_jax_rule_comes_back_when_the_last_block_closes():
  with threefry.straight_line():
    with threefry.straight_line():
      pass
    assert _loops(_lower()) == 0  # the outer block is still open
  assert _loops(_lower()) > 0
  # A raising block restores it too.
  with pytest.raises(ValueError):
    with threefry.straight_line():
      raise ValueError
  assert _loops(_lower()) > 0


def test_blocks_open_in_several_threads_at_once():
  """A thread leaving its block does not take the rule from one still inside (the seed-group threads)."""
  inside, leave = threading.Barrier(2), threading.Event()

  def first():
    with threefry.straight_line():
      inside.wait()
    leave.set()

  def second():
    with threefry.straight_line():
      inside.wait()
      leave.wait()  # the first thread has closed its block
      return _loops(_lower())

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    a, b = pool.submit(first), pool.submit(second)
    a.result()
    assert b.result() == 0
  assert _loops(_lower()) > 0


def test_decorated_function_lowers_inside():
  @threefry.straight_line()
  def lower_here():
    return _loops(_lower())

  assert lower_here() == 0
  assert _loops(_lower()) > 0
