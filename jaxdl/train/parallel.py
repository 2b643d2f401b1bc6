"""Data parallelism with ``jit`` + ``NamedSharding`` over a 1-D device mesh.

State is replicated, batches are split along their leading axis over the
mesh's ``data`` axis; XLA inserts the gradient all-reduce (and the global
BatchNorm statistics) itself. On several hosts, call
``jax.distributed.initialize()`` first: the mesh then spans every host's
devices and arrays are assembled from process-local data.
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
