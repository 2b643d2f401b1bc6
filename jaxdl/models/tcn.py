"""A dilated residual 1-D convolutional network (TCN) for signals."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.initializers import get_initializer
from jaxdl.models.conv import Conv
from jaxdl.models.layers import (batch_norm, check_input_rank, dropout,
                                 global_avg_pool, global_max_pool, length_mask, masked_pool)
from jaxdl.utils.errors import JaxdlError

Dtype = Any

POOLINGS: tuple[str, ...] = ('avg', 'avgmax')


class TCN(nn.Module):
  """Stem conv, residual blocks of two dilated convs, global pooling, dense.

  Every conv pads 'SAME' at stride 1, so the length never changes and each
  output position sees ``kernel_size + 2 * (kernel_size - 1) * sum(dilations)``
  inputs: 63 with the defaults, more than MNIST-1D's 40 samples, so every
  feature can relate the two ends of a signal before pooling. Global pooling
  then makes the logits invariant to where a pattern sits (MNIST-1D shifts
  each digit circularly by up to 47 of 72 positions before resampling to 40).

  Block: x + BN(conv_d(relu(BN(conv_d(x))))), then relu; the second BN starts
  with zero scale so every block is the identity at init.

  Padded variable-length batches: pass ``lengths`` (B,). Every layer's
  output is set to 0 past each length, so the convolutions see there the
  zeros that 'SAME' padding puts past the end of a whole sequence; BatchNorm
  takes its statistics over the valid steps only, and pooling ignores the
  padded ones. The logits then do not depend on how far a batch is padded.

  Measured on MNIST-1D (the 4000/1000 split of ``mnist1d.make_dataset``'s
  defaults) with the defaults here: AdamW (peak 3e-3, 2 warm-up epochs, cosine
  decay, weight decay 1e-4), batch 128, 30 epochs run as ``lax.scan`` over
  each epoch on a 2-core CPU: 99.2% and 99.4% test accuracy (seeds 0, 1), and
  99.3% with ``dropout=0.1``, in 67-79 s including compilation. (20 epochs:
  98.8%.)

  Attributes:
    num_classes: number of logits.
    channels: width of every conv.
    kernel_size: conv window.
    dilations: one residual block per entry, with that dilation in both convs.
    dropout: rate between a block's two convs and before the head, in
      training only.
    use_batchnorm: BatchNorm after each conv (the conv then has no bias).
    pooling: 'avg' (global average) or 'avgmax' (average and max
      concatenated: max keeps a short strong feature that averaging over the
      length would dilute).
    conv_impl: see ``conv.resolve_conv_impl``.
    kernel_init: initializer name for conv and dense kernels.
    dtype: computation dtype (bfloat16 on TPU); logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int
  channels: int = 64
  kernel_size: int = 3
  dilations: tuple[int, ...] = (1, 2, 4, 8)
  dropout: float = 0.0
  use_batchnorm: bool = True
  pooling: str = 'avgmax'
  conv_impl: str = 'auto'
  kernel_init: str = 'he'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, lengths: jax.Array | None = None) -> jax.Array:
    """Logits (B, num_classes) for signals (B, L, C) with optional ``lengths`` (B,)."""
    check_input_rank('tcn', x, (1,))
    if self.pooling not in POOLINGS:
      raise JaxdlError(
          f"unknown tcn pooling {self.pooling!r} (choices: {', '.join(POOLINGS)})")
    valid = None if lengths is None else length_mask(lengths, *x.shape[:2])[:, :, None]  # (B, L, 1)

    def keep(y):  # zeros at padded steps, as past the ends of a whole signal
      return y if valid is None else jnp.where(valid, y, jnp.zeros((), y.dtype))

    def conv(y, dilation=1):
      return Conv(self.channels, (self.kernel_size,), kernel_dilation=dilation,
                  use_bias=not self.use_batchnorm, kernel_init=self.kernel_init,
                  impl=self.conv_impl, dtype=self.dtype,
                  param_dtype=self.param_dtype)(y)

    def norm(y, zero_scale=False):
      if not self.use_batchnorm:
        return y
      bn = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype, zero_scale=zero_scale)
      return bn(y) if valid is None else bn(y, mask=jnp.broadcast_to(valid, y.shape))

    x = keep(nn.relu(norm(conv(keep(x)))))  # (B, L, channels)
    for d in self.dilations:
      y = keep(nn.relu(norm(conv(x, d))))
      y = dropout(y, self.dropout, train)
      # Without BatchNorm there is no scale to zero, and the block starts as
      # relu(x + branch): still fine for the shallow stacks used here.
      y = norm(conv(y, d), zero_scale=True)
      x = keep(nn.relu(x + y))  # (B, L, channels)
    if valid is not None:
      pooled = [masked_pool(x, valid[:, :, 0], 'mean')]
      if self.pooling == 'avgmax':
        pooled.append(masked_pool(x, valid[:, :, 0], 'max'))
      x = jnp.concatenate(pooled, axis=-1)  # (B, C) or (B, 2C)
    elif self.pooling == 'avg':
      x = global_avg_pool(x)  # (B, channels)
    else:
      x = jnp.concatenate([global_avg_pool(x), global_max_pool(x)], axis=-1)  # (B, 2C)
    x = dropout(x, self.dropout, train)
    x = nn.Dense(self.num_classes, kernel_init=get_initializer(self.kernel_init),
                 dtype=self.dtype, param_dtype=self.param_dtype)(x)
    return x.astype(jnp.float32)  # (B, num_classes)
