"""Test-suite strictness and the 8 virtual CPU devices.

XLA_FLAGS must be set before JAX initialises its backend, so this runs first.
Every test sees 8 CPU devices: the data-parallel path is the path under test.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
# 8 virtual devices share 2 cores with the other xdist worker: a device thread
# starved for long enough made XLA abort a collective ("Expected 8 threads to
# join the rendezvous, but only 6 of them arrived on time"). Starvation is not
# a deadlock here, so the suite waits longer before calling it one.
_TIMEOUT = "--xla_cpu_collective_call_terminate_timeout_seconds=600"
if "collective_call_terminate_timeout" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += f" {_TIMEOUT}"
os.environ.setdefault("MPLBACKEND", "Agg")

# One persistent XLA compilation cache for the whole session: set here, in the
# pytest process that starts first, it is inherited by the xdist workers, by
# the `jaxdl run` subprocesses of the kill-and-resume tests and by notebook
# kernels, so a program compiled by one of them is loaded, not recompiled, by
# the next (a kill/resume test compiles the same chunk three times). A cached
# executable is the same program, so results stay bit-identical. Programs
# that compile in under 0.2 s are not worth the disk write.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import atexit
  import shutil
  import tempfile

  _CACHE = tempfile.mkdtemp(prefix="jaxdl-test-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import jax  # noqa: E402
import pytest  # noqa: E402

# Implicit rank promotion hides shape bugs ((B,) + (B, 1) -> (B, B)).
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def repo_root():
  import pathlib
  return pathlib.Path(__file__).resolve().parent.parent
