"""GAN models: the transposed convolution against Flax's, shapes, spectral norm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models import gan as gan_models
from jaxdl.utils.errors import JaxdlError


@pytest.mark.parametrize("kernel,stride", [((4, 4), (2, 2)), ((3, 3), (2, 2)), ((3, 3), (1, 1))])
@pytest.mark.parametrize("impl", ["xla", "im2col"])
def test_conv_transpose_equals_flax(kernel, stride, impl):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 5, 6))
  reference = nn.ConvTranspose(7, kernel, stride, padding="SAME")
  variables = reference.init(jax.random.PRNGKey(1), x)
  ours = gan_models.ConvTranspose(7, kernel, stride, impl=impl)
  assert jax.tree_util.tree_map(jnp.shape, ours.init(jax.random.PRNGKey(1), x)) == \
      jax.tree_util.tree_map(jnp.shape, variables)
  expected = reference.apply(variables, x)
  got = ours.apply(variables, x)
  assert got.shape == (3, 4 * stride[0], 5 * stride[1], 7)
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
  # The gradients agree too (the im2col path is what trains on CPU).
  g_ref = jax.grad(lambda v: jnp.sum(jnp.sin(reference.apply(v, x))))(variables)
  g_ours = jax.grad(lambda v: jnp.sum(jnp.sin(ours.apply(v, x))))(variables)
  for a, b in zip(jax.tree_util.tree_leaves(g_ref), jax.tree_util.tree_leaves(g_ours)):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_dcgan_shapes_ranges_and_parameter_counts():
  g, d = gan_models.make_gan("dcgan", (8, 8, 1), g_features=(16, 8), d_features=(8, 16))
  z = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
  g_vars = g.init(jax.random.PRNGKey(1), z, train=False)
  images = g.apply(g_vars, z, train=False)
  assert images.shape == (5, 8, 8, 1) and float(images.min()) >= 0 and float(images.max()) <= 1
  # dense 4 -> 2*2*16 (no bias), BN(16), convT 16 -> 8 (4x4, no bias), BN(8), convT 8 -> 1 (4x4 + bias)
  expected = 4 * 64 + 2 * 64 + 16 * 16 * 8 + 2 * 8 + 16 * 8 + 1
  assert sum(x.size for x in jax.tree_util.tree_leaves(g_vars["params"])) == expected
  d_vars = d.init(jax.random.PRNGKey(2), images, train=False)
  assert d.apply(d_vars, images, train=False).shape == (5,)
  with pytest.raises(JaxdlError, match="not divisible"):
    gan_models.make_gan("dcgan", (6, 6, 1), g_features=(16, 8))[0].init(jax.random.PRNGKey(0), z, train=False)
  with pytest.raises(JaxdlError, match="unknown GAN model"):
    gan_models.make_gan("vae", (2,))


def test_spectral_norm_bounds_each_layer():
  _, d = gan_models.make_gan("mlp", (2,), d_hidden=(32, 32), spectral_norm=True)
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
  variables = d.init(jax.random.PRNGKey(1), x, train=False)
  assert set(variables["batch_stats"]) == {"SpectralNorm_0", "SpectralNorm_1", "SpectralNorm_2"}
  # Power iterations converge on sigma; the normalised network is then
  # 1-Lipschitz (leaky ReLU is), so its input gradients have norm <= 1.
  for _ in range(30):
    _, updates = d.apply(variables, x, train=True, mutable=["batch_stats"])
    variables = {**variables, **updates}
  grads = jax.vmap(jax.grad(lambda p: d.apply(variables, p[None], train=False)[0]))(x)
  assert float(jnp.max(jnp.linalg.norm(grads, axis=1))) <= 1.0 + 1e-3
