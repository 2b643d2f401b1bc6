"""SimCLR's views: random transformations of a batch, drawn on the device inside the step.

``make_views(...)`` returns ``view(key, x) -> x'``, a pure function of a key
and a batch of images (B, H, W, C) or signals (B, L, C), with one
independent draw per example. Two calls with two keys give the two views
of SimCLR (Chen et al. 2020, sec. 3: "data augmentation"). The steps, in
order:

1. a random affine warp (rotation, zoom, translation) with bilinear
   sampling and zero fill: what SimCLR's random resized crop does, scaled
   down to 8x8 digits, where a crop of 8% of the area (the paper's lower
   bound) leaves a couple of pixels;
2. cutout (DeVries & Taylor 2017): a square (a segment for signals) set to 0;
3. a brightness factor per example;
4. additive Gaussian noise.

Colour jitter and blur, the paper's other two, have no meaning on one grey
channel of 8x8 pixels; brightness and noise stand in for them.
"""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdl.utils.errors import JaxdlError

View = Callable[[jax.Array, jax.Array], jax.Array]


def _per_example(values: jax.Array, x: jax.Array) -> jax.Array:
  # (B,) -> (B, 1, ..., 1): same rank as x, so no implicit rank promotion.
  return values.reshape(values.shape[:1] + (1,) * (x.ndim - 1))


def _grid(spatial: tuple[int, ...]) -> jax.Array:
  """Pixel coordinates (nd, *spatial), float32."""
  return jnp.stack(jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32) for n in spatial], indexing="ij"))


def _tent(coords: jax.Array, n: int) -> jax.Array:
  """Bilinear weights of input positions 0..n-1 for sampling points ``coords`` (...,) -> (..., n).

  ``max(0, 1 - |coord - q|)``: the two neighbours of a point share its
  weight, and a point off the grid gets weight only from the pixels it
  overlaps, which is bilinear sampling with zero fill.
  """
  grid = jnp.arange(n, dtype=jnp.float32).reshape((1,) * coords.ndim + (n,))
  return jnp.maximum(0.0, 1.0 - jnp.abs(coords[..., None] - grid))


def _affine(key, x, *, rotate: float, zoom: float, translate: float):
  """Each example warped by its own rotation, zoom and translation (bilinear, zero fill).

  Bilinear sampling is written as contractions with tent weights, one
  spatial axis at a time, instead of a gather (``map_coordinates``): on the
  CPU the gather's program took several times longer to compile, and the
  step runs it twice.
  """
  batch, spatial = x.shape[0], x.shape[1:-1]
  nd = len(spatial)
  k_rot, k_zoom, k_shift = jax.random.split(key, 3)
  angle = jax.random.uniform(k_rot, (batch,), jnp.float32, -1.0, 1.0) * math.radians(rotate)  # (B,)
  scale = jax.random.uniform(k_zoom, (batch,), jnp.float32, 1.0 - zoom, 1.0 + zoom)  # (B,)
  shift = jax.random.uniform(k_shift, (batch, nd), jnp.float32, -translate, translate)  # (B, nd)
  centre = jnp.asarray([(n - 1) / 2 for n in spatial], jnp.float32)[None, :, None]  # (1, nd, 1)
  grid = _grid(spatial).reshape(1, nd, -1)  # (1, nd, P): output pixel coordinates
  # Output pixel p shows input point centre + R(-angle) (p - centre - shift) / scale.
  d = grid - centre - shift[:, :, None]  # (B, nd, P)
  if nd == 2:
    cos, sin = jnp.cos(angle)[:, None], jnp.sin(angle)[:, None]  # (B, 1)
    d = jnp.stack([cos * d[:, 0] + sin * d[:, 1], -sin * d[:, 0] + cos * d[:, 1]], axis=1)
  coords = d / scale[:, None, None] + centre  # (B, nd, P)
  xf = x.astype(jnp.float32)
  if nd == 1:
    out = jnp.einsum("bpq,bqc->bpc", _tent(coords[:, 0], spatial[0]), xf)  # (B, L, C)
  else:
    rows = jnp.einsum("bpy,byxc->bpxc", _tent(coords[:, 0], spatial[0]), xf)  # (B, P, W, C)
    out = jnp.einsum("bpx,bpxc->bpc", _tent(coords[:, 1], spatial[1]), rows)  # (B, P, C)
  return out.reshape(x.shape).astype(x.dtype)


def _cutout(key, x, *, size: int):
  """A ``size``-wide square (segment) of each example, at a random place, set to 0."""
  batch, spatial = x.shape[0], x.shape[1:-1]
  nd = len(spatial)
  # The square's first corner, so that at least one pixel of it is inside.
  high = jnp.broadcast_to(jnp.asarray(spatial, jnp.int32), (batch, nd))
  starts = jax.random.randint(key, (batch, nd), -(size - 1), high)  # (B, nd)
  grid = _grid(spatial).astype(jnp.int32)  # (nd, *spatial)
  lo = starts.reshape((batch, nd) + (1,) * nd)
  inside = jnp.all((grid[None] >= lo) & (grid[None] < lo + size), axis=1)  # (B, *spatial)
  return jnp.where(inside[..., None], jnp.zeros((), x.dtype), x)


def _brightness(key, x, *, amount: float):
  factor = jax.random.uniform(key, x.shape[:1], jnp.float32, 1.0 - amount, 1.0 + amount)  # (B,)
  return x * _per_example(factor, x).astype(x.dtype)


def _noise(key, x, *, std: float):
  return x + jnp.asarray(std, x.dtype) * jax.random.normal(key, x.shape, x.dtype)


def make_views(*, rotate: float = 0.0, zoom: float = 0.0, translate: float = 0.0, cutout: int = 0,
               brightness: float = 0.0, noise: float = 0.0) -> View:
  """Builds ``view(key, x) -> x'``: one random view of each example, on the device.

  Args:
    rotate: largest rotation in degrees (images only); 0: none.
    zoom: the scale factor is uniform in ``[1 - zoom, 1 + zoom]`` (> 1 zooms in).
    translate: largest shift in pixels (samples) along each spatial axis.
    cutout: side of the square (segment) set to zero; 0: none.
    brightness: the intensity factor is uniform in ``[1 - brightness, 1 + brightness]``.
    noise: standard deviation of additive Gaussian noise.

  Returns:
    ``view(key, x)`` for float batches (B, H, W, C) or (B, L, C); the output
    has the input's shape and dtype. With every option 0 it returns ``x``.

  Raises:
    JaxdlError: an option out of range here; when traced, a batch without
      spatial axes, or a rotation of signals.
  """
  if not (rotate >= 0 and translate >= 0 and noise >= 0 and 0 <= zoom < 1 and 0 <= brightness < 1):
    raise JaxdlError(f"views: rotate, translate and noise must be >= 0 and zoom, brightness in [0, 1) "
                     f"(got {rotate}, {translate}, {noise}, {zoom}, {brightness})")
  if isinstance(cutout, bool) or int(cutout) != cutout or cutout < 0:
    raise JaxdlError(f"augment.cutout={cutout!r} must be a whole number of pixels >= 0")
  steps = []
  if rotate or zoom or translate:
    steps.append(functools.partial(_affine, rotate=float(rotate), zoom=float(zoom), translate=float(translate)))
  if cutout:
    steps.append(functools.partial(_cutout, size=int(cutout)))
  if brightness:
    steps.append(functools.partial(_brightness, amount=float(brightness)))
  if noise:
    steps.append(functools.partial(_noise, std=float(noise)))

  def view(key: jax.Array, x: jax.Array) -> jax.Array:
    if x.ndim not in (3, 4) or not jnp.issubdtype(x.dtype, jnp.floating):
      raise JaxdlError(f"SimCLR views need float images (B, H, W, C) or signals (B, L, C); got a batch of "
                       f"shape {x.shape} and dtype {x.dtype}")
    if rotate and x.ndim != 4:
      raise JaxdlError(f"augment.rotate={rotate} needs images (B, H, W, C); got signals of shape {x.shape} "
                       f"(set augment.rotate=0)")
    keys = jax.random.split(key, max(len(steps), 1))
    for k, step in zip(keys, steps):
      x = step(k, x)
    return x

  return view
