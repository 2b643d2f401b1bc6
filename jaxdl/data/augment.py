"""Data augmentation as a pure, jittable function of (key, batch).

``make_augment(...)`` returns ``augment(key, x, y_soft) -> (x, y_soft)`` that
runs on device inside the training step: no host round trips, no Python-level
randomness, one trace per batch shape. It works on image batches
``(B, H, W, C)`` and signal batches ``(B, L, C)``; options that need no spatial
axes (noise, scale, mixup) also work on vector batches ``(B, D)``.

The steps run in a fixed order: shift, flip, scale, noise, time and
frequency masks, then mixup (so mixup mixes already augmented examples). Each
enabled step gets its own subkey.

Padded sequences pass ``lengths`` (B,): shifts and flips then move each
sequence within its own valid steps and masks fall inside them (what the
padded steps hold is left to the models, which never read it). Token ids
(B, T) take shifts and flips (vacated steps get id 0); the other steps need
floats.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxdl.utils.errors import JaxdlError

Augment = Callable[..., tuple[jax.Array, jax.Array]]  # (key, x, y_soft, lengths=None) -> (x, y_soft)


def _per_example(values: jax.Array, x: jax.Array) -> jax.Array:
  # (B,) -> (B, 1, ..., 1): same rank as x, so no implicit rank promotion.
  return values.reshape(values.shape[:1] + (1,) * (x.ndim - 1))


def _require_spatial(x: jax.Array, option: str) -> None:
  if x.ndim < 3:
    raise JaxdlError(f"augment.{option} needs spatial axes, (B, H, W, C) or (B, L, C); "
                     f"got a batch of shape {x.shape}: set augment.{option}={'0' if option == 'shift' else 'false'}")


def _require_signal(x: jax.Array, option: str) -> None:
  if x.ndim != 3 or not jnp.issubdtype(x.dtype, jnp.floating):
    raise JaxdlError(f"augment.{option} needs float sequences (B, T, C), got a batch of {x.dtype} "
                     f"and shape {x.shape}")


def _require_float(x: jax.Array, option: str) -> None:
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise JaxdlError(f"augment.{option} needs floating-point inputs, got {x.dtype}")


def _gather_steps(x: jax.Array, source: jax.Array, valid: jax.Array) -> jax.Array:
  """``out[b, t] = x[b, source[b, t]]`` where ``valid[b, t]``, else 0; source and valid (B, T)."""
  index = jnp.clip(source, 0, x.shape[1] - 1).reshape(source.shape + (1,) * (x.ndim - 2))
  picked = jnp.take_along_axis(x, index, axis=1)  # (B, T, C)
  return jnp.where(valid.reshape(index.shape), picked, jnp.zeros((), x.dtype))


def _shift(key, x, y, *, shift: int, lengths=None):
  """Translates each example by its own integer offset per spatial axis, zero fill.

  With ``lengths``, a sequence moves within its own valid steps: what
  leaves them is dropped and what enters is zeros, as at the ends of a
  whole-length signal.
  """
  _require_spatial(x, "shift")
  if lengths is not None:
    offsets = jax.random.randint(key, (x.shape[0], 1), -shift, shift + 1)  # (B, 1)
    steps = jnp.arange(x.shape[1])[None, :]  # (1, T)
    source = steps - offsets  # (B, T): output step t takes input t - offset
    inside = (source >= 0) & (source < lengths[:, None]) & (steps < lengths[:, None])  # (B, T)
    return _gather_steps(x, source, inside), y
  batch, spatial = x.shape[0], x.shape[1:-1]
  offsets = jax.random.randint(key, (batch, len(spatial)), -shift, shift + 1)  # (B, S)
  padded = jnp.pad(x, [(0, 0)] + [(shift, shift)] * len(spatial) + [(0, 0)])  # (B, H+2s, W+2s, C)

  def crop(example, offset):
    # Output pixel p takes input p - offset, i.e. padded p - offset + shift.
    starts = [shift - offset[i] for i in range(len(spatial))] + [0]
    return lax.dynamic_slice(example, starts, x.shape[1:])

  return jax.vmap(crop)(padded, offsets), y


def _flip(key, x, y, lengths=None):
  """Mirrors each example along its last spatial axis (W, or L) with probability 1/2.

  With ``lengths``, a sequence is reversed within its own valid steps.
  """
  _require_spatial(x, "flip")
  mask = jax.random.bernoulli(key, 0.5, x.shape[:1])  # (B,)
  if lengths is not None:
    steps = jnp.arange(x.shape[1])[None, :]  # (1, T)
    flipped = _gather_steps(x, lengths[:, None] - 1 - steps, steps < lengths[:, None])
    return jnp.where(_per_example(mask, x), flipped, x), y
  return jnp.where(_per_example(mask, x), jnp.flip(x, axis=-2), x), y


# Park et al. (2019) cap a time mask at p times the utterance's length; their
# policies for long utterances use p = 0.2, which also keeps a mask from
# blanking the 6-frame recordings of spoken digits.
TIME_MASK_SHARE = 0.2


def _band(key, size: jax.Array, max_width: jax.Array, shape) -> tuple[jax.Array, jax.Array]:
  """A random band per example: width uniform in [0, max_width], start uniform where it fits in ``size``."""
  width_key, start_key = jax.random.split(key)
  width = jnp.floor(jax.random.uniform(width_key, shape) * (max_width + 1)).astype(jnp.int32)
  start = jnp.floor(jax.random.uniform(start_key, shape) * (size - width + 1)).astype(jnp.int32)
  return start, width


def _time_mask(key, x, y, *, width: int, count: int, lengths=None):
  """SpecAugment's time masks (Park et al., 2019): ``count`` bands of consecutive steps set to 0.

  Each band is at most ``width`` steps and ``TIME_MASK_SHARE`` of the
  sequence's length, and lies within its valid steps.
  """
  _require_signal(x, "time_mask")
  size = jnp.full(x.shape[:1], x.shape[1]) if lengths is None else lengths  # (B,)
  cap = jnp.minimum(width, jnp.floor(TIME_MASK_SHARE * size).astype(jnp.int32))  # (B,)
  steps = jnp.arange(x.shape[1])[None, :]  # (1, T)
  keep = jnp.ones(x.shape[:2], bool)  # (B, T)
  for k in jax.random.split(key, count):
    start, span = _band(k, size, cap, x.shape[:1])  # (B,)
    keep &= (steps < start[:, None]) | (steps >= (start + span)[:, None])
  return jnp.where(keep[:, :, None], x, jnp.zeros((), x.dtype)), y


def _freq_mask(key, x, y, *, width: int, count: int, lengths=None):
  """SpecAugment's frequency masks: ``count`` bands of at most ``width`` consecutive features set to 0."""
  del lengths  # a band covers every step
  _require_signal(x, "freq_mask")
  features = jnp.arange(x.shape[-1])[None, :]  # (1, C)
  keep = jnp.ones((x.shape[0], x.shape[-1]), bool)  # (B, C)
  for k in jax.random.split(key, count):
    start, span = _band(k, x.shape[-1], min(width, x.shape[-1]), x.shape[:1])  # (B,)
    keep &= (features < start[:, None]) | (features >= (start + span)[:, None])
  return jnp.where(keep[:, None, :], x, jnp.zeros((), x.dtype)), y


def _scale(key, x, y, *, scale: float, lengths=None):
  """Multiplies each example by a factor drawn uniformly from [1 - scale, 1 + scale]."""
  del lengths  # padded steps are never read
  _require_float(x, "scale")
  factor = jax.random.uniform(key, x.shape[:1], x.dtype, 1 - scale, 1 + scale)  # (B,)
  return x * _per_example(factor, x), y


def _noise(key, x, y, *, std: float, lengths=None):
  """Adds i.i.d. Gaussian noise of standard deviation ``std``."""
  del lengths  # padded steps are never read
  _require_float(x, "noise")
  return x + jnp.asarray(std, x.dtype) * jax.random.normal(key, x.shape, x.dtype), y


def _mixup(key, x, y, *, alpha: float, lengths=None):
  """Mixes the batch with a permutation of itself, one Beta(alpha, alpha) weight per batch."""
  _require_float(x, "mixup")
  if lengths is not None:
    raise JaxdlError("augment.mixup does not mix padded sequences of different lengths; set augment.mixup=0")
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
                 mixup: float = 0.0, scale: float = 0.0, time_mask: int = 0, freq_mask: int = 0,
                 num_masks: int = 1) -> Augment:
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
    time_mask: SpecAugment (Park et al., 2019): the most consecutive steps
      of a sequence ``(B, T, C)`` one time mask sets to 0 (also at most
      ``TIME_MASK_SHARE`` of its length). 0 disables.
    freq_mask: the most consecutive features (channels) one frequency mask
      sets to 0. 0 disables.
    num_masks: time masks and frequency masks per example (each of width
      uniform in ``[0, time_mask]`` or ``[0, freq_mask]``).

  Returns:
    ``augment(key, x, y_soft, lengths=None) -> (x, y_soft)``: ``key`` a PRNG
    key (raw uint32 or typed); ``x`` a float batch ``(B, H, W, C)``,
    ``(B, L, C)`` or (without shift / flip) ``(B, D)``, or token ids
    ``(B, T)``; ``y_soft`` ``(B, K)`` one-hot or soft targets (may be None
    when mixup is off); ``lengths`` (B,) the valid steps of padded sequences.
    Outputs keep the input shapes and dtypes. With every option off it
    returns its inputs unchanged and traces no random ops.

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
  for option, value, least in (("time_mask", time_mask, 0), ("freq_mask", freq_mask, 0), ("num_masks", num_masks, 1)):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
      raise JaxdlError(f"augment.{option} must be an integer >= {least}, got {value!r}")

  steps = []
  if shift:
    steps.append(functools.partial(_shift, shift=shift))
  if flip:
    steps.append(_flip)
  if scale:
    steps.append(functools.partial(_scale, scale=float(scale)))
  if noise:
    steps.append(functools.partial(_noise, std=float(noise)))
  if time_mask:
    steps.append(functools.partial(_time_mask, width=int(time_mask), count=int(num_masks)))
  if freq_mask:
    steps.append(functools.partial(_freq_mask, width=int(freq_mask), count=int(num_masks)))
  if mixup:
    steps.append(functools.partial(_mixup, alpha=float(mixup)))

  if not steps:
    def identity(key, x, y_soft, lengths=None):
      del key, lengths  # nothing random to do
      return x, y_soft

    return identity

  def augment(key, x, y_soft, lengths=None):
    tokens = x.ndim == 2 and jnp.issubdtype(x.dtype, jnp.integer)
    if tokens:
      x = x[..., None]  # (B, T, 1): ids shift and flip as a one-channel signal
    keys = jax.random.split(key, len(steps))
    for i, step in enumerate(steps):
      x, y_soft = step(keys[i], x, y_soft, lengths=lengths)
    return (x[..., 0] if tokens else x), y_soft

  return augment
