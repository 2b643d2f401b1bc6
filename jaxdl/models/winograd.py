"""Winograd's minimal filtering F(2x2, 3x3) for 3x3 convolutions at stride 1: ``winograd_conv``.

Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR
2016. ``conv.Conv(impl='winograd')`` runs it, and ``conv.resolve_conv_impl``
says where 'auto' does (on the CPU, where it was measured ahead of im2col).
Each 2x2 output tile takes 16 products instead of 36 multiply-adds, and no
9x patch matrix is written; docs/design.md (trap 15) says why the backward
pass is written by hand and why the 16 positions are never stacked.
"""

from collections.abc import Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from jaxdl.utils import flops as flops_lib

# F(2x2, 3x3) (Lavin and Gray 2016): for a 4x4 input tile d and a 3x3 kernel
# g, the 2x2 output tile of their correlation is A^T [(G g G^T) * (B^T d B)] A.
_WINOGRAD_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_WINOGRAD_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_WINOGRAD_AT = ((1, 1, 1, 0), (0, 1, -1, -1))
# The 2-D transforms as one matrix each over a tile's flattened positions:
# entry (k * 4 + l, u * 4 + w) of B^T (x) B^T takes input position (u, w) into
# transformed position (k, l); (a * 2 + b, i * 4 + j) of A^T (x) A^T takes
# product (i, j) into output (a, b). All entries are 0 or +-1.
_WINOGRAD_IN = np.kron(np.array(_WINOGRAD_BT), np.array(_WINOGRAD_BT))
_WINOGRAD_OUT = np.kron(np.array(_WINOGRAD_AT), np.array(_WINOGRAD_AT))
# 16 products per 2x2 output tile stand for the convolution's 4 * 9 multiply-adds (model FLOPs: jaxdl.utils.flops).
_WINOGRAD_FLOPS = 36 / 16


def _combine(matrix: Sequence[Sequence[int]], parts: Sequence[jax.Array]) -> list[jax.Array]:
  """``[sum_j matrix[i][j] * parts[j] for each row i]`` for a matrix of 0 and +-1: adds and subtractions only."""
  out = []
  for row in matrix:
    terms = [(coef, part) for coef, part in zip(row, parts) if coef]
    total = terms[0][1] if terms[0][0] > 0 else -terms[0][1]
    for coef, part in terms[1:]:
      total = total + part if coef > 0 else total - part
    out.append(total)
  return out


def _transpose(matrix: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
  return tuple(zip(*matrix))


def _untile_rows(parts: Sequence[jax.Array], axis: int) -> jax.Array:
  """The transpose of cutting 4-wide windows at stride 2 along ``axis``: window row u of tile i added back at 2i + u.

  ``parts[u]`` holds row u of every window, ``tiles`` long on ``axis``; the
  result is ``2 * tiles + 2`` long there.
  """
  def pad(part, low):
    widths = [(0, 0)] * part.ndim
    widths[axis] = (low, 1 - low)
    return jnp.pad(part, widths)
  even = pad(parts[0], 0) + pad(parts[2], 1)  # rows 2i: row 0 of tile i, row 2 of tile i - 1
  odd = pad(parts[1], 0) + pad(parts[3], 1)
  both = jnp.stack([even, odd], axis=axis + 1)
  return both.reshape(*both.shape[:axis], -1, *both.shape[axis + 2:])


def _winograd_kernel(kernel: jax.Array) -> jax.Array:
  """G g G^T per channel pair: (3, 3, C_in, F) -> (16, C_in, F)."""
  g = jnp.asarray(_WINOGRAD_G, kernel.dtype)
  return jnp.einsum('ij,jkcf,lk->ilcf', g, kernel, g).reshape(16, *kernel.shape[2:])


def winograd_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A VALID 3x3 correlation at stride 1 of padded ``x`` by Winograd's F(2x2, 3x3).

  The input is cut into 4x4 tiles at stride 2 (zero-extended to an even
  output size), each tile and the kernel are transformed, the 16 transformed
  positions are 16 matmuls over the input channels, and each 4x4 product
  tile transforms back to a 2x2 output tile. Slices, adds and matmuls only.

  Args:
    x: padded inputs, (B, H + 2, W + 2, C_in).
    kernel: (3, 3, C_in, F).

  Returns:
    (B, H, W, F), equal to a VALID ``lax.conv_general_dilated`` up to float
    rounding (the transforms add and halve; about 1e-6 relative in float32).
  """
  h, w = x.shape[1] - 2, x.shape[2] - 2
  th, tw = -(-h // 2), -(-w // 2)  # output tiles per axis
  x = jnp.pad(x, ((0, 0), (0, 2 * th + 2 - x.shape[1]), (0, 2 * tw + 2 - x.shape[2]), (0, 0)))
  return _winograd_tiles(x, kernel)[:, :h, :w]


# The backward pass is written by hand, as im2col's is: autodiff's transposes
# of the tile slices and of the output transform are zero-padded full-size
# arrays added together (30 of a 145 ms 28x28 CNN step), where the
# transposed transforms below are a few fused adds. The 16 transformed
# positions stay 16 arrays and 16 products, never one stacked array: XLA's
# CPU backend wrote a 16-way stack at a third of the speed of 16 separate
# outputs (11.5 against 3.3 ms for the 28x28 CNN's output gradient).
@jax.custom_vjp
def _winograd_tiles(x, kernel):
  return _winograd_fwd(x, kernel)[0]


def _winograd_fwd(x, kernel):
  batch, hp, wp, c_in = x.shape
  th, tw = (hp - 2) // 2, (wp - 2) // 2
  windows = [lax.slice(x, (0, r, c, 0), (batch, r + 2 * th - 1, c + 2 * tw - 1, c_in), (1, 2, 2, 1))
             for r in range(4) for c in range(4)]  # position (r, c) of every tile: (B, th, tw, C_in)
  v = [part.reshape(-1, c_in) for part in _combine(_WINOGRAD_IN, windows)]  # 16 of (tiles, C_in)
  with flops_lib.stands_for(0):  # the kernel's transform is no model work
    u = _winograd_kernel(kernel)
  with flops_lib.stands_for(_WINOGRAD_FLOPS):
    m = [v[k] @ u[k] for k in range(16)]  # 16 of (tiles, F)
  y = _combine(_WINOGRAD_OUT, m)  # output position (a, b) of every tile
  y = jnp.stack([jnp.stack(y[2 * i:2 * i + 2], axis=1) for i in range(2)], axis=1)  # (tiles, 2, 2, F)
  y = y.reshape(batch, th, tw, 2, 2, -1).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(batch, 2 * th, 2 * tw, -1), (v, u)


def _winograd_bwd(residuals, dy):
  v, u = residuals  # arrays only: every size comes from them and from dy (B, 2 * th, 2 * tw, F)
  batch, th, tw, c_in = dy.shape[0], dy.shape[1] // 2, dy.shape[2] // 2, v[0].shape[-1]
  dy = dy.reshape(batch, th, 2, tw, 2, -1)
  dm = [part.reshape(batch * th * tw, -1)
        for part in _combine(_transpose(_WINOGRAD_OUT), [dy[:, :, i, :, j] for i in range(2) for j in range(2)])]
  # Both products keep their operands' layouts: dv contracts the features, du the tiles.
  with flops_lib.stands_for(_WINOGRAD_FLOPS):
    dv = [lax.dot_general(dm[k], u[k], (((1,), (1,)), ((), ()))).reshape(batch, th, tw, c_in) for k in range(16)]
    du = jnp.stack([lax.dot_general(v[k], dm[k], (((0,), (0,)), ((), ()))) for k in range(16)])  # (16, C_in, F)
  g = jnp.asarray(_WINOGRAD_G, du.dtype)
  with flops_lib.stands_for(0):
    d_kernel = jnp.einsum('ij,ilcf,lk->jkcf', g, du.reshape(4, 4, *du.shape[1:]), g).astype(u.dtype)
  b = _transpose(_WINOGRAD_BT)
  cols = [_untile_rows(_combine(b, dv[4 * k:4 * k + 4]), 2) for k in range(4)]
  d_x = _untile_rows(_combine(b, cols), 1)
  return d_x, d_kernel


_winograd_tiles.defvjp(_winograd_fwd, _winograd_bwd)
