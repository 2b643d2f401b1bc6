"""SimCLR's pure step: two views of each image, the encoder and head on both, NT-Xent.

    state, metrics = simclr_step(state, {"x": (B, ...)})

The views are drawn inside the step from ``fold_in(key, state.step)``, so the
same state and batch always give the same result and a resumed run draws the
same views. The labels are never seen.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from jaxdl.loops.simclr.augment import View
from jaxdl.loops.simclr.losses import contrastive_accuracy, nt_xent
from jaxdl.train.state import TrainState, step_keys

Batch = Mapping[str, jax.Array]


def two_views(view: View, key: jax.Array, x: jax.Array) -> jax.Array:
  """Two independent views of every example of ``x``, side by side: (B, 2, ...).

  One ``vmap`` over the two keys: the transformation is compiled once, and
  each example's views stay on the device that holds the example.
  """
  return jax.vmap(view, in_axes=(0, None), out_axes=1)(jax.random.split(key), x)


def make_pair(view: View, key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Two independent views of every example of ``x``: ((B, ...), (B, ...))."""
  pair = two_views(view, key, x)
  return pair[:, 0], pair[:, 1]


def simclr_step(
    state: TrainState,
    batch: Batch,
    *,
    view: View,
    temperature: float,
    schedule: optax.Schedule | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step of NT-Xent on a batch ``{"x": (B, ...)}``.

  Both views go through the network in one call, so BatchNorm normalises
  over all 2B of them (under ``jit`` with the batch sharded, over every
  device's: SimCLR's global BN).

  Args:
    state: the current state (``apply_fn`` is a ``ContrastiveNet``'s).
    batch: the images; labels, if present, are ignored.
    view: ``view(key, x)``, the random transformation.
    temperature: NT-Xent's tau.
    schedule: if given, the learning rate is reported in the metrics.

  Returns:
    The next state and scalar metrics: loss, contrastive_accuracy (the
    share of views whose nearest other view is their positive), grad_norm
    (and learning_rate).
  """
  _, key = step_keys(state.rng, state.step)
  x = batch["x"]
  views = two_views(view, key, x).reshape(2 * x.shape[0], *x.shape[1:])  # (2B, ...): image b's are 2b, 2b + 1
  has_stats = bool(state.batch_stats)

  def objective(params):
    out = state.apply_fn(state.variables(params), views, train=True,
                         mutable=["batch_stats"] if has_stats else False)
    (_, z), updates = out if has_stats else (out, {})
    z = z.reshape(x.shape[0], 2, -1)  # (B, 2, D)
    return nt_xent(z[:, 0], z[:, 1], temperature), (z, updates)

  (loss, (z, updates)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=updates["batch_stats"] if has_stats else state.batch_stats)
  metrics = {
      "loss": loss,
      "contrastive_accuracy": contrastive_accuracy(z[:, 0], z[:, 1]),
      "grad_norm": optax.tree.norm(grads),
  }
  if schedule is not None:
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
  return new_state, metrics
