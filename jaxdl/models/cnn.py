"""A plain convolutional classifier for 1-D signals and 2-D images."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.initializers import get_initializer
from jaxdl.models.conv import Conv
from jaxdl.models.layers import (batch_norm, check_input_rank,
                                 check_spatial_fits, dropout, get_activation,
                                 max_pool, zero_padding)

Dtype = Any


class CNN(nn.Module):
  """Conv blocks (conv[-BN]-act-max_pool), flatten, dense head.

  1-D or 2-D from the input rank: signals (B, L, C) or images (B, H, W, C).
  With the defaults on 8x8 images the two pools leave 2x2x64 features.

  Attributes:
    num_classes: number of logits.
    features: output channels of each conv block.
    kernel_size: conv window along every spatial axis.
    pool: non-overlapping max-pool window after each block (1: no pooling).
    hidden: widths of the dense layers between the flattened features and
      the logits.
    dropout: rate applied to the input of every dense layer (flattened
      features and hidden activations), in training only.
    activation: name, see ``layers.ACTIVATIONS``.
    kernel_init: initializer name for conv and dense kernels.
    use_batchnorm: BatchNorm after each conv (the conv then has no bias).
    conv_impl: 'auto', 'xla', 'im2col' or 'winograd', see ``conv.resolve_conv_impl``.
    dtype: computation dtype (bfloat16 on TPU); logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int
  features: tuple[int, ...] = (32, 64)
  kernel_size: int = 3
  pool: int = 2
  hidden: tuple[int, ...] = (128,)
  dropout: float = 0.0
  activation: str = 'relu'
  kernel_init: str = 'he'
  use_batchnorm: bool = False
  conv_impl: str = 'auto'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, features_only: bool = False,
               lengths: jax.Array | None = None) -> jax.Array:
    """Logits (B, num_classes); with ``features_only``, the head's input (B, F) instead.

    ``features_only`` stops before the last dense layer (and its dropout), so
    that layer is never created: the penultimate features of a
    representation (a linear probe, contrastive pretraining). With
    ``lengths`` (B,), a padded signal is read whole with zeros at its padded
    steps.
    """
    nd = check_input_rank('cnn', x, (1, 2))
    x = zero_padding(x, lengths)
    act = get_activation(self.activation)
    if self.pool > 1:
      # Floor division composes: n // p // p == n // p**2.
      out = [n // self.pool ** len(self.features) for n in x.shape[1:-1]]
      check_spatial_fits('cnn', x, out,
                         f'{len(self.features)} max-pools of {self.pool}')
    for f in self.features:
      x = Conv(f, (self.kernel_size,) * nd, use_bias=not self.use_batchnorm,
               kernel_init=self.kernel_init, impl=self.conv_impl,
               dtype=self.dtype, param_dtype=self.param_dtype)(x)
      if self.use_batchnorm:
        x = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype)(x)
      x = act(x)
      if self.pool > 1:
        x = max_pool(x, self.pool)  # (B, *spatial / pool, f)
    x = x.reshape(x.shape[0], -1)  # (B, prod(spatial) * features[-1])
    for width in self.hidden:
      x = dropout(x, self.dropout, train)
      x = act(nn.Dense(width, kernel_init=get_initializer(self.kernel_init),
                       dtype=self.dtype, param_dtype=self.param_dtype)(x))
    if features_only:
      return x  # (B, F): hidden[-1], or the flattened conv features
    x = dropout(x, self.dropout, train)
    x = nn.Dense(self.num_classes, kernel_init=get_initializer(self.kernel_init),
                 dtype=self.dtype, param_dtype=self.param_dtype)(x)
    return x.astype(jnp.float32)  # (B, num_classes)

