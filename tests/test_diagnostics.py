"""jaxdl.diagnostics: per-layer gradient norms and activation statistics, and their logging in training."""

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import diagnostics, models, optim, train
from jaxdl.loops import supervised
from jaxdl.utils.errors import JaxdlError

from cli_helpers import tensorboard_steps


def _batch(seed=0, n=32, classes=10):
  kx, ky = jax.random.split(jax.random.PRNGKey(seed))
  return jax.random.normal(kx, (n, 8, 8, 1)), jax.random.randint(ky, (n,), 0, classes)


def _mlp(**options):
  model = models.get_model("mlp", 10, **options)
  x, _ = _batch()
  return model, model.init(jax.random.PRNGKey(0), x[:2], train=False)


def test_layer_grad_norms_equal_a_direct_gradient():
  model, variables = _mlp(hidden=(16, 16, 16), use_batchnorm=True, residual=True)
  x, y = _batch()
  others = {k: v for k, v in variables.items() if k != "params"}

  def loss_fn(params):  # the loss written out here, independently of the module under test
    out = model.apply({"params": params, **others}, x, train=True, mutable=list(others) or False)
    logits = out[0] if others else out
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  grads = jax.jit(jax.grad(loss_fn))(variables["params"])
  loss, report = jax.jit(functools.partial(diagnostics.layer_report, model.apply))(variables, x, y)
  assert set(report["grad_norm"]) == set(grads)
  for name, sub in grads.items():
    direct = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree_util.tree_leaves(sub)))
    np.testing.assert_allclose(report["grad_norm"][name], direct, rtol=1e-5)
  np.testing.assert_allclose(loss, jax.jit(loss_fn)(variables["params"]), rtol=1e-6)
  # The layers' norms make up the global one.
  total = np.sqrt(sum(float(v) ** 2 for v in report["grad_norm"].values()))
  np.testing.assert_allclose(total, optax.tree.norm(grads), rtol=1e-5)


def test_output_stats_on_a_hand_built_case():
  # Units (columns): always negative (dead), mixed (alive), always exactly 0 (dead), always positive.
  a = jnp.array([[-1.0, 2.0, 0.0, 1.0],
                 [-3.0, -1.0, 0.0, 3.0]])
  stats = diagnostics.output_stats(a)
  assert float(stats["dead_frac"]) == 0.5
  np.testing.assert_allclose(stats["act_mean"], np.mean(np.asarray(a)), rtol=1e-6)
  np.testing.assert_allclose(stats["act_std"], np.std(np.asarray(a)), rtol=1e-6)
  # Several outputs (a tuple, as a module called twice) pool their units.
  pooled = diagnostics.output_stats((a, jnp.ones((2, 4))))
  assert float(pooled["dead_frac"]) == 2 / 8


def test_dead_relus_of_a_hand_built_mlp():
  # One hidden layer of 4 ReLUs on inputs >= 0: kernels of units 0 and 2 are negative, so
  # their pre-activations (and ReLUs) are <= 0 on every example: half the layer is dead.
  model, variables = _mlp(hidden=(4,))
  kernel = np.ones((64, 4), np.float32) * np.array([-1.0, 1.0, -0.5, 0.5], np.float32)
  params = {**variables["params"], "Dense_0": {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(4)}}
  x, y = jnp.abs(_batch()[0]), jnp.zeros(32, jnp.int32)
  stats = jax.jit(lambda p: diagnostics.activation_stats(
      diagnostics.apply_capturing(model.apply, {"params": p}, x, train=False)[1]))(params)
  assert float(stats["Dense_0"]["dead_frac"]) == 0.5
  # The dead units get no gradient at all, and layer_report sees the same.
  _, report = jax.jit(functools.partial(diagnostics.layer_report, model.apply))({"params": params}, x, y)
  grads = jax.jit(jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply({"params": p}, x, train=False), y).mean()))(params)
  assert np.all(np.asarray(grads["Dense_0"]["kernel"])[:, [0, 2]] == 0)
  assert report["dead_frac"]["Dense_0"] == stats["Dense_0"]["dead_frac"]


def test_layer_order_is_the_order_of_the_calls():
  model, variables = _mlp(hidden=(4,) * 11, use_batchnorm=True)  # Dense_10 sorts before Dense_2
  order = diagnostics.layer_order(model.apply, variables, _batch()[0][:2])
  expected = [n for i in range(11) for n in (f"Dense_{i}", f"BatchNorm_{i}")] + ["Dense_11"]
  assert list(order) == expected
  assert list(diagnostics.layer_names(variables["params"])) == sorted(expected) != expected
  assert diagnostics.weight_layers(variables["params"], order) == tuple(f"Dense_{i}" for i in range(12))


def test_bad_input_is_one_line():
  with pytest.raises(JaxdlError, match="non-empty dict of parameters"):
    diagnostics.layer_names({})
  with pytest.raises(JaxdlError, match="at least two layers"):
    diagnostics.first_over_last({"Dense_0": 1.0}, ["Dense_0"])


# ------------------------------------------------------- train.log_layer_stats --


def _state(**options):
  model = models.get_model("mlp", 10, **options)
  tx = optim.make_optimizer("adam", 1e-3)
  return train.create_train_state(model, tx, jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))


def test_logging_layer_stats_does_not_change_the_step():
  state = _state(hidden=(16, 16), use_batchnorm=True, dropout=0.1)
  x, y = _batch()
  plain = jax.jit(functools.partial(supervised.train_step, num_classes=10))
  off = jax.jit(functools.partial(supervised.train_step, num_classes=10, log_layer_stats=False))
  on = jax.jit(functools.partial(supervised.train_step, num_classes=10, log_layer_stats=True))
  (s0, m0), (s1, m1), (s2, m2) = (f(state, {"x": x, "y": y}) for f in (plain, off, on))
  chex.assert_trees_all_equal((s0.params, s0.batch_stats, m0), (s1.params, s1.batch_stats, m1))
  assert not any(k.startswith("layers/") for k in m1)
  # Logging only adds metrics: the update is the same.
  chex.assert_trees_all_close((s2.params, s2.batch_stats), (s1.params, s1.batch_stats), rtol=1e-6, atol=1e-7)
  assert {k for k in m2 if not k.startswith("layers/")} == set(m1)
  layers = ["Dense_0", "BatchNorm_0", "Dense_1", "BatchNorm_1", "Dense_2"]
  assert {k for k in m2 if k.startswith("layers/")} == {
      f"layers/{stat}/{n}" for stat in diagnostics.STATS for n in layers}
  np.testing.assert_allclose(np.sqrt(sum(float(m2[f"layers/grad_norm/{n}"]) ** 2 for n in layers)),
                             m2["grad_norm"], rtol=1e-5)


def test_log_layer_stats_reaches_metrics_jsonl_and_tensorboard(tmp_path):
  c = supervised.default_config()
  c.model.hidden = (16, 16)
  c.train.steps, c.train.batch_size, c.train.log_every, c.train.num_devices = 4, 32, 1, 1
  c.train.log_layer_stats = True
  c.checkpoint.every_steps = 0
  supervised.train_and_evaluate(c, tmp_path)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  for r in records:  # one step per record: the layers' norms make up the global one
    norms = [r[f"train/layers/grad_norm/Dense_{i}"] for i in range(3)]
    np.testing.assert_allclose(np.sqrt(np.sum(np.square(norms))), r["train/grad_norm"], rtol=1e-5)
    assert 0 <= r["train/layers/dead_frac/Dense_1"] <= 1 and r["train/layers/act_std/Dense_1"] > 0
  tags = tensorboard_steps(tmp_path / "tb")
  assert tags["train/layers/grad_norm/Dense_0"] == tags["train/layers/dead_frac/Dense_2"] == [1, 2, 3, 4]


def test_log_layer_stats_is_a_checked_key():
  c = supervised.default_config()
  assert c.train.log_layer_stats is False
  c.train.log_layer_statz = True
  with pytest.raises(JaxdlError, match="log_layer_statz"):
    supervised.validate(c)
