"""Building blocks shared by the model families.

``Conv`` is a drop-in for ``flax.linen.Conv`` (same parameter names and
shapes) with a choice of two implementations, because XLA's CPU backend runs a
convolution's backward pass badly inside ``lax.scan`` (see ``resolve_conv_impl``).
``max_pool`` / ``avg_pool`` reduce non-overlapping windows by reshaping, which
avoids XLA's slow select-and-scatter gradient of ``nn.max_pool`` on CPU.
"""

from collections.abc import Callable, Sequence
import inspect
import itertools
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from jaxdl.models.initializers import get_initializer
from jaxdl.utils.errors import JaxdlError

Dtype = Any

CONV_IMPLS: tuple[str, ...] = ('auto', 'xla', 'im2col')
PADDINGS: tuple[str, ...] = ('SAME', 'VALID', 'CAUSAL')

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


def _conv_pads(
    padding: str,
    sizes: Sequence[int],
    kernel_size: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> list[tuple[int, int]]:
  """(low, high) zero padding per spatial axis, as XLA computes it for SAME."""
  pads = []
  for n, k, s, d in zip(sizes, kernel_size, strides, dilation):
    span = (k - 1) * d + 1  # extent of the dilated kernel
    if padding == 'SAME':
      out = -(-n // s)  # ceil(n / s)
      total = max((out - 1) * s + span - n, 0)
      pads.append((total // 2, total - total // 2))
    elif padding == 'CAUSAL':
      pads.append((span - 1, 0))  # output t sees inputs <= t only
    else:  # VALID
      pads.append((0, 0))
  return pads


def resolve_conv_impl(impl: str, backend: str | None = None) -> str:
  """Picks the convolution implementation that 'auto' stands for.

  Measured with ``benchmarks/conv_in_scan.py`` (XLA CPU, 2 cores, jax 0.10.2):
  one train step of ``CNN`` (conv-relu-max_pool x2, dense head, Adam) at batch
  128, ms/step, from a Python loop of a jitted step / inside one jitted
  ``lax.scan`` of 50 steps:

    case               xla loop   xla scan   im2col loop   im2col scan
    1-D (40, 1)            3.7       22.4           3.7           3.1
    2-D (8, 8, 1)          5.7       41.6           5.2           4.2
    2-D (28, 28, 1)      102.3     3517.8          84.5          58.3

  Inside ``scan`` XLA's native convolution is 6x, 7x and 34x slower than
  from Python (its backward pass, as known trap 5 in docs/design.md says), while
  im2col is slightly faster in ``scan`` than from Python; so im2col wins in
  ``scan`` by 7x, 10x and 60x, and ties or wins from Python (an earlier run
  had xla ahead by 7% on the 1-D loop case: noise at this size). 'auto' on
  CPU is therefore im2col for 1-D and 2-D alike.

  On accelerators the native convolution is used: cuDNN and the TPU
  convolution units are what XLA is built around, and im2col's copy of the
  activations per kernel offset would cost memory bandwidth there (not
  measured: rerun the benchmark on a GPU or TPU before trusting either).

  Args:
    impl: 'auto', 'xla' or 'im2col'.
    backend: the platform the computation runs on; default
      ``jax.default_backend()``.

  Returns:
    'xla' or 'im2col'.
  """
  if impl not in CONV_IMPLS:
    raise JaxdlError(f"unknown conv impl {impl!r} (choices: {', '.join(CONV_IMPLS)})")
  if impl != 'auto':
    return impl
  backend = backend or jax.default_backend()
  return 'im2col' if backend == 'cpu' else 'xla'


def _im2col_conv(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int],
    dilation: Sequence[int],
) -> jax.Array:
  """Convolution of padded ``x`` as shifted slices and one matmul.

  Args:
    x: padded inputs, (B, *S, C_in).
    kernel: (*K, C_in, F).
    strides: per spatial axis.
    dilation: per spatial axis.

  Returns:
    (B, *S_out, F), equal to a VALID ``lax.conv_general_dilated``.
  """
  kernel_size = kernel.shape[:-2]
  batch, *sizes, c_in = x.shape
  out_sizes = [(n - (k - 1) * d - 1) // s + 1
               for n, k, s, d in zip(sizes, kernel_size, strides, dilation)]
  cols = []
  # itertools.product walks the kernel offsets in row-major (C) order, the
  # order of kernel.reshape(-1, F)'s rows (offset-major, then C_in).
  for offset in itertools.product(*(range(k) for k in kernel_size)):
    starts = [o * d for o, d in zip(offset, dilation)]
    limits = [st + (m - 1) * s + 1 for st, m, s in zip(starts, out_sizes, strides)]
    cols.append(lax.slice(x, (0, *starts, 0), (batch, *limits, c_in),
                          (1, *strides, 1)))  # (B, *S_out, C_in)
  patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
  # (B, *S_out, prod(K) * C_in) @ (prod(K) * C_in, F)
  return lax.dot_general(patches, kernel.reshape(-1, kernel.shape[-1]),
                         (((patches.ndim - 1,), (0,)), ((), ())))


class Conv(nn.Module):
  """N-D convolution, channels last, with the parameters of ``nn.Conv``.

  ``kernel`` has shape ``(*kernel_size, C_in, features)`` and ``bias``
  ``(features,)``, so checkpoints move freely between the two implementations
  and ``flax.linen.Conv``.

  Attributes:
    features: number of output channels.
    kernel_size: one int per spatial axis; its length sets 1-D or 2-D.
    strides: int or one per spatial axis.
    padding: 'SAME', 'VALID', or 'CAUSAL' (1-D only: output ``t`` depends on
      inputs ``<= t``).
    kernel_dilation: int or one per spatial axis.
    use_bias: add a learned bias (off before a BatchNorm, which has its own).
    kernel_init: initializer name, see ``get_initializer``.
    impl: 'xla' (``lax.conv_general_dilated``), 'im2col' (shifted slices and
      one matmul), or 'auto' (see ``resolve_conv_impl``).
    dtype: computation dtype.
    param_dtype: parameter dtype.
  """

  features: int
  kernel_size: tuple[int, ...]
  strides: int | tuple[int, ...] = 1
  padding: str = 'SAME'
  kernel_dilation: int | tuple[int, ...] = 1
  use_bias: bool = True
  kernel_init: str = 'lecun'
  impl: str = 'auto'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Convolves ``x`` of shape (B, *spatial, C_in) to (B, *spatial_out, features)."""
    kernel_size = tuple(self.kernel_size)
    nd = len(kernel_size)
    if x.ndim != nd + 2:
      raise JaxdlError(
          f'Conv with kernel_size {kernel_size} expects inputs (B, {nd} spatial '
          f'axes, C), got shape {tuple(x.shape)}')
    if self.padding not in PADDINGS:
      raise JaxdlError(
          f"unknown conv padding {self.padding!r} (choices: {', '.join(PADDINGS)})")
    if self.padding == 'CAUSAL' and nd != 1:
      raise JaxdlError(f"conv padding 'CAUSAL' is for 1-D kernels, got kernel_size {kernel_size}")
    strides = _per_axis(self.strides, nd, 'conv strides')
    dilation = _per_axis(self.kernel_dilation, nd, 'conv kernel_dilation')
    impl = resolve_conv_impl(self.impl)

    sizes = x.shape[1:-1]
    pads = _conv_pads(self.padding, sizes, kernel_size, strides, dilation)
    spatial_out = [(n + lo + hi - (k - 1) * d - 1) // s + 1 for n, (lo, hi), k, s, d
                   in zip(sizes, pads, kernel_size, strides, dilation)]
    if min(spatial_out) < 1:
      raise JaxdlError(
          f'Conv kernel_size {kernel_size} (dilation {dilation}, padding '
          f'{self.padding}) does not fit inputs of spatial size {tuple(sizes)}')

    kernel = self.param('kernel', get_initializer(self.kernel_init),
                        (*kernel_size, x.shape[-1], self.features), self.param_dtype)
    bias = (self.param('bias', nn.initializers.zeros_init(), (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)

    if impl == 'xla':
      # Channels-last operands, as flax.linen.Conv lays them out.
      lhs_spec = (0, nd + 1, *range(1, nd + 1))
      rhs_spec = (nd + 1, nd, *range(nd))
      y = lax.conv_general_dilated(
          x, kernel, window_strides=strides, padding=pads,
          rhs_dilation=dilation,
          dimension_numbers=lax.ConvDimensionNumbers(lhs_spec, rhs_spec, lhs_spec))
    else:
      x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
      y = _im2col_conv(x, kernel, strides, dilation)
    if bias is not None:
      y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
    return y


def _pool(x: jax.Array, window: int | Sequence[int], reduce, what: str) -> jax.Array:
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
  # (B, *S, C) -> (B, S_1/w_1, w_1, S_2/w_2, w_2, ..., C)
  x = x.reshape(batch, *itertools.chain(*zip(out, window)), channels)
  return reduce(x, axis=tuple(range(2, 2 * nd + 1, 2)))


def max_pool(x: jax.Array, window: int | Sequence[int]) -> jax.Array:
  """Max over non-overlapping windows (stride = window, VALID).

  Equal to ``nn.max_pool(x, window, strides=window, padding='VALID')``, but the
  gradient is an elementwise mask instead of XLA's select-and-scatter, which
  measured about 2x faster for a whole CNN step on CPU. Where a window holds
  tied maxima the gradient is split between them evenly.

  Args:
    x: (B, *spatial, C), any number of spatial axes.
    window: int (every spatial axis) or one per spatial axis. A remainder that
      does not fill a window is dropped.

  Returns:
    (B, *(spatial // window), C).
  """
  return _pool(x, window, jnp.max, 'max_pool')


def avg_pool(x: jax.Array, window: int | Sequence[int]) -> jax.Array:
  """Mean over non-overlapping windows (stride = window, VALID); see ``max_pool``."""
  return _pool(x, window, jnp.mean, 'avg_pool')


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
