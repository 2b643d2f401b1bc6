"""Data parallelism with ``jit`` + ``NamedSharding`` over a 1-D device mesh.

State is replicated, batches are split along their leading axis over the
mesh's ``data`` axis; XLA inserts the gradient all-reduce (and the global
BatchNorm statistics) itself. On several hosts, call
``jax.distributed.initialize()`` first: the mesh then spans every host's
devices and arrays are assembled from process-local data.

A training set is placed one of two ways (``data.placement``): replicated,
a whole copy on every device, or sharded, its rows split over the ``data``
axis so that each device holds only ``N // devices`` of them and each
process builds its part from its own rows (:func:`process_rows`,
:func:`put_process_rows`, ``jax.make_array_from_process_local_data``).
"""

import os
import socket
import time

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


# data.placement: '' shards the training set on several processes and
# replicates it on one (today's data order there, bit for bit).
PLACEMENTS = ("", "replicated", "sharded")


def check_placement(placement: str, key: str = "data.placement") -> None:
  """A one-line error for a value not in :data:`PLACEMENTS` (touches no device: safe before joining a job)."""
  if placement not in PLACEMENTS:
    raise JaxdlError(f"{key}='{placement}' must be 'replicated', 'sharded' or '' (sharded on several "
                     f"processes, replicated on one)")


def data_placement(placement: str, key: str = "data.placement") -> str:
  """``'replicated'`` or ``'sharded'``: ``placement`` itself, or for ``''`` what the process count calls for.

  Call it after ``maybe_initialize_distributed``: it asks JAX for the process count.
  """
  check_placement(placement, key)
  return placement or ("sharded" if jax.process_count() > 1 else "replicated")


def rows_per_shard(num_rows: int, mesh: Mesh) -> int:
  """How many rows of a set of ``num_rows`` each device holds when sharded: the last ``num_rows % devices`` are dropped."""
  return num_rows // mesh.devices.size


def process_rows(num_rows: int, mesh: Mesh) -> list[slice]:
  """The rows of a ``(num_rows, ...)`` set that this process holds when it is sharded over ``mesh``.

  A loader that reads only these rows (as slices, in order) hands them to
  :func:`put_process_rows`. One slice where the process's devices are
  neighbours on the mesh (``make_mesh``'s order on CPU and GPU), more
  otherwise. The rows past ``rows_per_shard * devices`` belong to no one.
  """
  kept = rows_per_shard(num_rows, mesh) * mesh.devices.size
  index_map = batch_sharded(mesh).addressable_devices_indices_map((kept,))
  spans = sorted(index[0].indices(kept)[:2] for index in index_map.values())
  merged = []
  for start, stop in spans:
    if merged and merged[-1][1] == start:
      merged[-1] = (merged[-1][0], stop)
    else:
      merged.append((start, stop))
  return [slice(start, stop) for start, stop in merged]


def take_process_rows(tree, mesh: Mesh):
  """This process's rows (:func:`process_rows`) of a host pytree of ``(N, ...)`` arrays that holds them all."""
  def one(x):
    x = np.asarray(x)
    return np.concatenate([x[s] for s in process_rows(len(x), mesh)])
  return jax.tree_util.tree_map(one, tree)


def put_process_rows(local_tree, mesh: Mesh, num_rows: int):
  """Places each process's rows as one global array per leaf, ``(num_rows, ...)`` sharded on rows over ``data``.

  Each process passes only its own rows (:func:`process_rows`,
  concatenated); ``jax.make_array_from_process_local_data`` puts each
  device's part on it, so no device or process holds another's rows.

  Args:
    local_tree: this process's rows, a pytree of ``(rows, ...)`` host arrays.
    mesh: the 1-D mesh.
    num_rows: the global row count, a multiple of the device count
      (``rows_per_shard * devices``).
  """
  if num_rows % mesh.devices.size:
    raise ValueError(f"{num_rows} rows cannot be split evenly over {mesh.devices.size} devices")
  sharding = batch_sharded(mesh)

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(sharding, x, (num_rows, *x.shape[1:]))

  return jax.tree_util.tree_map(one, local_tree)


def maybe_initialize_distributed(enabled: bool, timeout_s: int = 300) -> None:
  """Joins the multi-host job (``jax.distributed.initialize``) when asked.

  The coordinator address, process count and id come from
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``
  (which ``jaxdl run --coordinator --num-processes --process-id`` set), or,
  without them, from the cluster environment (SLURM, Open MPI, TPU pods),
  which JAX detects. Must run before any other JAX call in the process;
  calling it twice is a no-op.

  With explicit settings, every process but the coordinator first waits up to
  ``timeout_s`` for the coordinator's port to accept a connection: JAX
  itself would abort the process with a stack trace when it cannot register.

  Raises:
    JaxdlError: a process id outside ``[0, num_processes)``, a malformed
      address, or a coordinator that did not answer within ``timeout_s``.
  """
  if not enabled or jax.distributed.is_initialized():
    return
  if timeout_s <= 0:
    raise JaxdlError(f"train.distributed_timeout_s={timeout_s} must be > 0")
  env = os.environ
  if "JAX_NUM_PROCESSES" not in env:  # SLURM, Open MPI, TPU pods: detected by JAX
    jax.distributed.initialize(initialization_timeout=timeout_s)
    return
  num_processes = _env_int("JAX_NUM_PROCESSES", "--num-processes")
  process_id = _env_int("JAX_PROCESS_ID", "--process-id", default="0")
  if num_processes < 1:
    raise JaxdlError(f"the number of processes (--num-processes, JAX_NUM_PROCESSES) is {num_processes}; "
                     f"it must be >= 1")
  if not 0 <= process_id < num_processes:
    raise JaxdlError(f"process id {process_id} (--process-id, JAX_PROCESS_ID) is outside [0, {num_processes})")
  address = env.get("JAX_COORDINATOR_ADDRESS", "127.0.0.1:12355")
  host, port = split_address(address)
  if process_id != 0:
    wait_for_coordinator(host, port, timeout_s)
  jax.distributed.initialize(coordinator_address=address, num_processes=num_processes, process_id=process_id,
                             initialization_timeout=timeout_s)


def _env_int(name: str, flag: str, default: str | None = None) -> int:
  value = os.environ.get(name, default)
  try:
    return int(value)
  except (TypeError, ValueError):
    raise JaxdlError(f"{flag} ({name}) must be an integer, got {value!r}") from None


def split_address(address: str) -> tuple[str, int]:
  """``HOST:PORT`` (``[v6]:PORT`` too) as ``(host, port)``, or a one-line error naming it."""
  host, sep, port = address.rpartition(":")
  host = host.strip("[]")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise JaxdlError(f"coordinator address {address!r} (--coordinator, JAX_COORDINATOR_ADDRESS) "
                     f"must be HOST:PORT")
  return host, int(port)


def wait_for_coordinator(host: str, port: int, timeout_s: float) -> None:
  """Returns once ``host:port`` accepts a TCP connection; a one-line error after ``timeout_s`` seconds."""
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, port), timeout=min(5.0, timeout_s)):
        return
    except OSError as e:
      if time.monotonic() + 0.5 >= deadline:
        raise JaxdlError(f"the coordinator {host}:{port} did not answer within "
                         f"train.distributed_timeout_s={timeout_s:g} s ({e.strerror or e})") from None
      time.sleep(0.5)
