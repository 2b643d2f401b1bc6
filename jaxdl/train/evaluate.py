"""Batched evaluation: a held-out set put on the devices once and scanned in one jitted call."""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.train import parallel

Batch = Mapping[str, jax.Array]


def make_evaluate(
    state_eval_step: Callable[[Any, Batch], dict],
    x: np.ndarray,
    y: np.ndarray,
    *,
    mesh: jax.sharding.Mesh,
    batch_size: int,
    finish: Callable[[dict[str, np.ndarray]], dict[str, float]] | None = None,
    lengths: np.ndarray | None = None,
) -> Callable[[Any], dict[str, float]]:
  """Puts a test set on the devices once; returns ``evaluate(state)``.

  The set is padded to whole batches (a mask keeps the padding out of the
  means) and scanned in one jitted call, each batch split over the devices.
  ``state_eval_step`` returns ``count`` (the unmasked examples) and means
  over them (scalars or arrays), which are combined by ``count``;
  ``finish`` turns the combined means into the metrics (default: each a
  float). ``lengths`` (N,), the valid steps of padded sequences, travel
  with the batches as ``"lengths"``. ``evaluate.lower(state)`` is the
  program lowered (for ``jaxdl.train.memory.check_fits``).
  """
  n_dev = mesh.devices.size
  batch_size = -(-min(batch_size, len(x)) // n_dev) * n_dev  # round up to the devices
  num_batches = -(-len(x) // batch_size)
  pad = num_batches * batch_size - len(x)
  mask = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
  xs = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
  ys = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
  batches = {
      "x": xs.reshape(num_batches, batch_size, *x.shape[1:]),
      "y": ys.reshape(num_batches, batch_size, *y.shape[1:]),
      "mask": mask.reshape(num_batches, batch_size),
  }
  if lengths is not None:  # the padding examples get length 1: any valid length, masked out anyway
    batches["lengths"] = np.concatenate([lengths, np.ones(pad, lengths.dtype)]).reshape(num_batches, batch_size)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))
  batches = jax.tree_util.tree_map(
      lambda a: jax.make_array_from_callback(a.shape, sharding, lambda i, a=a: a[i]), batches)

  eval_step = jax.jit(state_eval_step)  # traced once for the shapes and the scan's body both

  @jax.jit
  def evaluate_all(state, batches):
    def weighted(batch):  # each mean times its count, so batches add up exactly
      m = eval_step(state, batch)
      return {k: v if k == "count" else v * m["count"] for k, v in m.items()}

    def body(totals, batch):
      return jax.tree_util.tree_map(jnp.add, totals, weighted(batch)), None

    shapes = jax.eval_shape(weighted, jax.tree_util.tree_map(lambda a: a[0], batches))
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    totals, _ = jax.lax.scan(body, zeros, batches)
    return {k: v / totals["count"] for k, v in totals.items() if k != "count"}

  def evaluate(state):
    means = jax.device_get(evaluate_all(state, batches))
    return finish(means) if finish is not None else {k: float(v) for k, v in means.items()}

  evaluate.lower = lambda state: evaluate_all.lower(state, batches)
  return evaluate
