"""GAN losses and the penalties on the discriminator's input gradients.

- ``non_saturating``: the original GAN's discriminator loss with the
  generator maximising ``log D(G(z))`` (Goodfellow et al., 2014, sec. 3);
- ``hinge``: ``relu(1 - D(x)) + relu(1 + D(G(z)))``, generator ``-D(G(z))``
  (Lim & Ye, 2017; Miyato et al., 2018);
- ``wgan_gp``: the Wasserstein critic with a gradient penalty pulling
  ``||grad D||`` to 1 on random interpolates (Gulrajani et al., 2017).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdl.loops.gan.config import LOSSES
from jaxdl.utils.errors import JaxdlError


def discriminator_loss(loss: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """The discriminator's (critic's) loss, without penalties; scalar."""
  if loss == "non_saturating":  # -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
  if loss == "hinge":
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
  if loss == "wgan_gp":
    return jnp.mean(fake_logits) - jnp.mean(real_logits)
  raise JaxdlError(f"gan.loss='{loss}' is unknown (choices: {', '.join(LOSSES)})")


def generator_loss(loss: str, fake_logits: jax.Array) -> jax.Array:
  """The generator's loss on the discriminator's logits for its samples; scalar."""
  if loss == "non_saturating":  # -log sigmoid(D(G(z)))
    return jnp.mean(jax.nn.softplus(-fake_logits))
  if loss in ("hinge", "wgan_gp"):
    return -jnp.mean(fake_logits)
  raise JaxdlError(f"gan.loss='{loss}' is unknown (choices: {', '.join(LOSSES)})")


def _input_grad_norms(d_fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """||grad_x D(x)|| per example (B,); ``d_fn`` maps (B, ...) to (B,) and
  treats examples independently, so the gradient of the sum is per-example."""
  grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(x)
  sq = jnp.sum(jnp.square(grads).reshape(x.shape[0], -1), axis=1)
  # The tiny offset keeps the square root's derivative finite at 0.
  return jnp.sqrt(sq + 1e-12)


def r1_penalty(d_fn: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
  """``E ||grad_x D(x)||^2`` over real examples (Mescheder et al., 2018, eq. 9
  without the gamma / 2 factor); scalar."""
  return jnp.mean(jnp.square(_input_grad_norms(d_fn, real)))


def gradient_penalty(d_fn: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array,
                     key: jax.Array) -> jax.Array:
  """WGAN-GP's ``E (||grad D(x_hat)|| - 1)^2`` on random interpolates; scalar.

  ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per
  example (Gulrajani et al., 2017, alg. 1).
  """
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  x_hat = eps * real + (1.0 - eps) * fake
  return jnp.mean(jnp.square(_input_grad_norms(d_fn, x_hat) - 1.0))
