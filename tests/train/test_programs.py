"""Traced programs kept across processes (jaxdl.train.programs): read back instead of traced, same bits.

Each test points the compilation cache at a directory of its own, so an
entry found is one the test wrote. A fresh PersistentJit stands for a new
process: it has nothing in memory and finds its program on disk.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.train import compile as compile_lib
from jaxdl.train import parallel, programs


@pytest.fixture
def cache(tmp_path):
  before = jax.config.jax_compilation_cache_dir
  jax.config.update("jax_compilation_cache_dir", str(tmp_path))
  yield tmp_path / "jaxdl-programs"
  jax.config.update("jax_compilation_cache_dir", before)


def counted(traces):
  def chunk(state, data, n):
    traces.append(1)  # runs only while tracing
    w = state["w"]
    for _ in range(3):
      w = jnp.tanh(w @ data["x"]) + n
    return {"w": w, "step": state["step"] + n}, {"norm": jnp.linalg.norm(w)}
  return chunk


def inputs(size=8):
  """A state and data committed to a device, as a loop places them (and as a program's outputs are)."""
  state = {"w": np.random.default_rng(0).normal(size=(size, size)).astype(np.float32), "step": np.zeros((), np.int32)}
  return jax.device_put((state, {"x": np.eye(size, dtype=np.float32) * 0.5}), jax.devices()[0]) + (np.int32(2),)


def test_a_new_process_reads_the_program_back_and_computes_the_same_bits(cache):
  traces = []
  state, data, n = inputs()
  expected = jax.jit(counted([]))(state, data, n)
  with compile_lib.CompileClock() as first_clock:
    first = programs.PersistentJit(counted(traces), key="k", donate_argnums=(0,))(inputs()[0], data, n)
  assert len(traces) == 1 and len(list(cache.iterdir())) == 1 and first_clock.program_hits == 0
  with compile_lib.CompileClock() as clock:
    again = programs.PersistentJit(counted(traces), key="k", donate_argnums=(0,))
    donated = inputs()[0]
    second = again(donated, data, n)
    jax.tree_util.tree_map(np.testing.assert_array_equal, second, expected)
    assert jax.tree_util.tree_structure(second) == jax.tree_util.tree_structure(expected)
    third = again(second[0], data, n)  # the output state goes back in: the same program
  assert len(traces) == 1  # neither call traced the function
  assert clock.program_hits == 1 and clock.programs == 1
  jax.tree_util.tree_map(np.testing.assert_array_equal, first, expected)
  assert donated["w"].is_deleted()  # donation reaches the program read back
  assert int(third[0]["step"]) == 4


def test_another_key_or_other_shapes_trace_again(cache):
  traces = []
  state, data, n = inputs()
  programs.PersistentJit(counted(traces), key="k")(state, data, n)
  programs.PersistentJit(counted(traces), key="other config")(state, data, n)
  small_state, small_data, _ = inputs(4)
  out, _ = programs.PersistentJit(counted(traces), key="k")(small_state, small_data, n)
  assert len(traces) == 3 and len(list(cache.iterdir())) == 3
  assert out["w"].shape == (4, 4)


def test_an_unreadable_entry_is_traced_again_and_rewritten(cache):
  traces = []
  state, data, n = inputs()
  expected = programs.PersistentJit(counted(traces), key="k")(state, data, n)
  (entry,) = cache.iterdir()
  entry.write_bytes(b"not a program")
  got = programs.PersistentJit(counted(traces), key="k")(state, data, n)
  assert len(traces) == 2
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, expected)
  assert programs.PersistentJit(counted(traces), key="k")(state, data, n) is not None and len(traces) == 2


def test_no_key_or_no_compilation_cache_keeps_nothing(cache):
  traces = []
  state, data, n = inputs()
  programs.PersistentJit(counted(traces), key=None)(state, data, n)
  assert not cache.exists()
  jax.config.update("jax_enable_compilation_cache", False)
  try:
    programs.PersistentJit(counted(traces), key="k")(state, data, n)
  finally:
    jax.config.update("jax_enable_compilation_cache", True)
  assert not cache.exists() and len(traces) == 2


def test_a_sharded_state_comes_back_with_its_layout(cache):
  mesh = parallel.make_mesh(8)
  state, data, n = inputs()
  state = parallel.put_replicated(state, mesh)
  data = {"x": jax.device_put(data["x"], jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data")))}
  expected = jax.jit(counted([]))(state, data, n)
  programs.PersistentJit(counted([]), key="k")(state, data, n)
  got = programs.PersistentJit(counted([]), key="k")(state, data, n)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, expected)
  assert got[0]["w"].sharding.is_equivalent_to(expected[0]["w"].sharding, 2)


def test_cost_counts_the_flops_when_traced_and_when_read_back(cache):
  state, data, n = inputs()
  plain_flops = programs.PersistentJit(counted([]), key=None).cost(state, data, n)[0]
  first, compiled = programs.PersistentJit(counted([]), key="k").cost(state, data, n)
  again, _ = programs.PersistentJit(counted([]), key="k").cost(state, data, n)
  assert plain_flops == first == again == 3 * 2 * 8 ** 3
  assert compiled.memory_analysis() is not None


def test_only_jaxdl_code_counts_as_keyed():
  from jaxdl.loops.supervised import step

  assert programs.from_jaxdl(step.train_step, functools.partial(step.eval_step, loss_fn=None), None)
  assert not programs.from_jaxdl(step.train_step, lambda logits, batch: logits)


def test_a_program_export_refuses_runs_as_a_plain_jit_and_says_so(cache, capsys):
  def with_callback(x):  # a host callback: jax.export cannot serialize it
    return jax.pure_callback(lambda v: np.asarray(v) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1

  x = jax.device_put(np.arange(4, dtype=np.float32), jax.devices()[0])
  jitted = programs.PersistentJit(with_callback, key="k")
  np.testing.assert_array_equal(jitted(x), np.arange(4) * 2 + 1)
  np.testing.assert_array_equal(jitted(x), np.arange(4) * 2 + 1)
  assert not list(cache.glob("*.jaxprogram"))
  assert capsys.readouterr().out.count("traced at every run") == 1  # said once, not at every call
