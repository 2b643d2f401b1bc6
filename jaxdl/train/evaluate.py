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
) -> Callable[[Any], dict[str, float]]:
  """Puts a test set on the devices once; returns ``evaluate(state)``.

  The set is padded to whole batches (a mask keeps the padding out of the
  means) and scanned in one jitted call, each batch split over the devices.
  """
  n_dev = mesh.devices.size
  batch_size = -(-min(batch_size, len(x)) // n_dev) * n_dev  # round up to the devices
  num_batches = -(-len(x) // batch_size)
  pad = num_batches * batch_size - len(x)
  mask = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
  xs = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
  ys = np.concatenate([y, np.zeros(pad, y.dtype)])
  batches = {
      "x": xs.reshape(num_batches, batch_size, *x.shape[1:]),
      "y": ys.reshape(num_batches, batch_size),
      "mask": mask.reshape(num_batches, batch_size),
  }
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))
  batches = jax.tree_util.tree_map(
      lambda a: jax.make_array_from_callback(a.shape, sharding, lambda i, a=a: a[i]), batches)

  @jax.jit
  def evaluate_all(state, batches):
    def body(totals, batch):
      m = state_eval_step(state, batch)
      return jax.tree_util.tree_map(jnp.add, totals, {
          "loss": m["loss"] * m["count"], "accuracy": m["accuracy"] * m["count"],
          "count": m["count"]}), None

    zero = jnp.zeros((), jnp.float32)
    totals, _ = jax.lax.scan(body, {"loss": zero, "accuracy": zero, "count": zero}, batches)
    return {"loss": totals["loss"] / totals["count"], "accuracy": totals["accuracy"] / totals["count"]}

  def evaluate(state):
    return {k: float(v) for k, v in jax.device_get(evaluate_all(state, batches)).items()}

  return evaluate
