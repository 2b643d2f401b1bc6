"""Whether a program fits in the devices' memory, asked of XLA before it runs.

A long sequence can make a step's activations outgrow the devices. Rather than
an out-of-memory crash partway into a run, a loop compiles the program ahead
of time, reads XLA's own account of its buffers
(``Compiled.memory_analysis``), and compares it with what the devices have
free: a one-line error instead of a crash.
"""

import os
from collections.abc import Callable

import jax

from jaxdl.utils.errors import JaxdlError

_MEMINFO = "/proc/meminfo"


def program_bytes(lowered: jax.stages.Lowered) -> int | None:
  """The bytes a lowered program holds on one device at its peak, by XLA's account, or None if XLA does not say.

  Arguments, outputs and temporaries, less the donated arguments whose
  buffers the outputs reuse.
  """
  return compiled_bytes(lowered.compile())


def compiled_bytes(compiled: jax.stages.Compiled) -> int | None:
  """:func:`program_bytes` of a program already compiled."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
             - stats.alias_size_in_bytes)


def _host_available() -> int:
  """The host memory the kernel can still hand out (MemAvailable), in bytes."""
  try:
    with open(_MEMINFO) as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024  # the file counts kB
  except OSError:  # no /proc (macOS): the free pages
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def free_bytes() -> int | None:
  """The bytes one local device can still allocate, or None where the backend does not say.

  Accelerators report their own limit and use. CPU devices, virtual ones
  included, share the host's memory, so each gets an equal part of what
  the host has available.
  """
  devices = jax.local_devices()
  stats = devices[0].memory_stats()
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  if devices[0].platform == "cpu":
    return _host_available() // len(devices)
  return None


def gib(count: int) -> str:
  """Bytes as GiB for messages: ``'2.5 GiB'``."""
  return f"{count / 2 ** 30:.1f} GiB"


def check_fits(lowered: jax.stages.Lowered, message: Callable[[int, int], str]) -> None:
  """Raises ``JaxdlError(message(needed, free))`` when the program needs more than a device has free.

  Args:
    lowered: the program with its arguments (``jitted.lower(...)``; shapes
      as ``jax.ShapeDtypeStruct`` allocate nothing).
    message: the one-line error from the bytes needed and free per device.
  """
  needed, free = program_bytes(lowered), free_bytes()
  if needed is not None and free is not None and needed > free:
    raise JaxdlError(message(needed, free))
