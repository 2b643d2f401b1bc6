"""The recommend loop's pure step: squared error on a batch of ratings, and the best epoch kept on the device.

    state, metrics = recommend_step(state, {"user": (B,), "item": (B,), "rating": (B,), ...})

The model is a ``jaxdl.models.recsys.Blend``: each member's mean squared
error plus its penalty is summed, so each member learns on its own loss
(their parameters are disjoint) and only the prediction blends them. When
the batch carries the validation set (``"val"``), the step after every
epoch's last scores it and keeps the parameters of the best epoch so far in
the state (``best_params``, ``best_val_rmse``, ``best_step``): model
selection that checkpoints and resumes with the state, and never sees the
test set.
"""

from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxdl.train.chunk import BatchSource
from jaxdl.train.state import TrainState, step_keys

Batch = Mapping[str, Any]
RATING_KEYS = ("user", "item", "rating")


class RecState(TrainState):
  """A ``TrainState`` plus the best epoch's parameters by validation RMSE.

  Attributes:
    best_params: the parameters after the best epoch so far ({} without a
      validation set).
    best_val_rmse: their validation RMSE (inf before the first epoch ends).
    best_step: the step they were reached at.
  """

  best_params: Any = flax.struct.field(default_factory=dict)
  best_val_rmse: jax.Array = jnp.inf
  best_step: jax.Array = 0


def blended(weights: tuple[float, ...], predictions: jax.Array, rating_range: tuple[float, float]) -> jax.Array:
  """The members' predictions (M, B) blended by ``weights`` and clipped to the rating range: (B,)."""
  return jnp.clip(jnp.asarray(weights, jnp.float32) @ predictions, *rating_range)


def rmse(prediction: jax.Array, rating: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.mean(jnp.square(prediction - rating)))


def rating_batches(source: BatchSource) -> BatchSource:
  """``source`` over ``data["train"]``, each batch also carrying the rest of ``data`` (the matrix, ``val``)."""

  def wrapped(state, data):
    draw = source(state, data["train"])
    constants = {k: v for k, v in data.items() if k != "train"}
    return lambda s: {**draw(s), **constants}

  return wrapped


def select_best(state: RecState, val: Batch, matrix: jax.Array | None, *, weights: tuple[float, ...],
                rating_range: tuple[float, float]) -> RecState:
  """``state`` with its parameters kept as the best if their validation RMSE is below the best so far."""
  predictions, _ = state.apply_fn({"params": state.params}, val["user"], val["item"], matrix, train=False)
  score = rmse(blended(weights, predictions, rating_range), val["rating"])
  better = score < state.best_val_rmse
  keep = lambda new, old: jnp.where(better, new, old)  # noqa: E731
  return state.replace(best_params=jax.tree_util.tree_map(keep, state.params, state.best_params),
                       best_val_rmse=keep(score, state.best_val_rmse), best_step=keep(state.step, state.best_step))


def recommend_step(
    state: RecState,
    batch: Batch,
    *,
    weights: tuple[float, ...],
    rating_range: tuple[float, float],
    steps_per_epoch: int,
    schedule: optax.Schedule | None = None,
) -> tuple[RecState, dict[str, jax.Array]]:
  """One optimizer step on a batch of ratings.

  Args:
    state: the current state (``apply_fn`` a ``Blend``'s).
    batch: ``user``, ``item`` (int32) and ``rating`` (float32), each (B,);
      ``matrix`` (I, U) for models that read the training ratings; ``val``
      (a dict of the same three keys) to keep the best epoch.
    weights: the blend's weights, one per member.
    rating_range: predictions are clipped to it in the reported RMSE.
    steps_per_epoch: the validation set is scored after every multiple.
    schedule: if given, the learning rate is reported in the metrics.

  Returns:
    The next state and scalar metrics: loss (the members' summed MSE plus
    penalties), rmse (the blend's, clipped, on this batch), grad_norm (and
    learning_rate).
  """
  _, key = step_keys(state.rng, state.step)
  matrix = batch.get("matrix")

  def objective(params):
    predictions, penalty = state.apply_fn({"params": params}, batch["user"], batch["item"], matrix, train=True,
                                          rngs={"dropout": key})  # (M, B)
    member_mse = jnp.mean(jnp.square(predictions - batch["rating"][None]), axis=1)  # (M,)
    return jnp.sum(member_mse) + penalty, predictions

  (loss, predictions), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads)
  if "val" in batch:
    new_state = jax.lax.cond(
        new_state.step % steps_per_epoch == 0,
        lambda s: select_best(s, batch["val"], matrix, weights=weights, rating_range=rating_range),
        lambda s: s, new_state)
  metrics = {
      "loss": loss,
      "rmse": rmse(blended(weights, predictions, rating_range), batch["rating"]),
      "grad_norm": optax.tree.norm(grads),
  }
  if schedule is not None:
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
  return new_state, metrics


def predict_fn(apply_fn: Callable, weights: tuple[float, ...],
               rating_range: tuple[float, float] | None = None) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """``predict(params, users, items, matrix) -> (blend (B,), members (M, B))``, clipped if ``rating_range``."""

  def predict(params, users, items, matrix):
    members, _ = apply_fn({"params": params}, users, items, matrix, train=False)
    if rating_range is not None:
      return blended(weights, members, rating_range), jnp.clip(members, *rating_range)
    return jnp.asarray(weights, jnp.float32) @ members, members

  return predict
