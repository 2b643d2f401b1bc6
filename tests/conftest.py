"""Test-suite strictness and the 8 virtual CPU devices.

XLA_FLAGS must be set before JAX initialises its backend, so this runs first.
Every test sees 8 CPU devices: the data-parallel path is the path under test.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402

# Implicit rank promotion hides shape bugs ((B,) + (B, 1) -> (B, B)).
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def repo_root():
  import pathlib
  return pathlib.Path(__file__).resolve().parent.parent
