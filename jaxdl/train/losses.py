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
