"""Data parallelism with ``jit`` + ``NamedSharding`` over a 1-D device mesh.

State is replicated, batches are split along their leading axis over the
mesh's ``data`` axis; XLA inserts the gradient all-reduce (and the global
BatchNorm statistics) itself. On several hosts, call
``jax.distributed.initialize()`` first: the mesh then spans every host's
devices and arrays are assembled from process-local data.
"""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdl.utils.errors import JaxdlError

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (0: all of them)."""
  devices = jax.devices()
  if num_devices < 0 or num_devices > len(devices):
    raise JaxdlError(f"train.num_devices={num_devices}, but {len(devices)} devices are visible")
  if num_devices:
    if jax.process_count() > 1 and num_devices != len(devices):
      raise JaxdlError("train.num_devices must be 0 (all devices) on several hosts")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the devices, everything else whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_divisible(batch_size: int, mesh: Mesh, key: str = "train.batch_size") -> None:
  """Raises a one-line error when the batch cannot be split evenly."""
  n = mesh.devices.size
  if batch_size % n:
    raise JaxdlError(
        f"{key}={batch_size} is not divisible by the {n} devices; "
        f"use a multiple of {n} (e.g. {max(n, batch_size // n * n)})")


def put(tree, shardings):
  """Places a host pytree (identical on every host) with a sharding per leaf (a tree of them, or one for all)."""
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree_util.tree_map(lambda _: shardings, tree)

  def one(x, sharding):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree_util.tree_map(one, tree, shardings)


def put_replicated(tree, mesh: Mesh):
  """Copies a host pytree (identical on every host) onto every device."""
  return put(tree, replicated(mesh))


def maybe_initialize_distributed(enabled: bool) -> None:
  """Joins the multi-host job (``jax.distributed.initialize``) when asked.

  The coordinator address, process count and id come from the cluster
  environment (SLURM, TPU pods, Kubernetes) or from
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.
  Must run before any other JAX call in the process; calling it twice is a
  no-op.
  """
  if not enabled or jax.distributed.is_initialized():
    return
  env = os.environ
  if "JAX_NUM_PROCESSES" in env:  # explicit, e.g. two processes on one machine
    jax.distributed.initialize(
        coordinator_address=env.get("JAX_COORDINATOR_ADDRESS", "127.0.0.1:12355"),
        num_processes=int(env["JAX_NUM_PROCESSES"]),
        process_id=int(env.get("JAX_PROCESS_ID", "0")))
  else:  # SLURM, Open MPI, TPU pods: detected by JAX
    jax.distributed.initialize()
