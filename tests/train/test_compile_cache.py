"""The persistent compilation cache is on by default, and a run reports what compiling cost it.

The runs are subprocesses with a cache directory of their own: the suite's
shared cache (``JAX_COMPILATION_CACHE_DIR``, set by conftest) is taken out
of their environment, so what they find is jaxdl's default.
"""

import json
import os
import subprocess
import sys

import pytest

from jaxdl.train import compile as compile_lib

SMALL = ["model.hidden=(32,)", "train.steps=20", "train.log_every=10", "checkpoint.every_steps=0",
         "optim.warmup_steps=2"]


def run(workdir, cache_root, *overrides):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}  # jaxdl's defaults, not the suite's
  env["JAXDL_CACHE_DIR"] = str(cache_root)
  cmd = [sys.executable, "-m", "jaxdl", "run", "digits_mlp", "--workdir", str(workdir)]
  for o in (*SMALL, *overrides):
    cmd += ["--set", o]
  done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads((workdir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("compile_cache")
  cache = root / "cache"
  first = run(root / "first", cache)
  second = run(root / "second", cache)
  off = run(root / "off", root / "cache_off", "train.compile_cache=false")
  return cache, first, second, off, root


def test_the_first_run_fills_the_default_cache_and_the_second_loads_every_program_from_it(runs):
  cache, first, second, _, _ = runs
  assert any((cache / "xla").iterdir())
  assert first["compiled_programs"] > 0 and first["compile_cache_hits"] == 0
  assert second["compiled_programs"] == first["compiled_programs"]
  assert second["compile_cache_hits"] == second["compiled_programs"]
  assert first["compile_seconds"] > 0 and second["compile_seconds"] > 0
  assert second["params_sha256"] == first["params_sha256"]  # a cached executable is the same program


def test_the_second_run_reads_its_traced_chunk_back_instead_of_tracing_it(runs):
  cache, first, second, _, _ = runs
  assert len(list((cache / "xla" / "jaxdl-programs").glob("*.jaxprogram"))) == 1  # the training chunk
  assert first["program_cache_hits"] == 0 and second["program_cache_hits"] == 1
  assert second["flops_per_step"] == first["flops_per_step"] > 0  # counted when traced, kept with the program
  assert second["peak_bytes"] == first["peak_bytes"]


def test_compile_cache_false_writes_no_cache_and_computes_the_same(runs):
  _, first, _, off, root = runs
  assert not (root / "cache_off" / "xla").exists()
  assert off["program_cache_hits"] == 0
  assert off["compile_cache_hits"] == 0 and off["compiled_programs"] == first["compiled_programs"]
  assert off["params_sha256"] == first["params_sha256"]


def test_the_run_directory_chosen_by_the_user_is_kept(tmp_path, monkeypatch):
  import jax

  before = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir", "jax_enable_compilation_cache")}
  assert before["jax_compilation_cache_dir"]  # conftest chose one for the suite
  assert compile_lib.configure_cache(True) == before["jax_compilation_cache_dir"]
  assert {k: getattr(jax.config, k) for k in before} == before
  monkeypatch.setenv("JAXDL_CACHE_DIR", str(tmp_path))
  assert compile_lib.default_cache_dir() == tmp_path / "xla"
