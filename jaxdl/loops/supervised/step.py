"""The supervised loop's pure steps: a classifier's (or a regression's) update and its evaluation.

    state, metrics = train_step(state, {"x": (B, ...), "y": (B,)})

``train_step`` is pure: bind its options with ``functools.partial`` and it runs
eagerly, under ``jax.jit`` with sharded inputs, or under ``jax.vmap``. With
``regression=Regression(...)`` the batch's ``"y"`` holds standardised
real-valued targets (B, K) instead of labels.
"""

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl import diagnostics
from jaxdl.train import accumulate, losses
from jaxdl.train.state import TrainState, step_keys

Batch = Mapping[str, jax.Array]
Augment = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
# loss_fn(logits (B, K), batch) -> per-example loss (B,); the batch holds "x",
# the integer labels "y" and "targets", the (smoothed, augmented) soft targets (B, K)
# (a regression's: the standardised, augmented targets (B, K)).
LossFn = Callable[[jax.Array, Batch], jax.Array]

REGRESSION_LOSSES = ("mse", "huber")


@dataclasses.dataclass(frozen=True)
class Regression:
  """What makes the supervised step a regression: its loss, and the targets' scale.

  The model's K outputs predict the targets standardised with the training
  split's statistics, ``z = (y - mean) / std``, which is what the batch's
  ``"y"`` holds (B, K); the errors the step reports are in the targets'
  own units (``std`` times the standardised ones).

  Attributes:
    loss: ``"mse"`` (squared error, averaged over the K outputs) or ``"huber"``.
    huber_delta: where the Huber loss turns linear, in standard deviations
      of the training targets.
    target_std: the training targets' standard deviations, one per output.
  """

  loss: str = "mse"
  huber_delta: float = 1.0
  target_std: tuple[float, ...] = (1.0,)

  def per_example_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """(B, K) standardised predictions and targets -> (B,)."""
    if self.loss == "huber":
      return losses.huber(outputs, targets, self.huber_delta)
    return losses.squared_error(outputs, targets)

  def errors(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Prediction errors in the targets' units. (B, K)"""
    return (outputs.astype(jnp.float32) - targets) * jnp.asarray(self.target_std, jnp.float32)[None, :]

  def moments(self, outputs: jax.Array, targets: jax.Array, mean: Callable[[jax.Array], jax.Array]) -> dict:
    """Per-output means over a batch (``mean``: (B, K) -> (K,)) that :meth:`summarize` turns into metrics."""
    error = outputs.astype(jnp.float32) - targets  # (B, K), standardised
    return {"squared_error": mean(jnp.square(error)), "absolute_error": mean(jnp.abs(error)),
            "target": mean(targets), "target_squared": mean(jnp.square(targets))}

  def summarize(self, means: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``loss``, and ``rmse``, ``mae`` and ``r2`` in the targets' units, from a test set's mean :meth:`moments`.

    ``rmse`` is the root of the squared error averaged over examples and
    outputs, ``mae`` the absolute error likewise, ``r2`` the coefficient of
    determination ``1 - SS_res / SS_tot`` of each output (its test targets'
    own mean as the baseline), averaged over the outputs.
    """
    std = np.asarray(self.target_std, np.float64)
    squared, absolute = (np.asarray(means[k], np.float64) for k in ("squared_error", "absolute_error"))
    variance = np.asarray(means["target_squared"], np.float64) - np.square(np.asarray(means["target"], np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
      r2 = 1.0 - squared / variance  # standardised: std^2 cancels
    return {"loss": float(means["loss"]), "rmse": float(np.sqrt(np.mean(squared * std ** 2))),
            "mae": float(np.mean(absolute * std)), "r2": float(np.mean(r2))}


def model_inputs(batch: Batch) -> dict[str, jax.Array]:
  """What the model takes from a batch besides ``x``: the ``lengths`` (B,) of padded sequences, if any."""
  return {"lengths": batch["lengths"]} if "lengths" in batch else {}


def per_example_loss(logits: jax.Array, batch: Batch, loss_fn: LossFn | None,
                     regression: Regression | None = None) -> jax.Array:
  """The loss of each example (B,): ``loss_fn``'s, else the regression's, else cross-entropy to the soft targets."""
  if loss_fn is None and regression is not None:
    return regression.per_example_loss(logits, batch["targets"])
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
    regression: Regression | None = None,
    accumulate_steps: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on a batch ``{"x": (B, ...), "y": (B,)}``.

  Randomness (augmentation, dropout) comes from ``fold_in(key, state.step)``,
  so the same state and batch always give the same result.

  Args:
    state: the current state.
    batch: inputs and integer labels (and ``lengths`` (B,), the valid steps
      of padded sequences, which the augmentation and the model take).
    num_classes: K, for the one-hot targets.
    augment: ``fn(key, x, y_soft) -> (x, y_soft)`` run on the device, or None.
    label_smoothing: the smoothing of the one-hot targets.
    schedule: if given, the learning rate is reported in the metrics.
    loss_fn: your own ``(logits, batch) -> (B,)`` loss (see ``LossFn``);
      default softmax cross-entropy against the soft targets.
    log_layer_stats: also report each layer's gradient norm and output
      statistics (``layers/grad_norm/Dense_3``, ``layers/act_std/Dense_3``,
      ...; see ``jaxdl.diagnostics``). False leaves the step as it was.
    regression: makes it a regression: ``batch["y"]`` holds standardised
      targets (B, K), the loss is the regression's (unless ``loss_fn``),
      and ``rmse`` (in the targets' units) replaces accuracy.
    accumulate_steps: k > 1 averages the gradients of k micro-batches of
      B / k rows (``jaxdl.train.accumulate``: rows ``j::k``, one at a time
      in a ``lax.scan``) before the one update; the metrics are over the
      whole batch, the layer statistics averaged over the micro-batches.

  Returns:
    The next state and scalar metrics: loss, accuracy (a regression's
    rmse), grad_norm (and learning_rate, and the layer statistics).
  """
  _, key = step_keys(state.rng, state.step)
  augment_key, dropout_key = jax.random.split(key)
  x, labels = batch["x"], batch["y"]
  if regression is None:
    targets = losses.soft_targets(labels, num_classes, label_smoothing)  # (B, K)
  else:
    targets = labels  # (B, K): the standardised targets
  if augment is not None:
    x, targets = augment(augment_key, x, targets, **model_inputs(batch))
  has_stats = bool(state.batch_stats)

  def objective(params, batch_stats, part, dropout_key):  # on a (micro-)batch: its mean loss, and what it logs
    variables = {"params": params, **({"batch_stats": batch_stats} if has_stats else {})}
    if log_layer_stats:  # the same forward pass, also returning each layer's output
      logits, captured, updates = diagnostics.apply_capturing(
          state.apply_fn, variables, part["x"], train=True, rngs={"dropout": dropout_key},
          mutable=["batch_stats"] if has_stats else [], **model_inputs(part))
    else:
      out = state.apply_fn(
          variables, part["x"], train=True, rngs={"dropout": dropout_key},
          mutable=["batch_stats"] if has_stats else False, **model_inputs(part))
      logits, updates = out if has_stats else (out, {})
      captured = None
    loss = per_example_loss(logits, part, loss_fn, regression)
    if regression is None:
      rows = {"correct": losses.accuracy(logits, part["y"])}
    else:  # against the (augmented) targets trained on
      rows = {"error": regression.errors(logits, part["targets"])}
    stats = diagnostics.activation_stats(captured) if log_layer_stats else {}
    return loss.mean(), (updates["batch_stats"] if has_stats else batch_stats, rows, stats)

  inputs = {"x": x, "y": labels, "targets": targets, **model_inputs(batch)}
  (loss, (batch_stats, rows, stats)), grads = accumulate.value_and_grad(objective, accumulate_steps)(
      state.params, state.batch_stats, inputs, dropout_key)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  if regression is None:
    fit = {"accuracy": rows["correct"].mean()}
  else:
    fit = {"rmse": jnp.sqrt(jnp.mean(jnp.square(rows["error"])))}
  metrics = {"loss": loss, **fit, "grad_norm": optax.tree.norm(grads)}
  if log_layer_stats:
    metrics.update(diagnostics.layer_metrics(diagnostics.layer_grad_norms(grads), stats))
  if schedule is not None:
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
  return new_state, metrics


def eval_step(state: TrainState, batch: Batch, *, loss_fn: LossFn | None = None,
              regression: Regression | None = None) -> dict[str, jax.Array]:
  """Loss and accuracy on a batch, with an optional ``mask`` for padding.

  The loss is ``loss_fn``'s if given (with one-hot ``targets``), else
  cross-entropy (a regression's own loss).

  Returns:
    ``loss`` and ``accuracy`` averaged over the unmasked examples, and
    ``count``, their number (so batches can be combined exactly); a
    regression reports its :meth:`Regression.moments` instead of accuracy.
  """
  logits = state.apply_fn(state.variables(), batch["x"], train=False, **model_inputs(batch))
  labels = batch["y"]
  mask = batch.get("mask", jnp.ones(labels.shape[:1], jnp.float32))
  count = mask.sum()

  def mean(values):  # (B, ...) -> (...): over the unmasked examples
    return (values * mask.reshape(mask.shape + (1,) * (values.ndim - 1))).sum(0) / jnp.maximum(count, 1.0)

  targets = labels if regression is not None else losses.soft_targets(labels, logits.shape[-1])
  loss = per_example_loss(logits, {"x": batch["x"], "y": labels, "targets": targets}, loss_fn, regression)
  if regression is not None:
    return {"loss": mean(loss), **regression.moments(logits, labels, mean), "count": count}
  return {"loss": mean(loss), "accuracy": mean(losses.accuracy(logits, labels)), "count": count}
