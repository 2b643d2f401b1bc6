"""jaxdl.utils.cpu_runtime: inline dispatch and kept temporaries on a CPU-only host, and the ways out."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxdl.utils import cpu_runtime

# A program whose temporaries (tanh(x @ w), 72 MiB) are one block over the
# 64 MiB a glibc thread arena holds; it is called from Python and the median
# of its minor page faults over 12 calls is reported.
_PROBE = """
import json, resource
import jaxdl, jax, jax.numpy as jnp, numpy as np
r = np.random.default_rng(0)
x, w, v = (jnp.asarray(r.random(s, np.float32)) for s in ((1152, 64), (64, 16384), (16384, 4)))
f = jax.jit(lambda x, w, v: jnp.tanh(x @ w) @ v)
temp = f.lower(x, w, v).compile().memory_analysis().temp_size_in_bytes
for _ in range(2):
  jax.block_until_ready(f(x, w, v))
faults = []
for _ in range(12):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  jax.block_until_ready(f(x, w, v))
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"set": jaxdl.CPU_RUNTIME, "async": jax.config.values["jax_cpu_enable_async_dispatch"],
                  "pages": temp / 4096, "faults": sorted(faults)[len(faults) // 2]}))
"""


def _probe(prelude="", **env):
  clean = {k: v for k, v in os.environ.items()
           if k not in ("JAXDL_CPU_INLINE", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
  out = subprocess.run([sys.executable, "-c", prelude + _PROBE], capture_output=True, text=True, check=True,
                       env={**clean, "JAX_PLATFORMS": "cpu", **env})
  return json.loads(out.stdout.strip().splitlines()[-1])


def _kept(prelude="", **env):
  """A probe whose kept block is reused on most calls, in one of at most three fresh processes.

  glibc's heap is first fit: now and then a small allocation that outlives a
  call lands just after the block, the freed block cannot merge back into the
  heap's top, small requests split it, and later calls grow the heap and fault
  until the layout settles (about 1 fresh process in 20 on a loaded 2-core
  host had such calls, at most 6 in a row; the median of 12 was clean in 40
  of 40). Without the settings every call faults.
  """
  for _ in range(3):
    got = _probe(prelude, **env)
    if got["faults"] < 0.01 * got["pages"]:
      break
  return got


@pytest.mark.skipif(not cpu_runtime._glibc(), reason="the kept temporaries are glibc's mallopt")
def test_import_runs_programs_inline_and_reuses_their_temporaries():
  ours, theirs = _kept(), _probe(JAXDL_CPU_INLINE="0")
  assert ours["set"] == {"inline_dispatch": True, "keep_temporaries": True} and ours["async"] is False
  assert theirs["set"] == {"inline_dispatch": False, "keep_temporaries": False} and theirs["async"] is True
  assert ours["pages"] > 64 * 2**20 / 4096  # the block is over a thread arena's 64 MiB
  # JAX's defaults: every page of the block is mapped and zero-filled again at each call; jaxdl's: none, mostly.
  assert theirs["faults"] >= 0.9 * theirs["pages"]
  assert ours["faults"] < 0.01 * ours["pages"]


def test_inline_dispatch_asked_for_through_jax_gets_the_thresholds_too():
  got = _kept("import jax; jax.config.update('jax_cpu_enable_async_dispatch', False)\n")
  assert got["async"] is False and got["set"]["inline_dispatch"] is False  # the user's setting, not jaxdl's
  if cpu_runtime._glibc():
    assert got["set"]["keep_temporaries"] is True and got["faults"] < 0.01 * got["pages"]


def test_only_cpu_only_hosts_are_changed(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
  assert not cpu_runtime._cpu_only()
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert cpu_runtime._cpu_only()
  # Platforms left to JAX: an installed CUDA/ROCm plugin or TPU runtime means a host that may have an accelerator.
  monkeypatch.setattr(cpu_runtime, "_platforms", lambda: "")
  real = cpu_runtime.importlib.util.find_spec
  monkeypatch.setattr(cpu_runtime.importlib.util, "find_spec",
                      lambda name: None if name in ("jax_plugins", "libtpu") else real(name))
  assert cpu_runtime._cpu_only()  # neither installed
  for installed in ("jax_plugins", "libtpu"):
    monkeypatch.setattr(cpu_runtime.importlib.util, "find_spec",
                        lambda name, installed=installed: object() if name == installed else real(name))
    assert not cpu_runtime._cpu_only()


def test_nothing_changes_once_backends_run(monkeypatch):
  jnp.zeros(1).block_until_ready()  # the backends are up
  monkeypatch.delenv("JAXDL_CPU_INLINE", raising=False)
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  before = jax.config.values["jax_cpu_enable_async_dispatch"]
  assert cpu_runtime.configure() == {"inline_dispatch": False, "keep_temporaries": False}
  assert jax.config.values["jax_cpu_enable_async_dispatch"] == before
