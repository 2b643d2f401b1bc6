"""The GAN's state: both networks, both optimizers, the EMA generator, the step and the key."""

import functools
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdl.train.state import init_program, init_variables


@flax.struct.dataclass
class GANState:
  """Both networks, both optimizers, the EMA generator, the step and the key.

  Attributes:
    step: generator updates done (int32 scalar).
    g_params, d_params: the generator's and discriminator's parameters.
    g_batch_stats: the generator's BatchNorm running statistics ({} if none).
    d_batch_stats: the discriminator's spectral-norm power-iteration vectors
      ({} without spectral normalisation).
    g_opt_state, d_opt_state: the two Optax states.
    ema_params: the exponential moving average of ``g_params``.
    rng: the run's root key; step t draws from ``fold_in(., t)``.
    skipped: updates dropped by ``train.nan_policy=skip``.
  """

  step: jax.Array
  g_params: Any
  d_params: Any
  g_batch_stats: Any
  d_batch_stats: Any
  g_opt_state: Any
  d_opt_state: Any
  ema_params: Any
  rng: jax.Array
  skipped: jax.Array
  g_apply: Callable = flax.struct.field(pytree_node=False)
  d_apply: Callable = flax.struct.field(pytree_node=False)
  g_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  d_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  def g_variables(self, params=None) -> dict:
    variables = {"params": self.g_params if params is None else params}
    if self.g_batch_stats:
      variables["batch_stats"] = self.g_batch_stats
    return variables

  def d_variables(self, params=None) -> dict:
    variables = {"params": self.d_params if params is None else params}
    if self.d_batch_stats:
      variables["batch_stats"] = self.d_batch_stats
    return variables


def create_gan_state(generator: nn.Module, discriminator: nn.Module, g_tx: optax.GradientTransformation,
                     d_tx: optax.GradientTransformation, rng: jax.Array | int, *, latent_dim: int,
                     sample_x: jax.Array) -> GANState:
  """Initialises both networks and wraps them in a GANState.

  Args:
    generator, discriminator: Flax modules called as ``m(x, train=...)``.
    g_tx, d_tx: their optimizers.
    rng: the run's root key, or an int seed: the generator is initialised
      from ``fold_in(rng, 0)``, the discriminator from ``fold_in(rng, 1)``,
      and the state keeps ``fold_in(rng, 2)`` as its root for steps and
      data. It all runs as one program (``jaxdl.train.state.init_program``).
    latent_dim: the size of a latent vector.
    sample_x: a batch of real examples (only shape and dtype matter).
  """
  return init_program(functools.partial(_create, generator, discriminator, g_tx, d_tx, latent_dim=latent_dim),
                      rng, sample_x)


def _create(generator, discriminator, g_tx, d_tx, rng, sample_x, *, latent_dim):
  z = jnp.zeros((sample_x.shape[0], latent_dim), jnp.float32)
  g_vars = init_variables(generator, jax.random.fold_in(rng, 0), z)
  d_vars = init_variables(discriminator, jax.random.fold_in(rng, 1), sample_x)
  g_params, d_params = g_vars["params"], d_vars["params"]
  return GANState(
      step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
      g_batch_stats=g_vars.get("batch_stats", {}), d_batch_stats=d_vars.get("batch_stats", {}),
      g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params),
      ema_params=jax.tree_util.tree_map(jnp.copy, g_params), rng=jax.random.fold_in(rng, 2),
      skipped=jnp.zeros((), jnp.int32), g_apply=generator.apply, d_apply=discriminator.apply,
      g_tx=g_tx, d_tx=d_tx)
