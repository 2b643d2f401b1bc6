"""train.dtype=bfloat16: bfloat16 compute with float32 parameters, optimizer state and loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.configs import apply_overrides, load_preset
from jaxdl.loops import gan
from jaxdl.loops.lm.experiment import LMTask
from jaxdl.loops.supervised.experiment import SupervisedTask
from jaxdl.train import precision
from jaxdl.utils.errors import JaxdlError

TEXT = "".join(f"def f{i}(x):\n  return x * {i} + {i % 7}\n" for i in range(300))


def dot_dtypes(fn, *args) -> set[str]:
  """The operand dtypes of every matrix product and convolution in ``fn``'s program."""
  found = set()

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
        found.update(str(v.aval.dtype) for v in eqn.invars)
      for value in eqn.params.values():
        for sub in (value if isinstance(value, (tuple, list)) else (value,)):
          inner = getattr(sub, "jaxpr", sub)
          if hasattr(inner, "eqns"):
            walk(inner)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


@pytest.mark.parametrize("preset,overrides", [
    ("digits_cnn", ["model.features=(8,)", "model.hidden=(16,)"]),
    ("mnist1d_gru", ["model.hidden=16"]),
])
def test_bfloat16_computes_in_bfloat16_and_keeps_float32_state_and_loss(preset, overrides):
  config, _ = load_preset(preset)
  apply_overrides(config, [*overrides, "train.dtype=bfloat16", "train.batch_size=32", "train.num_devices=2"])
  task = SupervisedTask(config)
  leaves = jax.tree_util.tree_leaves((task.state.params, task.state.opt_state, task.state.batch_stats))
  assert {str(x.dtype) for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)} == {"float32"}
  batch = {"x": task.dataset.x_train[:32], "y": task.dataset.y_train[:32]}
  assert "bfloat16" in dot_dtypes(task.train_step, task.state, batch)
  state, metrics = task.run_chunk(task.state, np.int32(5))
  assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
  assert {str(x.dtype) for x in jax.tree_util.tree_leaves(state.params)} == {"float32"}


def test_float32_is_the_default_and_model_dtype_is_an_alias():
  config, _ = load_preset("digits_mlp")
  assert precision.compute_dtype(config) == "float32"
  assert "dtype" not in precision.model_section(config)  # the section untouched: the same program as before
  config.model.dtype = "bfloat16"  # a model option, set in a Python config
  assert precision.compute_dtype(config) == "bfloat16"
  apply_overrides(config, ["train.dtype=bfloat16"])
  assert precision.model_section(config).dtype == "bfloat16"


def test_lm_loop_builds_its_model_in_bfloat16():
  config, _ = load_preset("charlm_transformer")
  apply_overrides(config, ["train.dtype=bfloat16", "train.steps=4", "train.batch_size=8", "data.seq_len=16",
                           "model.width=16", "model.num_layers=1", "model.num_heads=2", "optim.warmup_steps=1",
                           "train.num_devices=2"])
  task = LMTask(config, text=TEXT)
  assert task.model.dtype == jnp.bfloat16
  _, metrics = task.run_chunk(task.state, np.int32(2))
  assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("train_dtype,model_dtype,message", [
    ("float16", None, r"^train.dtype='float16' must be one of float32, bfloat16 \(float16 needs loss scaling"),
    ("bfloat16", "float32",
     r"^model.dtype='float32' and train.dtype='bfloat16' disagree: model.dtype is an alias of train.dtype"),
    ("float32", "int8", r"^model.dtype='int8' must be one of float32, bfloat16"),
])
def test_a_dtype_jaxdl_does_not_train_in_is_a_one_line_error(train_dtype, model_dtype, message):
  config, _ = load_preset("digits_mlp")
  apply_overrides(config, [f"train.dtype={train_dtype}"])
  if model_dtype:
    config.model.dtype = model_dtype
  with pytest.raises(JaxdlError, match=message):
    SupervisedTask(config)


def test_loops_that_train_in_float32_only_refuse_bfloat16():
  config = gan.default_config()
  apply_overrides(config, ["train.dtype=bfloat16"])
  with pytest.raises(JaxdlError, match=r"^train.dtype='bfloat16' is not supported by the 'gan' loop"):
    gan.config.validate(config)
