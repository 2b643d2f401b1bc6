"""Residual networks (He et al., 2016) for 2-D images and 1-D signals."""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.initializers import get_initializer
from jaxdl.models.conv import Conv
from jaxdl.models.layers import (batch_norm, check_input_rank,
                                 check_spatial_fits, global_avg_pool, max_pool,
                                 zero_padding)
from jaxdl.utils.errors import JaxdlError

Dtype = Any

BLOCKS: tuple[str, ...] = ('basic', 'bottleneck')


class _Block(nn.Module):
  """Shared fields and layer factories of the residual blocks.

  Attributes:
    features: channels of the block's inner convs (the output has
      ``expansion * features``).
    strides: stride of the block's downsampling conv and of the shortcut.
    kernel_size: window of the spatial convs.
    conv_impl: see ``conv.resolve_conv_impl``.
    kernel_init: initializer name.
    dtype: computation dtype.
    param_dtype: parameter dtype.
  """

  features: int
  strides: int = 1
  kernel_size: int = 3
  conv_impl: str = 'auto'
  kernel_init: str = 'he'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _conv(self, features: int, kernel: int, nd: int, strides: int = 1,
            name: str | None = None) -> Conv:
    # No bias: every conv here feeds a BatchNorm, whose shift replaces it.
    return Conv(features, (kernel,) * nd, strides=strides, use_bias=False,
                kernel_init=self.kernel_init, impl=self.conv_impl,
                dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  def _norm(self, train: bool, zero_scale: bool = False,
            name: str | None = None) -> nn.BatchNorm:
    return batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype,
                      zero_scale=zero_scale, name=name)

  def _merge(self, x: jax.Array, y: jax.Array, train: bool) -> jax.Array:
    """relu(shortcut(x) + y); a 1x1 conv + BN projects x when shapes differ."""
    if x.shape != y.shape:
      x = self._conv(y.shape[-1], 1, x.ndim - 2, self.strides, name='conv_proj')(x)
      x = self._norm(train, name='norm_proj')(x)
    return nn.relu(x + y)


class BasicBlock(_Block):
  """Two k x k convs (the first strided); output has ``features`` channels."""

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    nd = x.ndim - 2
    y = self._conv(self.features, self.kernel_size, nd, self.strides)(x)
    y = nn.relu(self._norm(train)(y))
    y = self._conv(self.features, self.kernel_size, nd)(y)
    # Zero scale on the branch's last norm: each block starts as the identity,
    # so the signal and its gradient pass unchanged through a deep stack at
    # init (Goyal et al., 2017, "Accurate, large minibatch SGD").
    y = self._norm(train, zero_scale=True)(y)
    return self._merge(x, y, train)  # (B, *spatial / strides, features)


class BottleneckBlock(_Block):
  """1x1 reduce, k x k (strided), 1x1 expand; output has 4 * ``features``."""

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    nd = x.ndim - 2
    y = self._conv(self.features, 1, nd)(x)
    y = nn.relu(self._norm(train)(y))
    y = self._conv(self.features, self.kernel_size, nd, self.strides)(y)
    y = nn.relu(self._norm(train)(y))
    y = self._conv(4 * self.features, 1, nd)(y)  # 4: the expansion of He et al.
    y = self._norm(train, zero_scale=True)(y)  # identity at init, see BasicBlock
    return self._merge(x, y, train)  # (B, *spatial / strides, 4 * features)


class ResNet(nn.Module):
  """Stem, residual stages, global average pool, dense head.

  Stage ``i`` has ``stage_sizes[i]`` blocks of ``width * 2**i`` channels; every
  stage after the first halves the spatial size (stride 2 in its first block).
  All convs pad 'SAME', so a strided conv maps ``n`` to ``ceil(n / 2)`` and
  never to zero. 1-D or 2-D from the input rank.

  Attributes:
    num_classes: number of logits.
    stage_sizes: residual blocks per stage.
    width: channels of the first stage.
    block: 'basic' (two k x k convs) or 'bottleneck' (1x1, k x k, 1x1 x4).
    kernel_size: window of the blocks' spatial convs.
    stem_kernel: window of the stem conv.
    stem_stride: stride of the stem conv.
    stem_pool: max-pool 2 after the stem (ImageNet-style stems use it with
      ``stem_kernel=7, stem_stride=2``; small inputs want neither).
    conv_impl: see ``conv.resolve_conv_impl``.
    kernel_init: initializer name for conv and dense kernels.
    dtype: computation dtype (bfloat16 on TPU); logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int
  stage_sizes: tuple[int, ...] = (2, 2, 2)
  width: int = 32
  block: str = 'basic'
  kernel_size: int = 3
  stem_kernel: int = 3
  stem_stride: int = 1
  stem_pool: bool = False
  conv_impl: str = 'auto'
  kernel_init: str = 'he'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, features_only: bool = False,
               lengths: jax.Array | None = None) -> jax.Array:
    """Logits (B, num_classes); with ``features_only``, the pooled features (B, C) instead.

    ``features_only`` stops before the dense head, which is then never
    created. With ``lengths`` (B,), a padded signal is read whole with zeros
    at its padded steps (strided stages mix them in, so results depend on
    the padded length).
    """
    nd = check_input_rank('resnet', x, (1, 2))
    x = zero_padding(x, lengths)
    if self.block not in BLOCKS:
      raise JaxdlError(
          f"unknown resnet block {self.block!r} (choices: {', '.join(BLOCKS)})")
    block_cls = BasicBlock if self.block == 'basic' else BottleneckBlock
    if self.stem_pool:
      stem_sizes = [-(-n // self.stem_stride) for n in x.shape[1:-1]]  # ceil
      check_spatial_fits('resnet', x, [n // 2 for n in stem_sizes],
                         f'a stem of stride {self.stem_stride} and a max-pool of 2')

    x = Conv(self.width, (self.stem_kernel,) * nd, strides=self.stem_stride,
             use_bias=False, kernel_init=self.kernel_init, impl=self.conv_impl,
             dtype=self.dtype, param_dtype=self.param_dtype, name='conv_init')(x)
    x = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype,
                   name='bn_init')(x)
    x = nn.relu(x)
    if self.stem_pool:
      x = max_pool(x, 2)
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = block_cls(self.width * 2**i, strides=2 if i > 0 and j == 0 else 1,
                      kernel_size=self.kernel_size, conv_impl=self.conv_impl,
                      kernel_init=self.kernel_init, dtype=self.dtype,
                      param_dtype=self.param_dtype)(x, train=train)
    x = global_avg_pool(x)  # (B, C)
    if features_only:
      return x
    x = nn.Dense(self.num_classes, kernel_init=get_initializer(self.kernel_init),
                 dtype=self.dtype, param_dtype=self.param_dtype)(x)
    return x.astype(jnp.float32)  # (B, num_classes)


# Named variants, as in the Flax ImageNet example. The stem defaults (3x3,
# stride 1, no pool) suit the small inputs this toolkit trains on (CIFAR-style);
# pass stem_kernel=7, stem_stride=2, stem_pool=True for ImageNet-size images.
ResNet1 = functools.partial(ResNet, stage_sizes=(1,), width=8)  # tiny, for tests
ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), width=64)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), width=64)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), width=64,
                             block='bottleneck')
