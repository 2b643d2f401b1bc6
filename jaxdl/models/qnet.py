"""Q-networks: an MLP for vector observations and the Nature-DQN CNN for frames.

Both map a batch of observations to one value per action, (B, A), float32,
and take ``dueling=True`` for the dueling head of Wang et al. 2016
(https://arxiv.org/abs/1511.06581): ``Q = V + A - mean(A)``.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


class _Head(nn.Module):
  """Q-values from features: one dense layer, or value and advantage streams."""

  num_actions: int
  dueling: bool = False
  hidden: int = 0  # width of each dueling stream's hidden layer (0: none)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if not self.dueling:
      return nn.Dense(self.num_actions, dtype=self.dtype)(x).astype(jnp.float32)  # (B, A)

    def stream(width, name):
      h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name=f"{name}_hidden")(x)) if self.hidden else x
      return nn.Dense(width, dtype=self.dtype, name=name)(h).astype(jnp.float32)

    value = stream(1, "value")  # (B, 1)
    advantage = stream(self.num_actions, "advantage")  # (B, A)
    # Subtracting the mean advantage makes V and A identifiable (Wang et al., eq. 9).
    return value + advantage - advantage.mean(axis=-1, keepdims=True)


class QMLP(nn.Module):
  """Dense ReLU layers over the flattened observation, then the Q head.

  Attributes:
    num_actions: A, the number of discrete actions.
    hidden: widths of the hidden layers.
    dueling: value and advantage streams instead of one dense layer.
  """

  num_actions: int
  hidden: tuple[int, ...] = (120, 84)
  dueling: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1).astype(self.dtype)  # (B, D)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    return _Head(self.num_actions, self.dueling, dtype=self.dtype)(x)


class NatureCNN(nn.Module):
  """The Nature-DQN network (Mnih et al. 2015, Methods: "Model architecture").

  Input: stacked uint8 frames (B, C, 84, 84), channels first as Gymnasium's
  ``FrameStackObservation`` gives them; scaled to [0, 1] here. Three
  convolutions (32 8x8/4, 64 4x4/2, 64 3x3/1), a 512-unit dense layer, the head.

  Attributes:
    num_actions: A.
    dueling: value and advantage streams, each with its own 512-unit layer
      (Wang et al. 2016, section 4.2), instead of the shared dense layer.
  """

  num_actions: int
  dueling: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.transpose(x, (0, 2, 3, 1)).astype(self.dtype) / 255.0  # (B, 84, 84, C)
    for features, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
      x = nn.relu(nn.Conv(features, (kernel, kernel), (stride, stride), padding="VALID", dtype=self.dtype)(x))
    x = x.reshape(x.shape[0], -1)  # (B, 7 * 7 * 64) for 84x84 frames
    if self.dueling:
      return _Head(self.num_actions, dueling=True, hidden=512, dtype=self.dtype)(x)
    x = nn.relu(nn.Dense(512, dtype=self.dtype)(x))
    return _Head(self.num_actions, dtype=self.dtype)(x)


QNETS = {"mlp": QMLP, "nature_cnn": NatureCNN}
