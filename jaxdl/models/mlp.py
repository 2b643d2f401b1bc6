"""A multilayer perceptron over flattened inputs."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.initializers import get_initializer
from jaxdl.models.layers import batch_norm, dropout, get_activation

Dtype = Any


class MLP(nn.Module):
  """Dense layers over the flattened input: [dense[-BN]-act-dropout] x n, dense.

  Takes any input (vectors, signals, images): each example is flattened.

  Attributes:
    num_classes: number of logits.
    hidden: widths of the hidden layers.
    activation: name, see ``layers.ACTIVATIONS``.
    dropout: rate after each hidden activation, in training only.
    kernel_init: initializer name for the dense kernels.
    use_batchnorm: BatchNorm between each hidden dense layer and its
      activation (the dense layer then has no bias).
    dtype: computation dtype (bfloat16 on TPU); logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int
  hidden: tuple[int, ...] = (256, 256)
  activation: str = 'relu'
  dropout: float = 0.0
  kernel_init: str = 'lecun'
  use_batchnorm: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    act = get_activation(self.activation)
    init = get_initializer(self.kernel_init)
    x = x.reshape(x.shape[0], -1)  # (B, D)
    for width in self.hidden:
      x = nn.Dense(width, use_bias=not self.use_batchnorm, kernel_init=init,
                   dtype=self.dtype, param_dtype=self.param_dtype)(x)
      if self.use_batchnorm:
        x = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype)(x)
      x = dropout(act(x), self.dropout, train)  # (B, width)
    x = nn.Dense(self.num_classes, kernel_init=init, dtype=self.dtype,
                 param_dtype=self.param_dtype)(x)
    return x.astype(jnp.float32)  # (B, num_classes)
