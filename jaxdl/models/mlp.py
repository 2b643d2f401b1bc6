"""A multilayer perceptron over flattened inputs."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.initializers import get_initializer
from jaxdl.models.layers import batch_norm, dropout, get_activation, zero_padding

Dtype = Any


class MLP(nn.Module):
  """Dense layers over the flattened input: [dense[-BN]-act-dropout] x n, dense.

  Takes any input (vectors, signals, images): each example is flattened.

  With ``residual`` the hidden layers are pre-activation residual blocks
  (He et al., 2016, "Identity mappings in deep residual networks"): the
  first hidden layer maps the input to its width, ``x = W_0 x``; each later
  one adds its branch, ``x = x + W_i dropout(act([BN](x)))`` (without the
  skip where the width changes), and the output layer reads
  ``dropout(act([BN](x)))``. The identity paths carry the gradient to the
  early layers of a deep net, which a plain deep MLP starves (see
  ``jaxdl.diagnostics`` and the ``grad_flow`` preset).

  Attributes:
    num_classes: number of logits.
    hidden: widths of the hidden layers.
    activation: name, see ``layers.ACTIVATIONS``.
    dropout: rate after each hidden activation, in training only.
    kernel_init: initializer name for the dense kernels.
    use_batchnorm: BatchNorm between each hidden dense layer and its
      activation (the dense layer then has no bias).
    residual: pre-activation residual blocks, as above (the BatchNorm of
      ``use_batchnorm`` then sits before each activation, on the sum).
    dtype: computation dtype (bfloat16 on TPU); logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int
  hidden: tuple[int, ...] = (256, 256)
  activation: str = 'relu'
  dropout: float = 0.0
  kernel_init: str = 'lecun'
  use_batchnorm: bool = False
  residual: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, features_only: bool = False,
               lengths: jax.Array | None = None) -> jax.Array:
    """Logits (B, num_classes); with ``features_only``, the last hidden layer (B, F) instead.

    ``features_only`` stops before the output layer, which is then never
    created (penultimate features, for probes and contrastive pretraining).
    With ``lengths`` (B,), a padded sequence is read whole with zeros at
    its padded steps.
    """
    act = get_activation(self.activation)
    init = get_initializer(self.kernel_init)
    x = zero_padding(x, lengths)
    x = x.reshape(x.shape[0], -1)  # (B, D)
    if self.residual:
      x = self._residual_trunk(x, act, init, train)
    else:
      for width in self.hidden:
        x = nn.Dense(width, use_bias=not self.use_batchnorm, kernel_init=init,
                     dtype=self.dtype, param_dtype=self.param_dtype)(x)
        if self.use_batchnorm:
          x = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = dropout(act(x), self.dropout, train)  # (B, width)
    if features_only:
      return x  # (B, F): the last hidden layer (the flattened input without one)
    x = nn.Dense(self.num_classes, kernel_init=init, dtype=self.dtype,
                 param_dtype=self.param_dtype)(x)
    return x.astype(jnp.float32)  # (B, num_classes)

  def _residual_trunk(self, x: jax.Array, act, init, train: bool) -> jax.Array:
    """The pre-activation residual hidden layers (see the class docstring). (B, D) -> (B, F)"""

    def dense(width: int, h: jax.Array) -> jax.Array:
      return nn.Dense(width, use_bias=not self.use_batchnorm, kernel_init=init, dtype=self.dtype,
                      param_dtype=self.param_dtype)(h)

    def pre_activation(h: jax.Array) -> jax.Array:
      if self.use_batchnorm:
        h = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype)(h)
      return dropout(act(h), self.dropout, train)

    for i, width in enumerate(self.hidden):
      if i == 0:
        x = dense(width, x)  # (B, width): into the residual stream, no activation yet
      else:
        h = dense(width, pre_activation(x))
        x = x + h if x.shape[-1] == width else h
    return pre_activation(x) if self.hidden else x
