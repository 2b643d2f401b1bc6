"""train.accumulate_steps: k micro-batches of B / k make the step of one batch of B."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.configs import apply_overrides, load_preset
from jaxdl.loops import gan
from jaxdl.loops.lm.step import lm_train_step
from jaxdl.loops.supervised.experiment import SupervisedTask
from jaxdl.loops.supervised.step import train_step
from jaxdl.models import get_model
from jaxdl.train import accumulate, parallel
from jaxdl.train.state import create_train_state
from jaxdl.utils.errors import JaxdlError

B = 32


def batch(seed=0, shape=(8, 8, 1), classes=10):
  rng = np.random.default_rng(seed)
  return {"x": rng.normal(size=(B, *shape)).astype(np.float32),
          "y": rng.integers(0, classes, size=B).astype(np.int32)}


def state_of(model, x):  # SGD: the update is the gradient itself (Adam would magnify rounding in tiny ones)
  return create_train_state(model, optax.sgd(0.5), jax.random.PRNGKey(0), x[:2])


def test_split_takes_rows_j_mod_k_and_merge_puts_them_back():
  x = np.arange(24).reshape(12, 2)
  parts = accumulate.split({"x": x}, 3)["x"]
  assert parts.shape == (3, 4, 2)
  np.testing.assert_array_equal(parts[1], x[1::3])
  np.testing.assert_array_equal(accumulate.merge(parts), x)


@pytest.mark.parametrize("k", [2, 4])
def test_k_micro_batches_equal_one_batch_without_batch_norm(k):
  model = get_model("mlp", 10, hidden=(32, 16))
  data = batch()
  state = state_of(model, data["x"])
  step = functools.partial(train_step, num_classes=10)
  one, one_metrics = jax.jit(step)(state, data)
  many, many_metrics = jax.jit(functools.partial(step, accumulate_steps=k))(state, data)
  for a, b in zip(jax.tree_util.tree_leaves(one.params), jax.tree_util.tree_leaves(many.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for key in ("loss", "accuracy", "grad_norm"):
    np.testing.assert_allclose(one_metrics[key], many_metrics[key], rtol=1e-5)
  assert not np.array_equal(jax.tree_util.tree_leaves(one.params)[0], jax.tree_util.tree_leaves(state.params)[0])


def test_accumulation_is_the_same_over_eight_devices_with_the_batch_split():
  mesh = parallel.make_mesh(8)
  model = get_model("mlp", 10, hidden=(32,))
  data = batch(1)
  state = state_of(model, data["x"])
  step = jax.jit(functools.partial(train_step, num_classes=10, accumulate_steps=4))
  local, _ = step(state, data)
  sharded, _ = step(parallel.put_replicated(state, mesh), parallel.put(data, parallel.batch_sharded(mesh)))
  for a, b in zip(jax.tree_util.tree_leaves(local.params), jax.tree_util.tree_leaves(sharded.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batch_norm_normalises_each_micro_batch_and_updates_its_averages_once_per_micro_batch():
  model = get_model("cnn", 10, features=(8,), hidden=(16,), use_batchnorm=True)
  data = batch(2)
  state = state_of(model, data["x"])
  k = 2
  new, _ = jax.jit(functools.partial(train_step, num_classes=10, accumulate_steps=k))(state, data)
  stats = state.batch_stats
  for j in range(k):  # the model's own running averages, micro-batch by micro-batch
    _, updates = model.apply({"params": state.params, "batch_stats": stats}, data["x"][j::k], train=True,
                             mutable=["batch_stats"])
    stats = updates["batch_stats"]
  for a, b in zip(jax.tree_util.tree_leaves(stats), jax.tree_util.tree_leaves(new.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_lm_step_accumulates_windows_alike():
  model = get_model("transformer_lm", 20, width=16, num_layers=1, num_heads=2, max_len=12, dropout=0.0,
                    attention_dropout=0.0)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 20, size=(8, 13)).astype(np.int32)
  data = {"x": tokens[:, :-1], "y": tokens[:, 1:]}
  state = create_train_state(model, optax.sgd(0.5), jax.random.PRNGKey(0), data["x"][:2])
  one, m1 = jax.jit(lm_train_step)(state, data)
  two, m2 = jax.jit(functools.partial(lm_train_step, accumulate_steps=2))(state, data)
  for a, b in zip(jax.tree_util.tree_leaves(one.params), jax.tree_util.tree_leaves(two.params)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-5)


def test_steps_that_do_not_divide_each_devices_batch_are_a_one_line_error():
  config, _ = load_preset("digits_mlp")
  apply_overrides(config, ["train.accumulate_steps=3", "train.batch_size=64", "train.num_devices=8"])
  with pytest.raises(JaxdlError, match=r"^train.accumulate_steps=3 must divide each device's batch: "
                                       r"train.batch_size=64 over 1 device\(s\) is 64 per device$"):
    SupervisedTask(config)
  apply_overrides(config, ["train.accumulate_steps=16"])  # divides 64, not the 8 per device
  with pytest.raises(JaxdlError, match=r"over 8 device\(s\) is 8 per device$"):
    SupervisedTask(config)
  apply_overrides(config, ["train.accumulate_steps=0"])
  with pytest.raises(JaxdlError, match=r"^train.accumulate_steps=0 must be >= 1"):
    SupervisedTask(config)
  config = gan.default_config()
  apply_overrides(config, ["train.accumulate_steps=2"])
  with pytest.raises(JaxdlError, match=r"^train.accumulate_steps=2 is not supported by the 'gan' loop"):
    gan.config.validate(config)
