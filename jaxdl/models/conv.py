"""The convolution every model family uses: ``Conv``, a drop-in for ``flax.linen.Conv``.

Same parameter names and shapes as Flax's, with a choice of three
implementations, because XLA's CPU backend runs a convolution's backward pass
badly inside ``lax.scan`` (see ``resolve_conv_impl``): XLA's native
convolution; im2col (the kernel offsets' shifted views stacked, then one
matrix product); or, for 3x3 kernels at stride 1, Winograd's minimal
filtering F(2x2, 3x3), which computes the same result with 2.25x fewer
multiplications (16 products over the input channels, on 4x4 tiles).
"""

from collections.abc import Sequence
import functools
import itertools
import math
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from jaxdl.models.initializers import get_initializer
from jaxdl.models.layers import _per_axis
from jaxdl.models.winograd import winograd_conv
from jaxdl.utils.errors import JaxdlError

Dtype = Any

CONV_IMPLS: tuple[str, ...] = ('auto', 'xla', 'im2col', 'winograd')
PADDINGS: tuple[str, ...] = ('SAME', 'VALID', 'CAUSAL')


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


# Where 'auto' picks Winograd on the CPU (measured by benchmarks/winograd.py;
# the table is in resolve_conv_impl): at least this many input channels (with
# fewer, the 16 products contract too little to pay for the transforms, as on
# a first layer over 1- or 3-channel images), an output at least this wide on
# both axes (a 3x3 map wastes 7 of its 16 tile positions), and at least this
# many output positions in the batch (with fewer, the 16 small products'
# call overheads lose: a tree search's forward passes at batch 16 on 9x9).
WINOGRAD_MIN_IN_FEATURES = 8
WINOGRAD_MIN_OUT_SIZE = 4
WINOGRAD_MIN_OUT_POSITIONS = 2048


def winograd_fits(kernel_size: Sequence[int], strides: Sequence[int], dilation: Sequence[int]) -> bool:
  """Whether F(2x2, 3x3) computes this convolution: a 2-D 3x3 kernel, stride 1, no dilation."""
  return tuple(kernel_size) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1)


def resolve_conv_impl(
    impl: str,
    backend: str | None = None,
    *,
    kernel_size: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    dilation: Sequence[int] | None = None,
    in_features: int | None = None,
    out_sizes: Sequence[int] | None = None,
    batch: int | None = None,
) -> str:
  """Picks the implementation one convolution runs with.

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
  CPU is therefore im2col, or Winograd where it fits.

  Winograd's F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional
  Neural Networks", CVPR 2016) replaces im2col's one product with a
  contraction over 9 * C_in by 16 products over C_in on 4x4 input tiles, 36
  multiplications per 2x2 output tile against 16: 2.25x fewer, in the forward
  pass and in both gradients, and no 9x patch matrix. The same ops as
  im2col (slices, adds, matmuls), so it is as fast inside ``scan``. But its
  products contract over C_in alone, and small maps waste tile padding:
  ``benchmarks/winograd.py`` (AMD EPYC, 2 cores, 2026-12-07), im2col's time
  over Winograd's for one layer, value-and-gradient / forward alone:

    batch  size  C_in    F   train  forward
      128    14    64  128    1.80     2.34   (the 28x28 digits CNN's 2nd)
      128     4    64  128    1.29     1.11   (the 8x8 digits CNN's 2nd)
      128    28     8   16    1.20     1.14
      128    28     4   32    0.62     0.57
      128    28     1   64    0.43     1.30   (a first layer)
      256     9    64   64    1.42     1.79
      256     3    64   64    0.82     0.72   (a 3x3 board)
      512     3    64   64    0.90     1.07
       64     9   128  128    1.52     1.37
       16     9   128  128    1.21     0.82
       64     6    32   32    0.96     1.31

  Hence 'auto' picks Winograd only with C_in >= WINOGRAD_MIN_IN_FEATURES,
  both output sizes >= WINOGRAD_MIN_OUT_SIZE and batch * H * W >=
  WINOGRAD_MIN_OUT_POSITIONS.

  On accelerators the native convolution is used: cuDNN and the TPU
  convolution units are what XLA is built around (cuDNN picks its own
  Winograd kernels), and im2col's copy of the activations per kernel offset
  would cost memory bandwidth there (not measured: rerun the benchmark on a
  GPU or TPU before trusting either).

  Args:
    impl: 'auto', 'xla', 'im2col' or 'winograd' (Winograd where it fits,
      im2col for the other convolutions, so that one model-wide choice works
      for strided and 1-D layers too).
    backend: the platform the computation runs on; default
      ``jax.default_backend()``.
    kernel_size, strides, dilation, in_features, out_sizes, batch: the
      convolution's (out_sizes: its output's spatial sizes); without them the
      answer is 'xla' or 'im2col' (what a caller that cannot run Winograd,
      such as a transposed convolution, needs).

  Returns:
    'xla', 'im2col' or 'winograd'.
  """
  if impl not in CONV_IMPLS:
    raise JaxdlError(f"unknown conv impl {impl!r} (choices: {', '.join(CONV_IMPLS)})")
  if impl == 'auto':
    backend = backend or jax.default_backend()
    if backend != 'cpu':
      return 'xla'
  if impl == 'xla' or impl == 'im2col':
    return impl
  fits = kernel_size is not None and winograd_fits(kernel_size, strides or (1,) * len(kernel_size),
                                                   dilation or (1,) * len(kernel_size))
  if impl == 'auto':
    fits = (fits and in_features is not None and in_features >= WINOGRAD_MIN_IN_FEATURES
            and out_sizes is not None and min(out_sizes) >= WINOGRAD_MIN_OUT_SIZE
            and batch is not None and batch * math.prod(out_sizes) >= WINOGRAD_MIN_OUT_POSITIONS)
  return 'winograd' if fits else 'im2col'


def _patches(
    x: jax.Array,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    out_sizes: Sequence[int],
) -> jax.Array:
  """(B, *S_out, prod(K) * C_in): the kernel offsets' shifted views of padded ``x``, on the channel axis."""
  batch, *_, c_in = x.shape
  cols = []
  # itertools.product walks the kernel offsets in row-major (C) order, the
  # order of kernel.reshape(-1, F)'s rows (offset-major, then C_in).
  for offset in itertools.product(*(range(k) for k in kernel_size)):
    starts = [o * d for o, d in zip(offset, dilation)]
    limits = [st + (m - 1) * s + 1 for st, m, s in zip(starts, out_sizes, strides)]
    cols.append(lax.slice(x, (0, *starts, 0), (batch, *limits, c_in),
                          (1, *strides, 1)))  # (B, *S_out, C_in)
  return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


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
  return _im2col_matmul(x, kernel, tuple(strides), tuple(dilation), tuple(x.shape))


def _out_sizes(x_shape, kernel_size, strides, dilation) -> list[int]:
  return [(n - (k - 1) * d - 1) // s + 1
          for n, k, s, d in zip(x_shape[1:-1], kernel_size, strides, dilation)]


# The backward pass is written by hand (docs/design.md, trap 14): for the
# kernel's gradient patches^T @ dy, JAX's dot_general rule puts dy first, and
# XLA's CPU backend then writes dy transposed (44 ms of a 265 ms 28x28 CNN
# step). With the patches first, both operands are contracted over their
# leading axis in place; the products are autodiff's, and the presets' bits
# are unchanged. A custom_vjp has no forward mode: jax.jvp needs impl='xla'.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _im2col_matmul(x, kernel, strides, dilation, x_shape):
  return _im2col_fwd(x, kernel, strides, dilation, x_shape)[0]


def _im2col_fwd(x, kernel, strides, dilation, x_shape):
  kernel_size = kernel.shape[:-2]
  patches = _patches(x, kernel_size, strides, dilation, _out_sizes(x_shape, kernel_size, strides, dilation))
  # (B, *S_out, prod(K) * C_in) @ (prod(K) * C_in, F)
  y = lax.dot_general(patches, kernel.reshape(-1, kernel.shape[-1]),
                      (((patches.ndim - 1,), (0,)), ((), ())))
  return y, (patches, kernel)


def _im2col_bwd(strides, dilation, x_shape, residuals, dy):
  patches, kernel = residuals
  kernel_size, features = kernel.shape[:-2], kernel.shape[-1]
  rows = patches.reshape(-1, patches.shape[-1])  # (B * prod(S_out), prod(K) * C_in)
  d_kernel = lax.dot_general(rows, dy.reshape(-1, features),
                             (((0,), (0,)), ((), ()))).reshape(kernel.shape)
  d_patches = lax.dot_general(dy, kernel.reshape(-1, features),
                              (((dy.ndim - 1,), (1,)), ((), ())))
  # The patches are linear in x: dx is their transpose applied to d_patches
  # (each offset's gradient added back where its view was sliced from).
  extract = functools.partial(_patches, kernel_size=kernel_size, strides=strides, dilation=dilation,
                              out_sizes=_out_sizes(x_shape, kernel_size, strides, dilation))
  (d_x,) = jax.linear_transpose(extract, jax.ShapeDtypeStruct(x_shape, patches.dtype))(d_patches)
  return d_x, d_kernel


_im2col_matmul.defvjp(_im2col_fwd, _im2col_bwd)


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
      one matmul, with a hand-written backward pass: reverse mode to any
      order, but no ``jax.jvp``, which needs 'xla'), 'winograd'
      (F(2x2, 3x3) for a 2-D 3x3 kernel at stride 1 without dilation, im2col
      otherwise; its backward pass is hand-written too), or 'auto' (see
      ``resolve_conv_impl``).
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

    sizes = x.shape[1:-1]
    pads = _conv_pads(self.padding, sizes, kernel_size, strides, dilation)
    spatial_out = [(n + lo + hi - (k - 1) * d - 1) // s + 1 for n, (lo, hi), k, s, d
                   in zip(sizes, pads, kernel_size, strides, dilation)]
    if min(spatial_out) < 1:
      raise JaxdlError(
          f'Conv kernel_size {kernel_size} (dilation {dilation}, padding '
          f'{self.padding}) does not fit inputs of spatial size {tuple(sizes)}')
    impl = resolve_conv_impl(self.impl, kernel_size=kernel_size, strides=strides, dilation=dilation,
                             in_features=x.shape[-1], out_sizes=spatial_out, batch=x.shape[0])

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
      if impl == 'winograd':
        y = winograd_conv(x, kernel)
      else:
        y = _im2col_conv(x, kernel, strides, dilation)
    if bias is not None:
      y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
    return y
