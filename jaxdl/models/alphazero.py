"""The policy-value network of AlphaZero (Silver et al. 2017): a residual tower over board planes.

A 3x3 conv stem, ``blocks`` residual blocks (``resnet.BasicBlock``: two 3x3
convs with batch norm, identity at initialisation), then two heads, as in the
paper's Methods: the policy head (1x1 conv to 2 planes, batch norm, ReLU,
dense to one logit per move) and the value head (1x1 conv to 1 plane, batch
norm, ReLU, dense hidden layer, ReLU, dense to a scalar, tanh). The value is
the expected outcome for the player to move, in [-1, 1].
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.initializers import get_initializer
from jaxdl.models.conv import Conv
from jaxdl.models.layers import batch_norm
from jaxdl.models.resnet import BasicBlock

Dtype = Any


class PolicyValueNet(nn.Module):
  """Board planes (B, H, W, C) -> (policy logits (B, num_actions), value (B,)).

  Attributes:
    num_actions: moves of the game (pgx's action count).
    blocks: residual blocks in the tower.
    channels: channels of the tower.
    value_hidden: width of the value head's hidden layer.
    conv_impl: see ``conv.resolve_conv_impl``.
    kernel_init: initializer name for conv and dense kernels.
    dtype: computation dtype; the outputs are float32.
  """

  num_actions: int
  blocks: int = 2
  channels: int = 32
  value_hidden: int = 64
  conv_impl: str = 'auto'
  kernel_init: str = 'he'
  dtype: Dtype = jnp.float32

  def _conv_norm_relu(self, x: jax.Array, features: int, kernel: int, train: bool, name: str) -> jax.Array:
    x = Conv(features, (kernel, kernel), use_bias=False, kernel_init=self.kernel_init, impl=self.conv_impl,
             dtype=self.dtype, name=f'{name}_conv')(x)
    return nn.relu(batch_norm(train, dtype=self.dtype, param_dtype=jnp.float32, name=f'{name}_norm')(x))

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    x = x.astype(self.dtype)  # pgx boards are bool planes
    x = self._conv_norm_relu(x, self.channels, 3, train, 'stem')
    for _ in range(self.blocks):
      x = BasicBlock(self.channels, conv_impl=self.conv_impl, kernel_init=self.kernel_init,
                     dtype=self.dtype)(x, train=train)
    dense = lambda n, name: nn.Dense(n, kernel_init=get_initializer(self.kernel_init), dtype=self.dtype, name=name)
    p = self._conv_norm_relu(x, 2, 1, train, 'policy')
    logits = dense(self.num_actions, 'policy_logits')(p.reshape(p.shape[0], -1))
    v = self._conv_norm_relu(x, 1, 1, train, 'value')
    v = nn.relu(dense(self.value_hidden, 'value_hidden')(v.reshape(v.shape[0], -1)))
    value = jnp.tanh(dense(1, 'value_out')(v)[:, 0])
    return logits.astype(jnp.float32), value.astype(jnp.float32)
