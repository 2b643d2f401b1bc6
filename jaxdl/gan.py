"""Adversarial training: the pure GAN step, its metrics and ``train_and_evaluate``.

The protocol every loop in jaxdl follows::

    state, metrics = gan_step(state, {"x": (n_critic, B, ...) real samples})

One step makes ``gan.n_critic`` discriminator updates (one real batch each)
and then one generator update, and moves the generator's exponential moving
average (EMA), which is what gets evaluated. Latents come from
``fold_in(key, step)``, so the same state and batch always give the same
result, and a resumed run draws the same numbers.
:func:`make_gan_chunk` runs many steps in one jitted ``while_loop`` with the
real data drawn on the device: the 2-D mixtures are sampled there, images are
gathered from a device-resident array.

Losses (``gan.loss``):

- ``non_saturating``: the original GAN's discriminator loss with the
  generator maximising ``log D(G(z))`` (Goodfellow et al., 2014, sec. 3);
- ``hinge``: ``relu(1 - D(x)) + relu(1 + D(G(z)))``, generator ``-D(G(z))``
  (Lim & Ye, 2017; Miyato et al., 2018);
- ``wgan_gp``: the Wasserstein critic with a gradient penalty pulling
  ``||grad D||`` to 1 on random interpolates (Gulrajani et al., 2017).

Regularisers: the R1 penalty ``gamma / 2 * E ||grad_x D(x)||^2`` on real data
(Mescheder et al., 2018; ``gan.r1``) and spectral normalisation
(``gan.spectral_norm``).

Metrics, on ``gan.num_eval_samples`` samples of the EMA generator: for the
2-D mixtures ``high_quality_fraction`` (samples within 3 sigma of their
nearest mode) and ``modes_covered`` (modes nearest to at least one
high-quality sample), as VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et
al., 2018) define them; for digits the Frechet distance to held-out digits in
the feature space of a classifier trained by ``jaxdl.supervised`` (see
:func:`digits_classifier`), the share of samples the classifier labels with
confidence >= 0.9, and each class's share.
"""

import functools
import hashlib
import json
import os
import pathlib
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdl import data as data_lib
from jaxdl import models as models_lib
from jaxdl import optim as optim_lib
from jaxdl.configs import base_config, to_dict
from jaxdl.data import toy2d
from jaxdl.data.builtin import cache_dir
from jaxdl.models import gan as gan_models
from jaxdl.supervised import fit, validate_schedule
from jaxdl.train import parallel
from jaxdl.train.state import step_keys
from jaxdl.train.writers import console, write_json
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256

Batch = Mapping[str, jax.Array]

LOSSES = ("non_saturating", "hinge", "wgan_gp")
IMAGE_DATASETS = ("digits",)
# The confidence above which a classifier's label counts as clear (the issue's
# definition of a recognisable digit).
CONFIDENCE = 0.9
# High quality means within this many sigmas of the nearest mode (VEEGAN, sec. 5.1).
QUALITY_SIGMAS = 3.0


# -------------------------------------------------------------------- config --


def base_gan_config() -> ml_collections.ConfigDict:
  """``jaxdl.configs.base_config()`` plus the ``gan`` section, for GAN presets."""
  config = base_config()
  config.loop = "gan"
  config.data.name = "ring8"
  config.train.steps = 5000
  config.train.batch_size = 256
  config.train.eval_every = 1000
  config.train.log_every = 250
  config.checkpoint.every_steps = 1000
  config.optim.b1 = 0.5  # Radford et al. (2016, sec. 4): 0.9 oscillated
  config.optim.b2 = 0.999

  config.gan = ml_collections.ConfigDict()
  config.gan.loss = "non_saturating"
  config.gan.n_critic = 1  # discriminator updates per generator update
  config.gan.latent_dim = 16
  config.gan.r1 = 0.0  # R1 weight gamma; 0 disables
  config.gan.gp = 10.0  # WGAN-GP's lambda (Gulrajani et al., 2017, alg. 1)
  config.gan.spectral_norm = False
  config.gan.d_learning_rate = 0.0  # 0: the same as optim.learning_rate
  config.gan.ema_decay = 0.999
  config.gan.num_eval_samples = 2500  # VEEGAN and PacGAN score 2500 samples

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  config.model.g_hidden = (256, 256, 256)
  config.model.d_hidden = (256, 256, 256)
  config.model.g_features = (128, 64)
  config.model.d_features = (64, 128)
  config.model.activation = "relu"
  config.model.d_activation = "leaky_relu"
  config.model.g_batchnorm = False
  config.model.conv_impl = "auto"
  return config


def validate_gan_config(config: ml_collections.ConfigDict) -> None:
  """One-line errors for values no GAN run can use."""
  g = config.gan
  validate_schedule(config)
  if g.loss not in LOSSES:
    raise JaxdlError(f"gan.loss='{g.loss}' is unknown (choices: {', '.join(LOSSES)})")
  if g.n_critic < 1:
    raise JaxdlError(f"gan.n_critic={g.n_critic} must be >= 1")
  if g.latent_dim < 1:
    raise JaxdlError(f"gan.latent_dim={g.latent_dim} must be >= 1")
  for key in ("r1", "gp", "d_learning_rate"):
    if g[key] < 0:
      raise JaxdlError(f"gan.{key}={g[key]} must be >= 0")
  if not 0 <= g.ema_decay < 1:
    raise JaxdlError(f"gan.ema_decay={g.ema_decay} must be in [0, 1)")
  if g.num_eval_samples < 2:
    raise JaxdlError(f"gan.num_eval_samples={g.num_eval_samples} must be >= 2")
  names = (*toy2d.TOY2D, *IMAGE_DATASETS)
  if config.data.name not in names:
    raise JaxdlError(f"data.name='{config.data.name}' is not a GAN dataset (choices: {', '.join(names)})")


# --------------------------------------------------------------------- state --


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
                     d_tx: optax.GradientTransformation, rng: jax.Array, *, latent_dim: int,
                     sample_x: jax.Array) -> GANState:
  """Initialises both networks and wraps them in a GANState.

  Args:
    generator, discriminator: Flax modules called as ``m(x, train=...)``.
    g_tx, d_tx: their optimizers.
    rng: the run's root key: the generator is initialised from
      ``fold_in(rng, 0)``, the discriminator from ``fold_in(rng, 1)``, and
      the state keeps ``fold_in(rng, 2)`` as its root for steps and data.
    latent_dim: the size of a latent vector.
    sample_x: a batch of real examples (only shape and dtype matter).
  """
  z = jnp.zeros((sample_x.shape[0], latent_dim), jnp.float32)
  g_vars = jax.jit(functools.partial(generator.init, train=False))(jax.random.fold_in(rng, 0), z)
  d_vars = jax.jit(functools.partial(discriminator.init, train=False))(jax.random.fold_in(rng, 1), sample_x)
  g_params, d_params = g_vars["params"], d_vars["params"]
  return GANState(
      step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
      g_batch_stats=g_vars.get("batch_stats", {}), d_batch_stats=d_vars.get("batch_stats", {}),
      g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params),
      ema_params=jax.tree_util.tree_map(jnp.copy, g_params), rng=jax.random.fold_in(rng, 2),
      skipped=jnp.zeros((), jnp.int32), g_apply=generator.apply, d_apply=discriminator.apply,
      g_tx=g_tx, d_tx=d_tx)


# -------------------------------------------------------------------- losses --


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


# --------------------------------------------------------------------- steps --


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
  batch_size = real_all.shape[1]
  _, key = step_keys(state.rng, state.step)
  d_keys = jax.random.split(jax.random.fold_in(key, 0), n_critic)
  g_key = jax.random.fold_in(key, 1)
  has_g_stats, has_d_stats = bool(state.g_batch_stats), bool(state.d_batch_stats)

  def latents(k):
    z = jax.random.normal(k, (batch_size, latent_dim), jnp.float32)  # (B, Z)
    return jax.lax.with_sharding_constraint(z, batch_sharding) if batch_sharding is not None else z

  def generate(g_params, z):
    """Samples in training mode; returns them and the new G statistics."""
    out = state.g_apply(state.g_variables(g_params), z, train=True,
                        mutable=["batch_stats"] if has_g_stats else False)
    fake, updates = out if has_g_stats else (out, {})
    return fake.reshape(real_all.shape[1:]), updates.get("batch_stats", state.g_batch_stats)

  def d_update(carry, inputs):
    d_params, d_opt_state, d_stats = carry
    real, k = inputs
    z_key, gp_key = jax.random.split(k)
    fake, _ = generate(state.g_params, latents(z_key))  # G's statistics move in its own update only
    fake = jax.lax.stop_gradient(fake)
    d_vars = lambda p, s: {"params": p, **({"batch_stats": s} if has_d_stats else {})}

    def loss_fn(d_params):
      both = jnp.concatenate([real, fake])  # one call: one power iteration of spectral norm
      out = state.d_apply(d_vars(d_params, d_stats), both, train=True,
                          mutable=["batch_stats"] if has_d_stats else False)
      logits, updates = out if has_d_stats else (out, {})
      real_logits, fake_logits = logits[:batch_size], logits[batch_size:]
      d_loss = discriminator_loss(loss, real_logits, fake_logits)
      # Penalties see the normalised weights as they stand, without another
      # power iteration.
      d_fn = lambda x: state.d_apply(d_vars(d_params, d_stats), x, train=False)
      penalty = jnp.zeros((), jnp.float32)
      if r1 > 0:
        penalty += 0.5 * r1 * r1_penalty(d_fn, real)
      if loss == "wgan_gp":
        penalty += gp * gradient_penalty(d_fn, real, fake, gp_key)
      stats = updates.get("batch_stats", d_stats)
      return d_loss + penalty, (d_loss, penalty, real_logits.mean(), fake_logits.mean(), stats)

    grads, (d_loss, penalty, d_real, d_fake, d_stats) = jax.grad(loss_fn, has_aux=True)(d_params)
    updates, d_opt_state = state.d_tx.update(grads, d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
    metrics = {"d_loss": d_loss, "penalty": penalty, "d_real": d_real, "d_fake": d_fake,
               "d_grad_norm": optax.tree.norm(grads)}
    return (d_params, d_opt_state, d_stats), metrics

  (d_params, d_opt_state, d_stats), d_metrics = jax.lax.scan(
      d_update, (state.d_params, state.d_opt_state, state.d_batch_stats), (real_all, d_keys))
  d_metrics = {k: v[-1] for k, v in d_metrics.items()}  # the last critic update's view

  def g_loss_fn(g_params):
    fake, g_stats = generate(g_params, latents(g_key))
    d_variables = {"params": d_params, **({"batch_stats": d_stats} if has_d_stats else {})}
    logits = state.d_apply(d_variables, fake, train=False)
    return generator_loss(loss, logits), g_stats

  (g_loss, g_stats), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
  g_updates, g_opt_state = state.g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)
  decay = _ema_decay(ema_decay, state.step)
  ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, g_params)
  new_state = state.replace(
      step=state.step + 1, g_params=g_params, d_params=d_params, g_batch_stats=g_stats,
      d_batch_stats=d_stats, g_opt_state=g_opt_state, d_opt_state=d_opt_state, ema_params=ema)
  return new_state, {**d_metrics, "g_loss": g_loss, "g_grad_norm": optax.tree.norm(g_grads)}


NAN_POLICIES = ("halt", "skip")


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

  Step t's real batches are ``real_fn(fold_in(data_root, t), data, n_critic * B)``
  where ``data_root`` is the data half of ``step_keys(state.rng, .)``: they
  depend only on the step, so a chunk can start anywhere and a resumed run
  sees the same data. ``n`` is traced: chunks of any length share one compile.

  A step whose losses or new parameters are not finite is not applied: under
  'halt' the chunk stops there and reports ``nonfinite_step`` (and
  ``nonfinite_leaf``, the first bad leaf of ``tree_leaves((g_params,
  d_params))``), both -1 when all was well; under 'skip' only the step
  counter and ``state.skipped`` move on.

  Args:
    step_fn: ``state, metrics = step_fn(state, {"x": (n_critic, B, ...)})``.
    real_fn: ``real_fn(key, data, n) -> (n, ...)`` real examples.
    n_critic: discriminator updates per step.
    batch_size: B.
    real_sharding: the layout of the (n_critic, B, ...) real batches.
    nan_policy: 'halt' or 'skip'.

  Returns:
    ``chunk(state, data, n) -> (state, metrics)``: the mean of each metric
    over the chunk's applied steps, plus the fault report.
  """
  if nan_policy not in NAN_POLICIES:
    raise JaxdlError(f"train.nan_policy='{nan_policy}' must be one of {', '.join(NAN_POLICIES)}")

  def real_batches(state, data):
    data_root, _ = step_keys(state.rng, state.step)
    real = real_fn(jax.random.fold_in(data_root, state.step), data, n_critic * batch_size)
    real = real.reshape(n_critic, batch_size, *real.shape[1:])
    if real_sharding is not None:
      real = jax.lax.with_sharding_constraint(real, real_sharding)
    return {"x": real}

  def guarded(state, data):
    new_state, metrics = step_fn(state, real_batches(state, data))
    leaves = jax.tree_util.tree_leaves((new_state.g_params, new_state.d_params))
    leaf_ok = jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])
    ok = jnp.all(leaf_ok) & jnp.isfinite(metrics["d_loss"]) & jnp.isfinite(metrics["g_loss"])
    first_bad = jnp.where(jnp.all(leaf_ok), -1, jnp.argmin(leaf_ok)).astype(jnp.int32)
    fallback = state.replace(step=state.step + 1, skipped=state.skipped + 1) if nan_policy == "skip" else state
    new_state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_state, fallback)
    return new_state, metrics, ok, first_bad

  def chunk(state, data, n):
    sample = jax.eval_shape(lambda s: step_fn(s, real_batches(s, data))[1], state)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), sample)
    minus_one = jnp.full((), -1, jnp.int32)

    def body(carry):
      i, state, sums, count, bad_step, bad_leaf = carry
      at = state.step
      state, metrics, ok, first_bad = guarded(state, data)
      sums = jax.tree_util.tree_map(lambda s, v: s + jnp.where(ok, v, jnp.zeros_like(v)), sums, metrics)
      if nan_policy == "halt":
        bad_step = jnp.where(ok, bad_step, at.astype(jnp.int32))
        bad_leaf = jnp.where(ok, bad_leaf, first_bad)
      return i + 1, state, sums, count + ok.astype(jnp.int32), bad_step, bad_leaf

    def keep_going(carry):
      return (carry[0] < n) & (carry[4] < 0)

    _, state, sums, count, bad_step, bad_leaf = jax.lax.while_loop(
        keep_going, body, (jnp.zeros((), jnp.int32), state, zeros, jnp.zeros((), jnp.int32),
                           minus_one, minus_one))
    metrics = jax.tree_util.tree_map(lambda s: s / jnp.maximum(count, 1), sums)
    if nan_policy == "halt":
      metrics.update(nonfinite_step=bad_step, nonfinite_leaf=bad_leaf)
    metrics["skipped"] = state.skipped
    return state, metrics

  return chunk


def sample_generator(state: GANState, z: jax.Array, *, ema: bool = True) -> jax.Array:
  """Generator samples for latents z (B, Z), BatchNorm on its running statistics.

  Args:
    state: a GANState.
    z: the latents.
    ema: use the EMA parameters (what is evaluated) rather than the raw ones.
  """
  params = state.ema_params if ema else state.g_params
  return state.g_apply(state.g_variables(params), z, train=False)


# ------------------------------------------------------------------- metrics --


def mode_metrics(samples: jax.Array, centers: jax.Array, sigma: float) -> dict[str, jax.Array]:
  """VEEGAN / PacGAN mode metrics of 2-D samples against a mixture's modes.

  Args:
    samples: (N, 2) generated points.
    centers: (K, 2) mode centres.
    sigma: the modes' standard deviation.

  Returns:
    ``high_quality_fraction``: the share of samples within 3 sigma of their
    nearest mode; ``modes_covered``: how many modes are the nearest mode of at
    least one high-quality sample; ``mode_counts`` (K,): high-quality samples
    per mode.
  """
  d2 = jnp.sum(jnp.square(samples[:, None, :] - centers[None, :, :]), axis=-1)  # (N, K)
  nearest = jnp.argmin(d2, axis=1)  # (N,)
  good = jnp.min(d2, axis=1) <= (QUALITY_SIGMAS * sigma) ** 2  # (N,)
  counts = jnp.zeros(centers.shape[0], jnp.int32).at[nearest].add(good.astype(jnp.int32))  # (K,)
  return {"high_quality_fraction": jnp.mean(good.astype(jnp.float32)),
          "modes_covered": jnp.sum(counts > 0), "mode_counts": counts}


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to two feature sets (N, D).

  ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al.,
  2017), in float64. The trace of the matrix square root is computed as
  ``sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2)))``: that matrix is symmetric PSD and
  has the eigenvalues of ``S_a S_b``, so ``eigh`` suffices and no complex
  parts appear.
  """
  a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  w, v = np.linalg.eigh(cov_a)
  sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  middle = sqrt_a @ cov_b @ sqrt_a
  tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


# ---------------------------------------------- digits feature classifier --

# The classifier whose features the Frechet distance uses: an MLP trained by
# jaxdl's supervised loop on the digits training split (never the 360
# held-out digits that serve as the reference). Its 64-unit last hidden layer
# is the feature space: small enough for a well-conditioned covariance from
# 360 examples. No label smoothing and no dropout, so real held-out digits
# get confident labels (about 97% at >= 0.9) and "confidence >= 0.9" means
# what it says.
CLASSIFIER_HIDDEN = (256, 64)
CLASSIFIER_STEPS = 4000


def classifier_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.data.name = "digits"
  config.model.name = "mlp"
  config.model.hidden = CLASSIFIER_HIDDEN
  config.model.kernel_init = "he"
  config.train.steps = CLASSIFIER_STEPS
  config.train.batch_size = 128
  config.train.eval_every = CLASSIFIER_STEPS
  config.train.log_every = 500
  config.train.num_devices = 1
  config.checkpoint.every_steps = 0
  config.checkpoint.async_save = False
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.schedule = "cosine"
  config.augment.shift = 1
  return config


def digits_classifier() -> tuple[dict, dict[str, float]]:
  """The feature classifier's params, trained on first use and cached.

  The cache file is ``cache_dir() / digits_classifier-<hash>.msgpack``
  (``jaxdl.data.builtin.cache_dir``: ``$JAXDL_CACHE_DIR`` or ``~/.cache/jaxdl``), the
  hash covering the classifier's config and the digits split, so a change to
  either trains a new one. Training takes about 10 s on a 2-core CPU.

  Returns:
    (params, info) where info holds the classifier's held-out accuracy.
  """
  config = classifier_config()
  ds_info = data_lib.load_dataset("digits", None).info
  digest = hashlib.sha256(json.dumps({"config": to_dict(config), "data": ds_info.get("arrays_sha256")},
                                     sort_keys=True).encode()).hexdigest()[:16]
  path = cache_dir() / f"digits_classifier-{digest}.msgpack"
  model = models_lib.get_model("mlp", 10, hidden=CLASSIFIER_HIDDEN, kernel_init="he")
  template = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                            jnp.zeros((1, 8, 8, 1)))["params"]
  if path.is_file():
    try:
      blob = flax.serialization.msgpack_restore(path.read_bytes())
      params = flax.serialization.from_state_dict(template, blob["params"])
      return params, dict(blob["info"])
    except Exception as e:  # a damaged cache file is rebuilt, not trusted
      console(f"jaxdl: ignoring unreadable classifier cache {path} ({type(e).__name__})")
  console(f"jaxdl: training the digits feature classifier once (cached in {path})")
  # Imported here: the supervised loop is only needed when the cache is cold.
  from jaxdl import supervised

  with tempfile.TemporaryDirectory() as workdir:
    state, metrics = supervised.train_and_evaluate(config, workdir)
  params = jax.device_get(state.params)
  info = {"test_accuracy": float(metrics["test_accuracy"]), "steps": CLASSIFIER_STEPS}
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
  tmp.write_bytes(flax.serialization.msgpack_serialize(
      {"params": flax.serialization.to_state_dict(params), "info": info}))
  os.replace(tmp, path)  # atomic: parallel first uses never see half a file
  return params, info


def make_classify(params: dict) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
  """``classify(x) -> (features (N, 64), probabilities (N, 10))``, jitted."""
  body = models_lib.MLP(CLASSIFIER_HIDDEN[-1], hidden=CLASSIFIER_HIDDEN[:-1])
  head = models_lib.MLP(10, hidden=CLASSIFIER_HIDDEN)
  body_params = {k: v for k, v in params.items() if k != f"Dense_{len(CLASSIFIER_HIDDEN)}"}

  @jax.jit
  def classify(x):
    # The MLP's last hidden activations: the same Dense layers, cut before the head.
    feats = nn.relu(body.apply({"params": body_params}, x, train=False))
    probs = jax.nn.softmax(head.apply({"params": params}, x, train=False))
    return feats, probs

  return classify


def image_metrics(classify, samples: jax.Array, reference_feats: np.ndarray) -> dict[str, Any]:
  """Frechet distance, confident share and class shares of generated images."""
  feats, probs = jax.device_get(classify(samples))
  labels = probs.argmax(1)
  shares = np.bincount(labels, minlength=probs.shape[1]) / len(labels)
  return {"frechet_distance": frechet_distance(feats, reference_feats),
          "confident_fraction": float(np.mean(probs.max(1) >= CONFIDENCE)),
          "min_class_fraction": float(shares.min()), "class_fractions": shares}


# --------------------------------------------------------------------- plots --


def _figure(width: float, height: float):
  from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left alone

  return Figure(figsize=(width, height), layout="constrained")


def plot_samples_2d(samples: np.ndarray, centers: np.ndarray, path, *, title: str = "") -> pathlib.Path:
  """A scatter of generated points over the true modes, as PNG."""
  fig = _figure(4.2, 4.2)
  ax = fig.subplots()
  ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5, color="tab:blue", label="generated")
  ax.scatter(centers[:, 0], centers[:, 1], s=40, marker="x", color="tab:red", label="modes")
  span = np.abs(centers).max() * 1.35
  ax.set_xlim(-span, span)
  ax.set_ylim(-span, span)
  ax.set_aspect("equal")
  ax.legend(loc="upper right", fontsize=7)
  if title:
    ax.set_title(title, fontsize=9)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path


def plot_image_grid(images: np.ndarray, path, *, rows: int = 8, title: str = "") -> pathlib.Path:
  """The first rows x rows images (N, H, W, 1) in [0, 1] as one grey PNG."""
  n = rows * rows
  h, w = images.shape[1:3]
  grid = np.full((rows * (h + 1) + 1, rows * (w + 1) + 1), 0.25)  # light grey lines between images
  for i, img in enumerate(np.asarray(images[:n])):
    r, c = divmod(i, rows)
    grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = img[..., 0]
  fig = _figure(4.2, 4.4)
  ax = fig.subplots()
  ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
  ax.set_axis_off()
  if title:
    ax.set_title(title, fontsize=9)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path


def plot_gan_metrics(history, path, *, title: str = "") -> pathlib.Path:
  """One panel per evaluation metric over training, and one for the losses."""
  keys = sorted({k for r in history for k in r if k.startswith("test/")})
  fig = _figure(3.6 * (len(keys) + 1), 3.2)
  axes = np.atleast_1d(fig.subplots(1, len(keys) + 1))
  for key in ("train/d_loss", "train/g_loss"):
    points = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
    if points:
      axes[0].plot(*np.asarray(points).T, label=key.split("/")[1])
  axes[0].set_title("losses", fontsize=9)
  axes[0].legend(fontsize=7)
  for ax, key in zip(axes[1:], keys):
    points = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
    if points:
      ax.plot(*np.asarray(points).T, "o-", markersize=3)
    ax.set_title(key.split("/")[1], fontsize=9)
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path


# ------------------------------------------------------------------- builder --


def _tuple(v):
  return tuple(v) if isinstance(v, (list, tuple)) else v


class GANExperiment:
  """Everything a GAN run needs, built from a config and checked.

  Building it validates the config, builds the data, both networks and the
  state, so bad input fails here, before anything is written.

  Attributes:
    config, mesh, generator, discriminator, state, step (bound, pure),
    chunk (jitted, donating the state), data (on the device), mixture (2-D
    data) or dataset (images), sample_shape.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    validate_gan_config(config)
    self.config = config
    t, g, m = config.train, config.gan, config.model
    self.mesh = parallel.make_mesh(t.num_devices)
    parallel.check_divisible(t.batch_size, self.mesh)
    self.mixture = self.dataset = None
    if config.data.name in toy2d.TOY2D:
      self.mixture = toy2d.load_toy2d(config.data.name)
      self.sample_shape = (2,)
      self.data = {}
      mixture = self.mixture
      real_fn = lambda key, data, n: mixture.sample(key, n)
    else:
      self.dataset = data_lib.load_dataset(config.data.name, config.data.path or None)
      self.sample_shape = self.dataset.input_shape
      self.data = {"x": parallel.put_replicated(self.dataset.x_train, self.mesh)}
      num = self.dataset.num_train
      # Sampling with replacement: a GAN has no epochs to finish.
      real_fn = lambda key, data, n: jnp.take(data["x"], jax.random.randint(key, (n,), 0, num), axis=0)
    self.generator, self.discriminator = gan_models.make_gan(
        m.name, self.sample_shape, g_hidden=_tuple(m.g_hidden), d_hidden=_tuple(m.d_hidden),
        g_features=_tuple(m.g_features), d_features=_tuple(m.d_features), activation=m.activation,
        d_activation=m.d_activation, g_batchnorm=m.g_batchnorm, spectral_norm=g.spectral_norm,
        conv_impl=m.conv_impl)
    g_tx, self.schedule = optim_lib.from_config(config.optim, t.steps)
    d_optim = dict(config.optim)
    if g.d_learning_rate > 0:
      d_optim["learning_rate"] = g.d_learning_rate
    d_tx, _ = optim_lib.from_config(d_optim, t.steps)
    sample_x = jnp.zeros((2, *self.sample_shape), jnp.float32)
    state = create_gan_state(self.generator, self.discriminator, g_tx, d_tx, jax.random.PRNGKey(t.seed),
                             latent_dim=g.latent_dim, sample_x=sample_x)
    self.state = parallel.put_replicated(state, self.mesh)
    batch_sharding = parallel.batch_sharded(self.mesh)
    self.step = functools.partial(
        gan_step, loss=g.loss, n_critic=g.n_critic, latent_dim=g.latent_dim, r1=g.r1, gp=g.gp,
        ema_decay=g.ema_decay, batch_sharding=batch_sharding)
    real_sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))
    chunk = make_gan_chunk(self.step, real_fn, n_critic=g.n_critic, batch_size=t.batch_size,
                           real_sharding=real_sharding, nan_policy=t.nan_policy)
    self.chunk = jax.jit(chunk, donate_argnums=(0,))
    # The same latents at every evaluation, apart from the training stream.
    self.eval_z = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(t.seed), 3),
                                    (g.num_eval_samples, g.latent_dim), jnp.float32)
    self._sample = jax.jit(lambda state, z: sample_generator(state, z).reshape(-1, *self.sample_shape))
    self.classify = self.reference_feats = self.class_fractions = None

  def run_chunk(self, state: GANState, n) -> tuple[GANState, dict]:
    return self.chunk(state, self.data, n)

  @property
  def steps_per_epoch(self) -> int:
    """The longest chunk: real data is drawn fresh each step, so there are no epochs."""
    return self.config.train.steps

  @staticmethod
  def param_path(state: GANState, leaf: int) -> str:
    """Dotted path of leaf ``leaf`` of ``(g_params, d_params)``, as the chunk numbers them."""
    if leaf < 0:
      return "none (the loss itself)"
    path, _ = jax.tree_util.tree_flatten_with_path((state.g_params, state.d_params))[0][leaf]
    keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
    return ("g_params" if keys[0] == "0" else "d_params") + "." + ".".join(keys[1:])

  def samples(self, state: GANState) -> np.ndarray:
    """The EMA generator's samples for the fixed evaluation latents, on the host."""
    return np.asarray(jax.device_get(self._sample(state, self.eval_z)))

  def prepare_image_metrics(self) -> dict[str, float]:
    """Loads (or trains) the feature classifier; returns the real-data baselines."""
    params, info = digits_classifier()
    self.classify = make_classify(params)
    ds = self.dataset
    self.reference_feats, test_probs = jax.device_get(self.classify(ds.x_test))
    train_feats, _ = jax.device_get(self.classify(ds.x_train))
    return {"frechet_distance_real": frechet_distance(train_feats, self.reference_feats),
            "confident_fraction_real": float(np.mean(test_probs.max(1) >= CONFIDENCE)),
            "classifier_test_accuracy": info["test_accuracy"]}

  def evaluate(self, state: GANState) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of the EMA generator's samples, and the samples."""
    samples = self.samples(state)
    if self.mixture is not None:
      m = jax.device_get(mode_metrics(jnp.asarray(samples), jnp.asarray(self.mixture.centers),
                                      self.mixture.sigma))
      return {"high_quality_fraction": float(m["high_quality_fraction"]),
              "modes_covered": int(m["modes_covered"])}, samples
    m = image_metrics(self.classify, samples, self.reference_feats)
    self.class_fractions = m.pop("class_fractions")
    return m, samples


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> tuple[GANState, dict]:
  """Trains a GAN as the config says and scores its EMA generator.

  Writes into ``workdir``: ``config.json``, ``metrics.jsonl``, TensorBoard
  events under ``tb/``, ``checkpoints/`` (Orbax), ``samples/step_NNNNNN.png``
  at each evaluation (a scatter over the true modes, or a grid of images),
  ``metrics.png`` (metrics over training) and ``metrics.json`` (final
  metrics, including ``params_sha256`` of the whole final state).

  A workdir that already holds this run resumes from its newest intact
  checkpoint and ends bit-exactly where an uninterrupted run would have.

  Args:
    config: a config from ``base_gan_config()`` or a GAN preset.
    workdir: the run's output directory.

  Returns:
    The final state and the final metrics dict.
  """
  parallel.maybe_initialize_distributed(config.train.distributed)
  t0 = time.perf_counter()
  exp = GANExperiment(config)  # every bad input fails here, before anything is written
  t = config.train
  workdir = pathlib.Path(workdir)
  main = jax.process_index() == 0
  n_g, n_d = param_count(exp.state.g_params), param_count(exp.state.d_params)
  title = f"{config.model.name} GAN on {config.data.name}"
  baselines = {}

  def prepare(resuming):
    del resuming
    baselines.update(exp.prepare_image_metrics() if exp.dataset is not None else {})

  def evaluate(state):
    metrics, samples = exp.evaluate(state)
    step = int(jax.device_get(state.step))
    if main:
      label = f"{title}, step {step}: " + ", ".join(
          f"{k.replace('_fraction', '')}={v:.3g}" for k, v in metrics.items())
      path = workdir / "samples" / f"step_{step:06d}.png"
      path.parent.mkdir(parents=True, exist_ok=True)
      if exp.mixture is not None:
        plot_samples_2d(samples, exp.mixture.centers, path, title=label)
      else:
        plot_image_grid(samples, path, title=label)
    return metrics

  fitted = fit(exp, workdir, eval_fn=evaluate, on_start=prepare, desc="gan", headline=lambda state: (
      f"jaxdl: GAN ({config.model.name}, G {n_g:,} / D {n_d:,} params, {config.gan.loss} loss"
      f"{f', R1 {config.gan.r1:g}' if config.gan.r1 else ''}"
      f"{', spectral norm' if config.gan.spectral_norm else ''}) on {config.data.name}, "
      f"{exp.mesh.devices.size} {jax.default_backend()} device(s), {t.steps} steps of batch {t.batch_size}"))
  state, summary, start = fitted.state, fitted.summary, fitted.start
  test = {k[len("test/"):]: v for k, v in summary.items() if k.startswith("test/")}
  if not test:  # resumed at the very end: nothing left to run or evaluate
    test = evaluate(state)
  last_train = next((r for r in reversed(fitted.history) if "train/d_loss" in r), {})
  final = {
      **test, **baselines,
      "d_loss": last_train.get("train/d_loss", float("nan")),
      "g_loss": last_train.get("train/g_loss", float("nan")),
      "steps": int(jax.device_get(state.step)),
      "skipped_steps": int(jax.device_get(state.skipped)),
      "resumed_from_step": start,
      "wall_seconds": time.perf_counter() - t0,
      "train_seconds": summary["wall_seconds"],
      "first_chunk_seconds": summary["first_chunk_seconds"],
      "steps_per_second": summary.get("steps_per_second", 0.0),
      "checkpoint_saves": fitted.checkpoint_saves,
      "checkpoint_seconds": fitted.checkpoint_seconds,
      "params_sha256": tree_sha256(flax.serialization.to_state_dict(state)),
      "g_param_count": n_g,
      "d_param_count": n_d,
      "num_devices": int(exp.mesh.devices.size),
      "backend": jax.default_backend(),
      "dataset": config.data.name,
      "model": config.model.name,
      "loss": config.gan.loss,
      "seed": t.seed,
  }
  if exp.mixture is not None:
    final["num_modes"] = exp.mixture.num_modes
  if exp.class_fractions is not None:
    final.update({f"class_fraction_{k}": float(v) for k, v in enumerate(exp.class_fractions)})
  if main:
    write_json(workdir / "metrics.json", final)
    plot_gan_metrics(fitted.history, workdir / "metrics.png", title=title)
  shown = ", ".join(f"{k}={v:.4g}" for k, v in test.items())
  console(f"{shown} ({final['steps']} steps, {final['wall_seconds']:.1f} s) -> {workdir}/metrics.json")
  return state, final
