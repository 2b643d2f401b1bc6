"""Losses and per-batch metrics shared by the training loops."""

import jax
import jax.numpy as jnp
import optax


def soft_targets(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
  """One-hot targets (B, K) in float32, optionally label-smoothed."""
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if smoothing:
    targets = optax.smooth_labels(targets, smoothing)
  return targets


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy against soft targets, in float32. (B,)"""
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example 0/1 correctness as float32. (B,)"""
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example squared error, averaged over the K outputs, in float32. (B, K) -> (B,)"""
  return jnp.mean(jnp.square(predictions.astype(jnp.float32) - targets), axis=-1)


def huber(predictions: jax.Array, targets: jax.Array, delta: float = 1.0) -> jax.Array:
  """Per-example Huber loss (Huber, 1964), averaged over the K outputs, in float32. (B, K) -> (B,)

  ``0.5 e^2`` where ``|e| <= delta``, ``delta (|e| - 0.5 delta)`` beyond: a
  squared error near the target that grows only linearly for outliers.
  """
  return jnp.mean(optax.huber_loss(predictions.astype(jnp.float32), targets, delta=delta), axis=-1)
