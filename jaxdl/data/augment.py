"""Data augmentation as a pure, jittable function of (key, batch).

``make_augment(...)`` returns ``augment(key, x, y_soft) -> (x, y_soft)`` that
runs on device inside the training step: no host round trips, no Python-level
randomness, one trace per batch shape. It works on image batches
``(B, H, W, C)`` and signal batches ``(B, L, C)``; options that need no spatial
axes (noise, scale, mixup) also work on vector batches ``(B, D)``.

The steps run in a fixed order: shift, flip, scale, noise, then mixup (so mixup
mixes already augmented examples). Each enabled step gets its own subkey.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxdl.utils.errors import JaxdlError

Augment = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _per_example(values: jax.Array, x: jax.Array) -> jax.Array:
  # (B,) -> (B, 1, ..., 1): same rank as x, so no implicit rank promotion.
  return values.reshape(values.shape[:1] + (1,) * (x.ndim - 1))


def _require_spatial(x: jax.Array, option: str) -> None:
  if x.ndim < 3:
    raise JaxdlError(f"augment.{option} needs spatial axes, (B, H, W, C) or (B, L, C); "
                     f"got a batch of shape {x.shape}")


def _require_float(x: jax.Array, option: str) -> None:
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise JaxdlError(f"augment.{option} needs floating-point inputs, got {x.dtype}")


def _shift(key, x, y, *, shift: int):
  """Translates each example by its own integer offset per spatial axis, zero fill."""
  _require_spatial(x, "shift")
  batch, spatial = x.shape[0], x.shape[1:-1]
  offsets = jax.random.randint(key, (batch, len(spatial)), -shift, shift + 1)  # (B, S)
  padded = jnp.pad(x, [(0, 0)] + [(shift, shift)] * len(spatial) + [(0, 0)])  # (B, H+2s, W+2s, C)

  def crop(example, offset):
    # Output pixel p takes input p - offset, i.e. padded p - offset + shift.
    starts = [shift - offset[i] for i in range(len(spatial))] + [0]
    return lax.dynamic_slice(example, starts, x.shape[1:])

  return jax.vmap(crop)(padded, offsets), y


def _flip(key, x, y):
  """Mirrors each example along its last spatial axis (W, or L) with probability 1/2."""
  _require_spatial(x, "flip")
  mask = jax.random.bernoulli(key, 0.5, x.shape[:1])  # (B,)
  return jnp.where(_per_example(mask, x), jnp.flip(x, axis=-2), x), y


def _scale(key, x, y, *, scale: float):
  """Multiplies each example by a factor drawn uniformly from [1 - scale, 1 + scale]."""
  _require_float(x, "scale")
  factor = jax.random.uniform(key, x.shape[:1], x.dtype, 1 - scale, 1 + scale)  # (B,)
  return x * _per_example(factor, x), y


def _noise(key, x, y, *, std: float):
  """Adds i.i.d. Gaussian noise of standard deviation ``std``."""
  _require_float(x, "noise")
  return x + jnp.asarray(std, x.dtype) * jax.random.normal(key, x.shape, x.dtype), y


def _mixup(key, x, y, *, alpha: float):
  """Mixes the batch with a permutation of itself, one Beta(alpha, alpha) weight per batch."""
  _require_float(x, "mixup")
  if y is None or y.ndim != 2 or y.shape[0] != x.shape[0]:
    raise JaxdlError(f"augment.mixup needs soft targets y of shape ({x.shape[0]}, K), "
                     f"got {None if y is None else y.shape}")
  lam_key, perm_key = jax.random.split(key)
  lam = jax.random.beta(lam_key, alpha, alpha)  # ()
  perm = jax.random.permutation(perm_key, x.shape[0])  # (B,)
  lam_x, lam_y = lam.astype(x.dtype), lam.astype(y.dtype)
  x = lam_x * x + (1 - lam_x) * x[perm]
  y = lam_y * y + (1 - lam_y) * y[perm]
  return x, y


def make_augment(*, shift: int = 0, flip: bool = False, noise: float = 0.0,
                 mixup: float = 0.0, scale: float = 0.0) -> Augment:
  """Builds a batched on-device augmentation function.

  Args:
    shift: maximum translation in pixels (samples): each example moves by an
      independent integer offset in ``[-shift, shift]`` along every spatial axis,
      vacated positions filled with zeros. 0 disables.
    flip: mirror each example along its last spatial axis (W for images, L
      for signals) with probability 1/2. Off by default: digits are not
      mirror-symmetric.
    noise: standard deviation of additive Gaussian noise. 0 disables.
    mixup: alpha of mixup's Beta(alpha, alpha). One mixing weight ``lam`` per
      batch (as in the mixup paper's implementation), each example mixed with
      a random permutation of the batch: ``x = lam x + (1 - lam) x[perm]``,
      the same for ``y_soft``. 0 disables.
    scale: each example is multiplied by a factor uniform in
      ``[1 - scale, 1 + scale]``, must be below 1. 0 disables.

  Returns:
    ``augment(key, x, y_soft) -> (x, y_soft)``: ``key`` a PRNG key (raw uint32
    or typed); ``x`` a float batch ``(B, H, W, C)``, ``(B, L, C)`` or (without
    shift / flip) ``(B, D)``; ``y_soft`` ``(B, K)`` one-hot or soft targets (may
    be None when mixup is off). Outputs keep the input shapes and dtypes. With
    every option off it returns its inputs unchanged and traces no random ops.

  Raises:
    JaxdlError: for an out-of-range option here, or, when traced, for a batch
      an enabled option cannot handle.
  """
  if isinstance(shift, bool) or not isinstance(shift, numbers.Integral) or shift < 0:
    raise JaxdlError(f"augment.shift must be a non-negative integer, got {shift!r}")
  shift = int(shift)
  for option, value in (("noise", noise), ("mixup", mixup)):
    if not value >= 0:  # also rejects NaN
      raise JaxdlError(f"augment.{option} must be >= 0, got {value!r}")
  if not 0 <= scale < 1:
    # A factor range reaching 0 or below would erase or invert examples.
    raise JaxdlError(f"augment.scale must be in [0, 1), got {scale!r}")

  steps = []
  if shift:
    steps.append(functools.partial(_shift, shift=shift))
  if flip:
    steps.append(_flip)
  if scale:
    steps.append(functools.partial(_scale, scale=float(scale)))
  if noise:
    steps.append(functools.partial(_noise, std=float(noise)))
  if mixup:
    steps.append(functools.partial(_mixup, alpha=float(mixup)))

  if not steps:
    def identity(key, x, y_soft):
      del key  # nothing random to do
      return x, y_soft

    return identity

  def augment(key, x, y_soft):
    keys = jax.random.split(key, len(steps))
    for i, step in enumerate(steps):
      x, y_soft = step(keys[i], x, y_soft)
    return x, y_soft

  return augment
