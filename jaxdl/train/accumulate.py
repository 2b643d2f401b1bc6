"""Gradient accumulation: ``train.accumulate_steps=k`` micro-batches per optimizer step.

A step's batch of B examples is cut into k micro-batches of B / k, their
gradients are computed one after another in a ``lax.scan`` (so only one
micro-batch's activations are alive at a time) and averaged, and the
optimizer applies the mean once. Without batch norm that is the gradient of
the whole batch, up to float rounding.

Micro-batch j holds rows ``j, j + k, j + 2k, ...``: a strided cut, so that
with the batch split over devices (each device's B / devices rows, k of
which divide it) every micro-batch takes B / (k * devices) rows from each
device and no row moves between devices.

Under accumulation a model's batch norm normalises each micro-batch with
its own statistics (B / k examples) and its running averages take k
updates per optimizer step, one per micro-batch, in order. Dropout draws a
fresh mask per micro-batch (``fold_in(key, j)``); augmentation, drawn for
the whole batch before the cut, is the same as without accumulation.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxdl.utils.errors import JaxdlError

# fn(params, carry, micro_batch, key) -> (loss, (carry, rows, means)): ``carry``
# threads from one micro-batch to the next (batch-norm statistics), ``rows``
# are per-example arrays (B / k, ...) put back in the batch's order, ``means``
# scalars averaged over the micro-batches.
MicroFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[Any, Any, Any]]]


def check_accumulate(steps: int, batch_size: int, num_devices: int) -> int:
  """``train.accumulate_steps``, or a one-line error when it does not divide each device's batch."""
  if steps < 1:
    raise JaxdlError(f"train.accumulate_steps={steps} must be >= 1 (1: no accumulation)")
  per_device = batch_size // max(num_devices, 1)
  if per_device % steps:
    raise JaxdlError(f"train.accumulate_steps={steps} must divide each device's batch: train.batch_size="
                     f"{batch_size} over {num_devices} device(s) is {per_device} per device")
  return steps


def split(batch: Any, k: int) -> Any:
  """Each leaf (B, ...) -> (k, B / k, ...): micro-batch j is rows ``j::k``."""
  def cut(x):
    return jnp.moveaxis(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 1, 0)
  return jax.tree_util.tree_map(cut, batch)


def merge(rows: Any) -> Any:
  """The inverse of :func:`split`: each leaf (k, B / k, ...) -> (B, ...) in the batch's order."""
  def join(x):
    return jnp.moveaxis(x, 0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])
  return jax.tree_util.tree_map(join, rows)


def value_and_grad(fn: MicroFn, steps: int) -> Callable[..., tuple[tuple[jax.Array, tuple], Any]]:
  """``jax.value_and_grad(fn, has_aux=True)`` over ``steps`` micro-batches of the batch.

  Returns ``g(params, carry, batch, key) -> ((loss, (carry, rows, means)), grads)``
  with the loss, gradients and ``means`` averaged over the micro-batches,
  the carry after the last, and the ``rows`` of all of them in the batch's
  order. ``steps=1`` is ``jax.value_and_grad`` itself, on the whole batch
  with ``key`` as it is: the same program as without accumulation.
  """
  grad_fn = jax.value_and_grad(fn, has_aux=True)
  if steps == 1:
    return grad_fn

  def accumulated(params, carry, batch, key):
    def body(acc, micro):
      carry, grads, loss, means = acc
      index, part = micro
      (part_loss, (carry, rows, part_means)), part_grads = grad_fn(params, carry, part, jax.random.fold_in(key, index))
      add = lambda a, b: a + b
      acc = (carry, jax.tree_util.tree_map(add, grads, part_grads), loss + part_loss,
             jax.tree_util.tree_map(add, means, part_means))
      return acc, rows

    first = jax.tree_util.tree_map(lambda x: x[0], split(batch, steps))
    shapes = jax.eval_shape(grad_fn, params, carry, first, key)
    (_, (_, _, mean_shapes)), grad_shapes = shapes
    zeros = lambda tree: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), tree)
    init = (carry, zeros(grad_shapes), jnp.zeros((), jnp.float32), zeros(mean_shapes))
    (carry, grads, loss, means), rows = jax.lax.scan(
        body, init, (jnp.arange(steps, dtype=jnp.int32), split(batch, steps)))
    scale = lambda tree: jax.tree_util.tree_map(lambda x: x / steps, tree)
    return (loss / steps, (carry, merge(rows), scale(means))), scale(grads)

  return accumulated


def check_unsupported(config) -> None:
  """For a loop whose step takes no micro-batches: a one-line error for ``train.accumulate_steps`` > 1."""
  steps = config.train.get("accumulate_steps", 1)
  if steps != 1:
    raise JaxdlError(f"train.accumulate_steps={steps} is not supported by the '{config.get('loop', '?')}' loop "
                     f"(gradient accumulation: the supervised and lm loops and the studies built on them)")
