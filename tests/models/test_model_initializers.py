"""Initializers by name give the variance their papers prescribe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models import INITIALIZERS, Conv, get_initializer
from jaxdl.utils.errors import JaxdlError

jax.config.update('jax_numpy_rank_promotion', 'raise')

KEY = jax.random.PRNGKey(0)
FAN_IN, FAN_OUT = 400, 300  # 120k samples: the std estimate is good to ~0.5%


def _kernel(name, shape=(FAN_IN, FAN_OUT)):
  return np.asarray(jax.jit(get_initializer(name), static_argnums=1)(KEY, shape))


@pytest.mark.parametrize('name,expected_std', [
    ('lecun', np.sqrt(1 / FAN_IN)),
    ('he', np.sqrt(2 / FAN_IN)),
    ('glorot', np.sqrt(2 / (FAN_IN + FAN_OUT))),
])
def test_kernel_std_matches_the_rule(name, expected_std):
  w = _kernel(name)
  assert abs(w.mean()) < 0.05 * expected_std
  assert w.std() == pytest.approx(expected_std, rel=0.1)


def test_glorot_is_uniform_within_its_bound():
  w = _kernel('glorot')
  bound = np.sqrt(6 / (FAN_IN + FAN_OUT))
  assert np.abs(w).max() <= bound
  assert np.abs(w).max() > 0.99 * bound  # uniform fills the range, a normal would not stop there


def test_orthogonal_has_orthonormal_columns():
  w = _kernel('orthogonal', (256, 64))
  np.testing.assert_allclose(w.T @ w, np.eye(64), atol=1e-5)


def test_conv_kernel_fan_in_counts_the_window():
  # fan_in of a (3, C_in=128, 256) kernel is 3 * 128, as in flax.linen.Conv.
  conv = Conv(256, (3,), kernel_init='he', impl='xla')
  kernel = jax.jit(conv.init)(KEY, jnp.ones((1, 8, 128)))['params']['kernel']
  assert kernel.shape == (3, 128, 256)
  assert float(kernel.std()) == pytest.approx(np.sqrt(2 / (3 * 128)), rel=0.1)


def test_unknown_initializer_lists_the_choices():
  assert INITIALIZERS == ('lecun', 'glorot', 'he', 'orthogonal')
  with pytest.raises(JaxdlError, match=(
      r"unknown initializer 'xavier' \(choices: lecun, glorot, he, orthogonal\)")):
    get_initializer('xavier')
