"""Building blocks shared by the model families (the convolution is ``jaxdl.models.conv``).

``max_pool`` / ``avg_pool`` reduce non-overlapping windows by reshaping, which
avoids XLA's slow select-and-scatter gradient of ``nn.max_pool`` on CPU;
``max_pool``'s backward is written by hand (docs/design.md, trap 16).
"""

from collections.abc import Callable, Sequence
import functools
import inspect
import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.utils.errors import JaxdlError

Dtype = Any

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'gelu': nn.gelu,
    'tanh': jnp.tanh,
    'sigmoid': nn.sigmoid,
    'silu': nn.silu,
    'elu': nn.elu,
    'leaky_relu': nn.leaky_relu,
    'softplus': nn.softplus,
    'identity': lambda x: x,
}

ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATIONS)

# Momentum 0.9 (PyTorch's 0.1) rather than Flax's 0.99: the small datasets this
# toolkit trains on give a few hundred steps per run, and the running
# statistics must settle within them.
BATCH_NORM_MOMENTUM = 0.9
# PyTorch's default epsilon, so numbers are comparable with reference runs.
BATCH_NORM_EPSILON = 1e-5


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the elementwise activation called ``name`` (see ``ACTIVATIONS``).

  Raises:
    JaxdlError: ``name`` is not a known activation.
  """
  try:
    return _ACTIVATIONS[name]
  except (KeyError, TypeError):
    raise JaxdlError(
        f"unknown activation {name!r} (choices: {', '.join(ACTIVATIONS)})"
    ) from None


def batch_norm(
    train: bool,
    *,
    dtype: Dtype,
    param_dtype: Dtype,
    zero_scale: bool = False,
    name: str | None = None,
) -> nn.BatchNorm:
  """The toolkit's BatchNorm: batch statistics in training, running ones after.

  There is no ``axis_name``: steps run under ``jit`` with a ``NamedSharding``
  over the batch, where the mean over a sharded batch is already global.

  Args:
    train: normalize with (and update) the batch statistics when True, with
      the running statistics in the 'batch_stats' collection when False.
    dtype: computation dtype.
    param_dtype: dtype of ``scale`` and ``bias``.
    zero_scale: initialize ``scale`` to zero (for the last norm of a residual
      branch, so the block starts as the identity).
    name: submodule name.
  """
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=BATCH_NORM_MOMENTUM,
      epsilon=BATCH_NORM_EPSILON,
      dtype=dtype,
      param_dtype=param_dtype,
      scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
      name=name,
  )


def dropout(x: jax.Array, rate: float, train: bool) -> jax.Array:
  """``nn.Dropout`` drawing from the 'dropout' rng, active only when training.

  Call inside a compact method; a zero rate adds no submodule.
  """
  if rate == 0:
    return x
  return nn.Dropout(rate, deterministic=not train)(x)


def _per_axis(value: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
  """Broadcasts an int to ``n`` spatial axes, or checks a tuple has ``n``."""
  if isinstance(value, int):
    return (value,) * n
  value = tuple(value)
  if len(value) != n:
    raise JaxdlError(f'{what} {value} has {len(value)} entries for {n} spatial axes')
  return value


def _windows(x: jax.Array, window: int | Sequence[int], what: str) -> tuple[jax.Array, tuple[int, ...]]:
  """``x`` (B, *S, C) as (B, S_1/w_1, w_1, S_2/w_2, w_2, ..., C), and the window axes of that view."""
  nd = x.ndim - 2
  if nd < 1:
    raise JaxdlError(f'{what} expects inputs (B, *spatial, C), got shape {tuple(x.shape)}')
  window = _per_axis(window, nd, f'{what} window')
  batch, *sizes, channels = x.shape
  out = [n // w for n, w in zip(sizes, window)]
  if min(out) < 1:
    raise JaxdlError(
        f'{what} window {window} is larger than the spatial size {tuple(sizes)}')
  # Crop the remainder, as VALID padding drops windows that do not fit.
  x = x[(slice(None), *(slice(0, m * w) for m, w in zip(out, window)), slice(None))]
  x = x.reshape(batch, *itertools.chain(*zip(out, window)), channels)
  return x, tuple(range(2, 2 * nd + 1, 2))


# The max's gradient by hand. Autodiff of jnp.max builds its tie mask and
# counts in the forward pass (three more passes over the pooled input, kept
# for the backward); here the forward is the max alone and the backward
# builds the mask where it writes the gradient. The backward takes the max
# again, from the very values it compares with it: XLA recomputes a cheap
# producer (batch norm and relu) inside each fusion that reads it, and a max
# from the forward pass's copy can differ from the backward's copy in the
# last bit, so that no position in a window equals it (a zero count, NaN).
# The gradient is JAX's rule for reduce_max: loc * (dy / count).
@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _window_max(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  return jnp.max(x, axis=axes)


def _window_max_fwd(x, axes):
  return jnp.max(x, axis=axes), x


def _window_max_bwd(axes, x, dy):
  y = _reduce_windows(x, axes, jnp.maximum)  # elementwise over the window's offsets, see above
  loc = (x == jnp.expand_dims(y, axes)).astype(dy.dtype)
  count = _reduce_windows(loc, axes, jnp.add)
  return (loc * jnp.expand_dims(dy / count, axes),)


def _reduce_windows(v: jax.Array, axes: tuple[int, ...], op) -> jax.Array:
  """``op`` over the window axes of a ``_windows`` view, one offset at a time: elementwise, so XLA fuses it.

  For the tie counts too: a ``jnp.sum`` over the window axes is a separate
  reduction pass, and the 28x28 CNN's step took 123-128 ms with it against
  115-118 ms this way (interleaved A/B, AMD host, 2026-12-08).
  """
  total = None
  for offsets in itertools.product(*(range(v.shape[a]) for a in axes)):
    index = [slice(None)] * v.ndim
    for a, o in zip(axes, offsets):
      index[a] = o
    total = v[tuple(index)] if total is None else op(total, v[tuple(index)])
  return total


_window_max.defvjp(_window_max_fwd, _window_max_bwd)


def max_pool(x: jax.Array, window: int | Sequence[int]) -> jax.Array:
  """Max over non-overlapping windows (stride = window, VALID).

  Equal to ``nn.max_pool(x, window, strides=window, padding='VALID')``, but the
  gradient is an elementwise mask instead of XLA's select-and-scatter, which
  measured about 2x faster for a whole CNN step on CPU, and the mask is built
  in the backward pass alone. Where a window holds tied maxima the gradient
  is split between them evenly.

  Args:
    x: (B, *spatial, C), any number of spatial axes.
    window: int (every spatial axis) or one per spatial axis. A remainder that
      does not fill a window is dropped.

  Returns:
    (B, *(spatial // window), C).
  """
  x, axes = _windows(x, window, 'max_pool')
  return _window_max(x, axes)


def avg_pool(x: jax.Array, window: int | Sequence[int]) -> jax.Array:
  """Mean over non-overlapping windows (stride = window, VALID); see ``max_pool``."""
  x, axes = _windows(x, window, 'avg_pool')
  return jnp.mean(x, axis=axes)


def on_rows(layer: Callable[[jax.Array], jax.Array], x: jax.Array, trailing: int) -> jax.Array:
  """``layer`` on ``x`` (*lead, *F) as rows (prod(lead), *F), with F the ``trailing`` last axes; the result as (*lead, ...).

  The same function as ``layer(x)`` for a layer that treats rows alike (a
  dense layer, a LayerNorm). The reason is speed: a dense layer on a (B, T, D)
  input got its kernel gradient on XLA's CPU backend through transposing
  copies of its input and output gradient, 33 copies in a two-block
  Transformer MLP, whose train step took 35 ms against 29 ms on rows; the
  char-LM's step went from 77 to 68 ms (docs/design.md, trap 17).
  """
  lead = x.shape[:x.ndim - trailing]
  y = layer(x.reshape(-1, *x.shape[x.ndim - trailing:]))
  return y.reshape(*lead, *y.shape[1:])


def global_avg_pool(x: jax.Array) -> jax.Array:
  """Mean over all spatial axes: (B, *spatial, C) -> (B, C)."""
  return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))


def global_max_pool(x: jax.Array) -> jax.Array:
  """Max over all spatial axes: (B, *spatial, C) -> (B, C)."""
  return jnp.max(x, axis=tuple(range(1, x.ndim - 1)))


def check_input_rank(model: str, x: jax.Array, allowed: Sequence[int]) -> int:
  """Returns the number of spatial axes of ``x``, or raises naming ``model``.

  Args:
    model: registry name of the model, for the message.
    x: batched inputs.
    allowed: spatial ranks the model takes: 0 vectors (B, D), 1 signals
      (B, L, C), 2 images (B, H, W, C).
  """
  nd = x.ndim - 2
  if nd not in allowed:
    names = {0: 'vectors (B, D)', 1: '1-D signals (B, L, C)', 2: 'images (B, H, W, C)'}
    expected = ' or '.join(names[n] for n in sorted(allowed))
    raise JaxdlError(
        f"model {model!r} expects {expected}, got inputs of shape "
        f"{tuple(x.shape[1:])} per example")
  return nd


def check_spatial_fits(model: str, x: jax.Array, out_sizes: Sequence[int],
                       how: str) -> None:
  """Raises naming ``model`` if a spatial axis shrinks to zero.

  Args:
    model: registry name of the model, for the message.
    x: batched inputs (B, *spatial, C) as given to the model.
    out_sizes: the spatial sizes the model would reduce ``x`` to.
    how: what shrinks it, for the message (e.g. '2 max-pools of 2').
  """
  if min(out_sizes) < 1:
    raise JaxdlError(
        f'model {model!r}: inputs of spatial size {tuple(x.shape[1:-1])} '
        f'shrink to zero through {how}')


# ----------------------------------------------------------------- sequences --


def length_mask(lengths: jax.Array | None, batch: int, steps: int) -> jax.Array:
  """True at valid steps: (B, T) from lengths (B,), all True for None."""
  if lengths is None:
    return jnp.ones((batch, steps), bool)
  return jnp.arange(steps)[None, :] < lengths[:, None]


def as_sequence(model: str, x: jax.Array) -> jax.Array:
  """(B, T, C) from signals (B, L, C), or from images (B, H, W, C) read row by row."""
  nd = check_input_rank(model, x, (1, 2))
  if nd == 2:
    # Each image row is one time step of W * C features: the classic
    # row-by-row MNIST RNN.
    x = x.reshape(x.shape[0], x.shape[1], -1)  # (B, H, W * C)
  return x


def masked_pool(ys: jax.Array, mask: jax.Array, how: str) -> jax.Array:
  """Mean or max over the valid steps of (B, T, D) -> (B, D).

  ``jnp.where`` rather than a product, so whatever sits at padded steps (even
  inf or NaN) never reaches the result.
  """
  valid = mask[:, :, None]  # (B, T, 1)
  if how == 'mean':
    total = jnp.where(valid, ys, 0).sum(axis=1)  # (B, D)
    return total / jnp.maximum(mask.sum(axis=1, keepdims=True), 1).astype(ys.dtype)
  return jnp.where(valid, ys, jnp.finfo(ys.dtype).min).max(axis=1)  # (B, D)


def zero_padding(x: jax.Array, lengths: jax.Array | None) -> jax.Array:
  """``x`` (B, T, ...) with every step past its sequence's length set to 0 (unchanged for None).

  A model that reads a padded sequence whole (an MLP, a CNN with a flat
  head) then sees zeros there whatever the data held, as at the ends of a
  zero-padded convolution.
  """
  if lengths is None:
    return x
  mask = length_mask(lengths, *x.shape[:2])  # (B, T)
  return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 2)), x, jnp.zeros((), x.dtype))


def takes_lengths(model: nn.Module) -> bool:
  """Whether ``model`` is called with ``lengths=`` (the valid steps of padded sequences)."""
  return 'lengths' in inspect.signature(type(model).__call__).parameters


class TokenEmbedding(nn.Module):
  """Integer token ids (B, T) through an embedding into a classifier of sequences (B, T, E).

  The vocabulary comes from the data, so any sequence model (or one that
  reads a signal whole) takes tokens without an option of its own.

  Attributes:
    model: the classifier the embeddings go into (called with ``lengths``
      when given).
    vocab_size: V, the number of ids.
    features: E, the embedding width.
  """

  model: nn.Module
  vocab_size: int
  features: int = 64

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool, lengths: jax.Array | None = None,
               **kwargs) -> jax.Array:
    """The model's output for integer ``tokens`` (B, T) with optional ``lengths`` (B,)."""
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise JaxdlError(f'token embedding expects integer ids (B, T), got {tokens.dtype} inputs of '
                       f'shape {tuple(tokens.shape)}')
    # Flax's default embedding init has unit variance per entry: inputs on
    # the scale a float signal standardised to mean 0, std 1 would have.
    x = nn.Embed(self.vocab_size, self.features, name='embed')(tokens)  # (B, T, E)
    if lengths is not None:
      kwargs['lengths'] = lengths
    return self.model(x, train=train, **kwargs)
