"""Gradient attributions: vanilla gradient, gradient x input, SmoothGrad, Integrated Gradients.

Each returns attributions of the input's shape (B, ...), one per input
element, for the target class's logit (see :mod:`jaxdl.interpret.common`).
All are pure and jittable given their static options (``jax.jit(functools.
partial(smoothgrad, model, samples=25))``), and vmap over anything batched.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.interpret.common import as_apply, input_gradient, resolve_targets, score_fn
from jaxdl.utils.errors import JaxdlError

# Smilkov et al. 2017: noise of 10-20% of the input range and ~50 samples
# sharpen maps; 25 samples is their lower end, where the map has settled
# for small images.
SMOOTHGRAD_SAMPLES = 25
SMOOTHGRAD_NOISE = 0.15

# Measured (notes/interpret.md): on a trained digits CNN the midpoint rule's
# mean completeness error at 32 steps is already under 1%; 64 leaves room
# for larger, less smooth models at a cost that is still small on CPU.
IG_STEPS = 64
BASELINES = ("zeros", "mean", "blur")
QUADRATURES = ("midpoint", "trapezoid", "gauss_legendre")


def gradient(model: Any, variables: Any, x: jax.Array, target_class: Any | None = None) -> jax.Array:
  """The vanilla gradient (Simonyan et al. 2014): d logit_target / d x, (B, ...)."""
  apply_fn = as_apply(model)
  target = resolve_targets(apply_fn, variables, x, target_class)
  return input_gradient(apply_fn, variables, x, target)


def gradient_x_input(model: Any, variables: Any, x: jax.Array,
                     target_class: Any | None = None) -> jax.Array:
  """Gradient times input (Shrikumar et al. 2016), elementwise: (B, ...).

  For a model linear in ``x`` this is each input's exact share of the logit
  (relative to a zero input).
  """
  return gradient(model, variables, x, target_class) * x


def smoothgrad(model: Any, variables: Any, x: jax.Array, target_class: Any | None = None, *,
               samples: int = SMOOTHGRAD_SAMPLES, noise: float = SMOOTHGRAD_NOISE,
               key: jax.Array | None = None) -> jax.Array:
  """SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of each input.

  Args:
    model, variables, x, target_class: see :mod:`jaxdl.interpret.common`; the
      target is fixed on the clean input, so noise never changes the class
      explained.
    samples: noisy copies per input.
    noise: the noise's standard deviation as a share of each example's own
      range, ``max(x[b]) - min(x[b])`` (per example, as the paper's
      sigma / (x_max - x_min), so a dark example gets as much relative noise
      as a bright one). 0 gives exactly the vanilla gradient.
    key: PRNG key of the noise (default ``PRNGKey(0)``).

  Returns:
    The mean gradient (B, ...) (not its absolute value: take that for display).
  """
  if samples < 1:
    raise JaxdlError(f"smoothgrad samples={samples} must be >= 1")
  if noise < 0:
    raise JaxdlError(f"smoothgrad noise={noise} must be >= 0 (a share of the input range)")
  apply_fn = as_apply(model)
  target = resolve_targets(apply_fn, variables, x, target_class)
  key = jax.random.PRNGKey(0) if key is None else key
  axes = tuple(range(1, x.ndim))
  span = jnp.max(x, axis=axes, keepdims=True) - jnp.min(x, axis=axes, keepdims=True)  # (B, 1, ...)
  noisy = x[None] + (noise * span)[None] * jax.random.normal(key, (samples, *x.shape), x.dtype)
  return jnp.mean(gradients_at(apply_fn, variables, noisy, target), axis=0)  # (B, ...)


def gradients_at(apply_fn, variables: Any, points: jax.Array, target: jax.Array) -> jax.Array:
  """Input gradients at ``points`` (N, B, ...): N copies of the batch (noisy, or along a path).

  The copies are folded into the batch, (N * B, ...), for one forward and one
  backward pass: this compiled about twice as fast as ``vmap`` over the
  copies (XLA CPU) and runs the same batched matmuls. Memory grows with
  N * B: explain a large model's inputs a few at a time.
  """
  n, b = points.shape[:2]
  flat = points.reshape((n * b, *points.shape[2:]))
  grads = input_gradient(apply_fn, variables, flat, jnp.tile(target, n))
  return grads.reshape(points.shape)


class IGResult(NamedTuple):
  """Integrated Gradients with its check.

  Attributes:
    attributions: (B, ...), summing to about ``f(x) - f(baseline)``.
    completeness_error: (B,) ``|sum(attributions) - (f(x) - f(baseline))| /
      |f(x) - f(baseline)|`` (Captum's convergence delta, made relative).
    score_gap: (B,) ``f(x) - f(baseline)``, the target logit's change.
  """

  attributions: jax.Array
  completeness_error: jax.Array
  score_gap: jax.Array


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
  """Nodes ``alpha`` in [0, 1] and weights (summing to 1) for the path integral.

  'midpoint' (the Riemann midpoint sum, nodes ``(k + 1/2) / steps``),
  'trapezoid' (``steps`` nodes from 0 to 1, both ends included), or
  'gauss_legendre' (exact for polynomials of degree ``2 steps - 1``: best
  on smooth models, no better than the others across ReLU kinks).
  """
  if steps < 1 or (rule == "trapezoid" and steps < 2):
    raise JaxdlError(f"integrated gradients steps={steps} is too few for the {rule} rule")
  if rule == "midpoint":
    return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
  if rule == "trapezoid":
    weights = np.full(steps, 1.0 / (steps - 1))
    weights[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, steps), weights
  if rule == "gauss_legendre":
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1) / 2, weights / 2
  raise JaxdlError(f"unknown quadrature {rule!r} (choices: {', '.join(QUADRATURES)})")


def make_baseline(baseline: Any, x: jax.Array, *, blur_sigma: float = 1.0) -> jax.Array:
  """The reference input for Integrated Gradients, shaped like ``x``.

  Args:
    baseline: 'zeros' (the all-zero input: black for images in [0, 1]);
      'mean' (the batch's mean example, the same for every example of ``x``);
      'blur' (each input blurred by a Gaussian of ``blur_sigma`` samples along
      every spatial axis, Sturmfels et al. 2020: it keeps the coarse shape
      and removes the detail IG then explains); or an array that broadcasts
      to ``x.shape`` (one example's shape, or the batch's).
    x: the inputs (B, ...).
    blur_sigma: the blur's standard deviation, in samples.
  """
  if isinstance(baseline, str):
    if baseline == "zeros":
      return jnp.zeros_like(x)
    if baseline == "mean":
      return jnp.broadcast_to(jnp.mean(x, axis=0, keepdims=True), x.shape)
    if baseline == "blur":
      return gaussian_blur(x, blur_sigma)
    raise JaxdlError(f"unknown integrated gradients baseline {baseline!r} (choices: "
                     f"{', '.join(BASELINES)}, or an array shaped like the inputs)")
  baseline = jnp.asarray(baseline, x.dtype)
  try:
    return jnp.broadcast_to(baseline, x.shape)
  except ValueError:
    raise JaxdlError(f"integrated gradients baseline of shape {tuple(baseline.shape)} does not "
                     f"broadcast to the inputs' {tuple(x.shape)}") from None


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
  """(B, *spatial, C) blurred along each spatial axis by a Gaussian (edges repeated)."""
  if sigma <= 0:
    return x
  radius = int(np.ceil(3 * sigma))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = jnp.asarray(taps / taps.sum(), x.dtype)
  for axis in range(1, max(x.ndim - 1, 2)):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(x, pad, mode="edge")
    n = x.shape[axis]
    x = sum(taps[i] * jax.lax.slice_in_dim(padded, i, i + n, axis=axis) for i in range(2 * radius + 1))
  return x


def integrated_gradients(model: Any, variables: Any, x: jax.Array, target_class: Any | None = None, *,
                         baseline: Any = "zeros", steps: int = IG_STEPS, rule: str = "midpoint",
                         blur_sigma: float = 1.0) -> IGResult:
  """Integrated Gradients (Sundararajan et al. 2017) along the straight path from a baseline.

  ``IG(x) = (x - b) * integral_0^1 grad f(b + a (x - b)) da``, the integral
  by ``rule`` over ``steps`` nodes (all nodes of the batch in one pass, see
  :func:`gradients_at`). Completeness says the attributions sum to ``f(x) - f(b)``; the
  result reports how far they are from it.

  Args:
    model, variables, x, target_class: see :mod:`jaxdl.interpret.common`.
    baseline: see :func:`make_baseline`.
    steps: quadrature nodes.
    rule: see :func:`quadrature`.
    blur_sigma: for ``baseline='blur'``.

  Returns:
    An :class:`IGResult`.
  """
  base = make_baseline(baseline, x, blur_sigma=blur_sigma)  # bad options fail before any model work
  alphas, weights = quadrature(rule, steps)
  apply_fn = as_apply(model)
  target = resolve_targets(apply_fn, variables, x, target_class)
  delta = x - base

  alphas = jnp.asarray(alphas, x.dtype).reshape((steps,) + (1,) * x.ndim)
  grads = gradients_at(apply_fn, variables, base[None] + alphas * delta[None], target)  # (steps, B, ...)
  mean_grad = jnp.tensordot(jnp.asarray(weights, grads.dtype), grads, axes=1)  # (B, ...)
  attributions = delta * mean_grad
  score = score_fn(apply_fn, variables, target)
  gap = score(x) - score(base)  # (B,)
  total = jnp.sum(attributions.reshape(x.shape[0], -1), axis=1)
  error = jnp.abs(total - gap) / jnp.maximum(jnp.abs(gap), 1e-6)
  return IGResult(attributions, error, gap)
