"""The supervised loop's pure steps: a classifier's update and its evaluation.

    state, metrics = train_step(state, {"x": (B, ...), "y": (B,)})

``train_step`` is pure: bind its options with ``functools.partial`` and it runs
eagerly, under ``jax.jit`` with sharded inputs, or under ``jax.vmap``.
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from jaxdl import diagnostics
from jaxdl.train import losses
from jaxdl.train.state import TrainState, step_keys

Batch = Mapping[str, jax.Array]
Augment = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
# loss_fn(logits (B, K), batch) -> per-example loss (B,); the batch holds "x",
# the integer labels "y" and "targets", the (smoothed, augmented) soft targets (B, K).
LossFn = Callable[[jax.Array, Batch], jax.Array]


def per_example_loss(logits: jax.Array, batch: Batch, loss_fn: LossFn | None) -> jax.Array:
  """The loss of each example: softmax cross-entropy against the soft targets, or ``loss_fn``'s. (B,)"""
  if loss_fn is None:
    return losses.cross_entropy(logits, batch["targets"])
  loss = jnp.asarray(loss_fn(logits, batch), jnp.float32)
  if loss.shape != logits.shape[:1]:
    raise ValueError(f"loss_fn must return one loss per example, shape {logits.shape[:1]}, not {loss.shape}")
  return loss


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    num_classes: int,
    augment: Augment | None = None,
    label_smoothing: float = 0.0,
    schedule: optax.Schedule | None = None,
    loss_fn: LossFn | None = None,
    log_layer_stats: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on a batch ``{"x": (B, ...), "y": (B,)}``.

  Randomness (augmentation, dropout) comes from ``fold_in(key, state.step)``,
  so the same state and batch always give the same result.

  Args:
    state: the current state.
    batch: inputs and integer labels.
    num_classes: K, for the one-hot targets.
    augment: ``fn(key, x, y_soft) -> (x, y_soft)`` run on the device, or None.
    label_smoothing: the smoothing of the one-hot targets.
    schedule: if given, the learning rate is reported in the metrics.
    loss_fn: your own ``(logits, batch) -> (B,)`` loss (see ``LossFn``);
      default softmax cross-entropy against the soft targets.
    log_layer_stats: also report each layer's gradient norm and output
      statistics (``layers/grad_norm/Dense_3``, ``layers/act_std/Dense_3``,
      ...; see ``jaxdl.diagnostics``). False leaves the step as it was.

  Returns:
    The next state and scalar metrics: loss, accuracy, grad_norm (and
    learning_rate, and the layer statistics).
  """
  _, key = step_keys(state.rng, state.step)
  augment_key, dropout_key = jax.random.split(key)
  x, labels = batch["x"], batch["y"]
  targets = losses.soft_targets(labels, num_classes, label_smoothing)  # (B, K)
  if augment is not None:
    x, targets = augment(augment_key, x, targets)
  has_stats = bool(state.batch_stats)

  def objective(params):
    if log_layer_stats:  # the same forward pass, also returning each layer's output
      logits, captured, updates = diagnostics.apply_capturing(
          state.apply_fn, state.variables(params), x, train=True, rngs={"dropout": dropout_key},
          mutable=["batch_stats"] if has_stats else [])
    else:
      out = state.apply_fn(
          state.variables(params), x, train=True, rngs={"dropout": dropout_key},
          mutable=["batch_stats"] if has_stats else False)
      logits, updates = out if has_stats else (out, {})
      captured = None
    loss = per_example_loss(logits, {"x": x, "y": labels, "targets": targets}, loss_fn)
    return loss.mean(), (logits, updates, captured)

  (loss, (logits, updates, captured)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=updates["batch_stats"] if has_stats else state.batch_stats)
  metrics = {
      "loss": loss,
      "accuracy": losses.accuracy(logits, labels).mean(),
      "grad_norm": optax.tree.norm(grads),
  }
  if log_layer_stats:
    metrics.update(diagnostics.layer_metrics(diagnostics.layer_grad_norms(grads),
                                             diagnostics.activation_stats(captured)))
  if schedule is not None:
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
  return new_state, metrics


def eval_step(state: TrainState, batch: Batch, *, loss_fn: LossFn | None = None) -> dict[str, jax.Array]:
  """Loss and accuracy on a batch, with an optional ``mask`` for padding.

  The loss is ``loss_fn``'s if given (with one-hot ``targets``), else
  cross-entropy.

  Returns:
    ``loss`` and ``accuracy`` averaged over the unmasked examples, and
    ``count``, their number (so batches can be combined exactly).
  """
  logits = state.apply_fn(state.variables(), batch["x"], train=False)
  mask = batch.get("mask", jnp.ones(batch["y"].shape, jnp.float32))
  count = mask.sum()
  labels = batch["y"]
  num_classes = logits.shape[-1]
  loss = per_example_loss(logits, {"x": batch["x"], "y": labels,
                                   "targets": losses.soft_targets(labels, num_classes)}, loss_fn)
  return {
      "loss": (loss * mask).sum() / jnp.maximum(count, 1.0),
      "accuracy": (losses.accuracy(logits, labels) * mask).sum() / jnp.maximum(count, 1.0),
      "count": count,
  }
