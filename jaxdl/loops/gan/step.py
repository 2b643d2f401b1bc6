"""The pure GAN step and its on-device chunk.

    state, metrics = gan_step(state, {"x": (n_critic, B, ...) real samples})

One step makes ``gan.n_critic`` discriminator updates (one real batch each)
and then one generator update, and moves the generator's exponential moving
average (EMA), which is what gets evaluated. Latents come from
``fold_in(key, step)``, so the same state and batch always give the same
result, and a resumed run draws the same numbers.

Regularisers: the R1 penalty ``gamma / 2 * E ||grad_x D(x)||^2`` on real data
(Mescheder et al., 2018; ``gan.r1``) and, in the models, spectral
normalisation (``gan.spectral_norm``).
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxdl.loops.gan.losses import discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from jaxdl.loops.gan.state import GANState
from jaxdl.train.chunk import fresh_batches, make_chunk
from jaxdl.train.state import step_keys

Batch = Mapping[str, jax.Array]


def _ema_decay(decay: float, step: jax.Array) -> jax.Array:
  # Ramped as (1 + t) / (10 + t) early on (TensorFlow's ExponentialMovingAverage
  # with num_updates), so short runs do not evaluate the initial generator.
  t = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def gan_step(
    state: GANState,
    batch: Batch,
    *,
    loss: str,
    n_critic: int,
    latent_dim: int,
    r1: float = 0.0,
    gp: float = 10.0,
    ema_decay: float = 0.999,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> tuple[GANState, dict[str, jax.Array]]:
  """``n_critic`` discriminator updates, then one generator update.

  Args:
    state: the current state.
    batch: ``{"x": (n_critic, B, ...)}``, one real batch per discriminator update.
    loss: a name in ``LOSSES``.
    n_critic: discriminator updates per step (the leading axis of ``x``).
    latent_dim: the size of a latent vector (standard normal).
    r1: the R1 weight gamma (0: off).
    gp: the WGAN-GP weight lambda (used by 'wgan_gp' only).
    ema_decay: the generator EMA's decay.
    batch_sharding: how a (B, ...) batch is split over devices, for the
      latents drawn here (None: left to XLA).

  Returns:
    The next state and scalar metrics: d_loss, g_loss (without penalties),
    penalty (the weighted sum of the discriminator's penalties), d_real and
    d_fake (mean logits in the last discriminator update), g_grad_norm and
    d_grad_norm.
  """
  real_all = batch["x"]
  if real_all.shape[0] != n_critic:
    raise ValueError(f"batch['x'] holds {real_all.shape[0]} real batches for n_critic={n_critic}")
  _, key = step_keys(state.rng, state.step)
  d_keys = jax.random.split(jax.random.fold_in(key, 0), n_critic)
  g_key = jax.random.fold_in(key, 1)
  ctx = _StepContext(state=state, loss=loss, latent_dim=latent_dim, r1=r1, gp=gp,
                     batch_sharding=batch_sharding, real_shape=real_all.shape[1:])
  (d_params, d_opt_state, d_stats), d_metrics = jax.lax.scan(
      ctx.d_update, (state.d_params, state.d_opt_state, state.d_batch_stats), (real_all, d_keys))
  d_metrics = {k: v[-1] for k, v in d_metrics.items()}  # the last critic update's view
  g_params, g_opt_state, g_stats, g_metrics = ctx.g_update(g_key, d_params, d_stats)
  decay = _ema_decay(ema_decay, state.step)
  ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, g_params)
  new_state = state.replace(
      step=state.step + 1, g_params=g_params, d_params=d_params, g_batch_stats=g_stats,
      d_batch_stats=d_stats, g_opt_state=g_opt_state, d_opt_state=d_opt_state, ema_params=ema)
  return new_state, {**d_metrics, **g_metrics}


@dataclasses.dataclass(frozen=True)
class _StepContext:
  """One :func:`gan_step`'s fixed inputs, and its two kinds of update.

  Attributes:
    real_shape: (B, ...), the shape of one real batch.
  """

  state: GANState
  loss: str
  latent_dim: int
  r1: float
  gp: float
  batch_sharding: jax.sharding.Sharding | None
  real_shape: tuple[int, ...]

  def latents(self, key: jax.Array) -> jax.Array:
    z = jax.random.normal(key, (self.real_shape[0], self.latent_dim), jnp.float32)  # (B, Z)
    return jax.lax.with_sharding_constraint(z, self.batch_sharding) if self.batch_sharding is not None else z

  def generate(self, g_params, z):
    """Samples in training mode; returns them and the new G statistics."""
    state, has_g_stats = self.state, bool(self.state.g_batch_stats)
    out = state.g_apply(state.g_variables(g_params), z, train=True,
                        mutable=["batch_stats"] if has_g_stats else False)
    fake, updates = out if has_g_stats else (out, {})
    return fake.reshape(self.real_shape), updates.get("batch_stats", state.g_batch_stats)

  def d_variables(self, params, stats) -> dict:
    return {"params": params, **({"batch_stats": stats} if self.state.d_batch_stats else {})}

  def d_update(self, carry, inputs):
    """One discriminator update on a real batch (a ``lax.scan`` body over the critic steps)."""
    state, loss, batch_size = self.state, self.loss, self.real_shape[0]
    has_d_stats = bool(state.d_batch_stats)
    d_params, d_opt_state, d_stats = carry
    real, k = inputs
    z_key, gp_key = jax.random.split(k)
    fake, _ = self.generate(state.g_params, self.latents(z_key))  # G's statistics move in its own update only
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(d_params):
      both = jnp.concatenate([real, fake])  # one call: one power iteration of spectral norm
      out = state.d_apply(self.d_variables(d_params, d_stats), both, train=True,
                          mutable=["batch_stats"] if has_d_stats else False)
      logits, updates = out if has_d_stats else (out, {})
      real_logits, fake_logits = logits[:batch_size], logits[batch_size:]
      d_loss = discriminator_loss(loss, real_logits, fake_logits)
      # Penalties see the normalised weights as they stand, without another
      # power iteration.
      d_fn = lambda x: state.d_apply(self.d_variables(d_params, d_stats), x, train=False)
      penalty = jnp.zeros((), jnp.float32)
      if self.r1 > 0:
        penalty += 0.5 * self.r1 * r1_penalty(d_fn, real)
      if loss == "wgan_gp":
        penalty += self.gp * gradient_penalty(d_fn, real, fake, gp_key)
      stats = updates.get("batch_stats", d_stats)
      return d_loss + penalty, (d_loss, penalty, real_logits.mean(), fake_logits.mean(), stats)

    grads, (d_loss, penalty, d_real, d_fake, d_stats) = jax.grad(loss_fn, has_aux=True)(d_params)
    updates, d_opt_state = state.d_tx.update(grads, d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
    metrics = {"d_loss": d_loss, "penalty": penalty, "d_real": d_real, "d_fake": d_fake,
               "d_grad_norm": optax.tree.norm(grads)}
    return (d_params, d_opt_state, d_stats), metrics

  def g_update(self, key: jax.Array, d_params, d_stats):
    """The generator update against the updated discriminator: (params, opt state, stats, metrics)."""
    state = self.state

    def g_loss_fn(g_params):
      fake, g_stats = self.generate(g_params, self.latents(key))
      logits = state.d_apply(self.d_variables(d_params, d_stats), fake, train=False)
      return generator_loss(self.loss, logits), g_stats

    (g_loss, g_stats), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
    g_updates, g_opt_state = state.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
    return g_params, g_opt_state, g_stats, {"g_loss": g_loss, "g_grad_norm": optax.tree.norm(g_grads)}


def make_gan_chunk(
    step_fn: Callable[[GANState, Batch], tuple[GANState, dict]],
    real_fn: Callable[[jax.Array, Any, int], jax.Array],
    *,
    n_critic: int,
    batch_size: int,
    real_sharding: jax.sharding.Sharding | None = None,
    nan_policy: str = "halt",
) -> Callable[[GANState, Any, jax.Array], tuple[GANState, dict]]:
  """Builds ``chunk(state, data, n)``: ``n`` GAN steps in one ``while_loop``, jit-ready.

  ``jaxdl.train.chunk.make_chunk`` over ``fresh_batches``: step t's real
  batches are ``real_fn(fold_in(data_root, t), data, n_critic * B)``, so they
  depend only on the step, and a resumed run sees the same data. The NaN
  guard checks ``d_loss``, ``g_loss`` and the leaves of ``(g_params,
  d_params)``, in that order for the fault report.

  Args:
    step_fn: ``state, metrics = step_fn(state, {"x": (n_critic, B, ...)})``.
    real_fn: ``real_fn(key, data, n) -> (n, ...)`` real examples.
    n_critic: discriminator updates per step.
    batch_size: B.
    real_sharding: the layout of the (n_critic, B, ...) real batches.
    nan_policy: 'halt' or 'skip'.
  """

  def real_batches(key, data):
    real = real_fn(key, data, n_critic * batch_size)
    return {"x": real.reshape(n_critic, batch_size, *real.shape[1:])}

  return make_chunk(step_fn, fresh_batches(real_batches, batch_sharding=real_sharding),
                    nan_policy=nan_policy, params_of=lambda s: (s.g_params, s.d_params),
                    watch=("d_loss", "g_loss"))


def sample_generator(state: GANState, z: jax.Array, *, ema: bool = True) -> jax.Array:
  """Generator samples for latents z (B, Z), BatchNorm on its running statistics.

  Args:
    state: a GANState.
    z: the latents.
    ema: use the EMA parameters (what is evaluated) rather than the raw ones.
  """
  params = state.ema_params if ema else state.g_params
  return state.g_apply(state.g_variables(params), z, train=False)
