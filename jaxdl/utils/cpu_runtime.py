"""How jaxdl has XLA run on a CPU-only host: programs inline on the calling thread, temporaries kept by glibc.

XLA's CPU client gives each execution of a program one block for all its
temporaries, and frees it at the end. A block over 64 MiB (a 28x28 CNN's
step needs 229 MB, the char-LM's 78 MB) is more than a glibc thread arena can
hold, so glibc maps it fresh for every execution and the kernel zero-fills
each page on first touch: 55,836 page faults per step for the 28x28 CNN,
19,100 for the char-LM. Inside the chunk's ``while_loop`` the block is
allocated once per chunk; a step called from Python pays it every time.

Two settings together stop it, and :func:`configure` (run at ``import
jaxdl``) makes both on a host with no accelerator plugin (or with
``JAX_PLATFORMS=cpu``):

- ``jax_cpu_enable_async_dispatch=False``: a one-device program runs on the
  thread that calls it, so its block comes from glibc's main arena (with
  async dispatch it comes from an XLA worker thread's arena);
- ``mallopt(M_MMAP_THRESHOLD)`` and ``mallopt(M_TRIM_THRESHOLD)`` at
  :data:`KEEP_BYTES` (1 GiB): the main arena serves blocks up to that size
  from its heap and keeps a freed one for the next execution.

Neither alone changes anything, so the thresholds are set only where
dispatch is inline. The reuse is glibc's first fit, not a promise: when a
small allocation that outlives a call lands just after the block, the freed
block cannot merge back into the heap's top, small requests may split it,
and the next calls grow the heap and fault again until the layout settles.
On a loaded 2-core host that happened in about 1 fresh process in 20 of a
bare 72 MiB program (once for 6 calls in a row); the presets' steps, whose
state is donated, faulted on none of 480 steps (15 processes, the char-LM
and the 28x28 CNN). Measured with ``benchmarks/vs_pytorch.py --quick`` on
this project's 2-core CPU (an Intel Xeon that day, jax 0.10.2), steps/s of
the step from Python, before -> after: the char-LM 14.4 -> 18.6, the 28x28
CNN 3.7 -> 5.6, the 8x8 CNN 68.1 -> 72.6, the 1-D ResNet 48.4 -> 51.5; the
chunk is unchanged. The cost: a small program called from Python no longer
overlaps with the Python that calls it (``digits_mlp``'s step 748 -> 604),
and the process keeps up to 1 GiB of freed memory for reuse rather than
returning it to the system. Results are the same bits: the executables are
the same.

``JAXDL_CPU_INLINE=0`` leaves JAX's and glibc's defaults; thresholds set
through ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` are kept, and
async dispatch turned off through ``jax.config`` beforehand gets the
thresholds too. Nothing changes once JAX's backends are
running (the dispatch mode is fixed when the CPU client is made).
"""

import ctypes
import importlib.util
import os

import jax

ENV = "JAXDL_CPU_INLINE"
KEEP_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
_ACCELERATOR_MODULES = ("jax_plugins", "libtpu")  # where JAX finds CUDA/ROCm plugins and the TPU runtime


def _platforms() -> str:
  """The platforms JAX was told to use (``JAX_PLATFORMS`` / ``jax_platforms``); empty: its own choice."""
  return os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or ""


def _cpu_only() -> bool:
  """Whether JAX here can only run on the CPU: told so, or no accelerator plugin installed."""
  platforms = _platforms()
  if platforms:
    return {p.strip() for p in platforms.split(",") if p.strip()} == {"cpu"}
  return not any(importlib.util.find_spec(name) for name in _ACCELERATOR_MODULES)


def _glibc() -> bool:
  try:
    return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
  except (ValueError, OSError, AttributeError):
    return False


def configure() -> dict[str, bool]:
  """Sets both, where they apply and nobody chose otherwise; returns which were set."""
  from jax._src import xla_bridge  # backends_are_initialized has no public name

  done = {"inline_dispatch": False, "keep_temporaries": False}
  if os.environ.get(ENV, "1") == "0" or not _cpu_only() or xla_bridge.backends_are_initialized():
    return done
  if jax.config.values["jax_cpu_enable_async_dispatch"]:  # JAX's default (its flag reads no environment variable)
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    done["inline_dispatch"] = True
  if _glibc() and not {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & os.environ.keys():
    libc = ctypes.CDLL(None)
    done["keep_temporaries"] = bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)
                                    and libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
  return done
