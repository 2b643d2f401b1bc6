"""How a training state is laid out over the mesh: ``train.sharding``.

- ``replicated`` (the default): every device holds the whole state; XLA
  all-reduces the gradients.
- ``fsdp``: parameters and optimizer state are split over the mesh's
  ``data`` axis, ZeRO-3 style, as big_vision's ``fsdp`` strategy does. Each
  array is cut along its largest axis that the device count divides; XLA's
  SPMD partitioner then all-gathers the weights where a layer needs them and
  reduce-scatters the gradients. Arrays under :data:`MIN_SHARD_SIZE`
  elements, or with no divisible axis, stay whole on every device.

The rule looks only at an array's shape, so Adam's ``mu`` and ``nu`` get
their parameter's spec, and a checkpoint (host arrays, see
``jaxdl.checkpoint``) restores onto any sharding and any device count.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdl.train import parallel
from jaxdl.utils.errors import JaxdlError

SHARDINGS = ("replicated", "fsdp")

# Arrays smaller than this (elements: 16 KiB in float32) stay replicated under
# fsdp: biases, norms' scales, step counters, PRNG keys. Cutting them saves
# little memory and adds a collective per array to every step.
MIN_SHARD_SIZE = 4096


def check_sharding(config, *, supported: tuple[str, ...] = SHARDINGS) -> str:
  """``train.sharding``, or a one-line error for a value this loop cannot run.

  Args:
    config: the run's config.
    supported: the layouts the loop implements (``('replicated',)`` for a
      loop whose state is not a plain params/optimizer pytree).
  """
  name, loop = config.train.sharding, config.get("loop", "?")
  if name not in SHARDINGS:
    raise JaxdlError(f"train.sharding='{name}' must be one of {', '.join(SHARDINGS)}")
  if name not in supported:
    raise JaxdlError(f"train.sharding='{name}' is not supported by the '{loop}' loop "
                     f"(it supports {', '.join(supported)})")
  return name


def fsdp_spec(shape: tuple[int, ...], num_devices: int, min_size: int | None = None) -> P:
  """The spec of one array under fsdp: ``P('data')`` on its largest axis that ``num_devices`` divides.

  Ties go to the later axis (a Dense kernel (in, out) of equal sides splits
  its outputs). ``P()`` (replicated) for small arrays and those with no
  divisible axis. ``min_size``: default :data:`MIN_SHARD_SIZE`.
  """
  min_size = MIN_SHARD_SIZE if min_size is None else min_size
  if num_devices <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for axis in sorted(range(len(shape)), key=lambda a: (shape[a], a), reverse=True):
    if shape[axis] % num_devices == 0:
      return P(*([None] * axis + [parallel.DATA_AXIS]))
  return P()


def state_shardings(state: Any, mesh: Mesh, name: str, *, min_size: int | None = None) -> Any:
  """A ``NamedSharding`` for each leaf of ``state`` (arrays or shape structs) under layout ``name``."""
  if name == "replicated":
    return jax.tree_util.tree_map(lambda _: parallel.replicated(mesh), state)
  if jax.process_count() > 1:  # checkpoints copy the whole state to each host (jaxdl.checkpoint.to_host)
    raise JaxdlError(f"train.sharding='{name}' runs on one host only; on {jax.process_count()} hosts use "
                     f"train.sharding=replicated")
  n = mesh.devices.size
  return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), n, min_size)), state)


def jit_out(shardings: Any, mesh: Mesh) -> dict[str, Any]:
  """``jax.jit`` keywords for a chunk ``(state, metrics)`` whose state has ``shardings`` (None: replicated, none)."""
  return {} if shardings is None else {"out_shardings": (shardings, parallel.replicated(mesh))}


def place(host_state: Any, shardings: Any) -> Any:
  """Puts a host state onto the devices with ``shardings`` (from :func:`state_shardings`).

  Raises:
    JaxdlError: an array whose shape its sharding cannot split (a
      checkpoint saved for another model or mesh), naming its path.
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(host_state)
  for (path, x), sharding in zip(flat, jax.tree_util.tree_leaves(shardings)):
    shape = np.shape(x)
    try:
      sharding.shard_shape(shape)
    except ValueError:
      raise JaxdlError(f"array {jax.tree_util.keystr(path)} of shape {shape} cannot be placed with "
                       f"{sharding.spec} on the {sharding.mesh.devices.size} devices of this mesh") from None
  return parallel.put(host_state, shardings)


def per_device_bytes(tree: Any) -> int:
  """The bytes of ``tree``'s arrays that one device holds (each array's first shard)."""
  return sum(x.addressable_shards[0].data.nbytes for x in jax.tree_util.tree_leaves(tree))
