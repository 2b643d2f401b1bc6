"""The supervised step protocol under its executors: eager, jit, sharded, vmap."""

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import configs, models, optim, train
from jaxdl.loops import supervised
from jaxdl.train import parallel
from jaxdl.train.state import step_keys
from jaxdl.utils.errors import JaxdlError


def small_config():
  c = supervised.default_config()
  c.data.name = "digits"
  c.model.name = "mlp"
  c.model.hidden = (32,)
  c.train.batch_size = 64
  c.train.steps = 40
  c.train.log_every = 20
  c.optim.learning_rate = 3e-3
  return c


def random_batch(rng, batch=16, shape=(8, 8, 1), classes=10):
  kx, ky = jax.random.split(jax.random.PRNGKey(rng))
  return {"x": jax.random.normal(kx, (batch, *shape)), "y": jax.random.randint(ky, (batch,), 0, classes)}


def make_state(model_name="cnn", seed=0, **kwargs):
  model = models.get_model(model_name, 10, **kwargs)
  tx = optim.make_optimizer("adam", 1e-3)
  return train.create_train_state(model, tx, jax.random.PRNGKey(seed), jnp.zeros((2, 8, 8, 1)))


class JittedStepEqualsEagerStepTest(chex.TestCase):
  """The step under jit and op by op (as in a debugging session) agrees with plain jax.jit."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_jitted_step_equals_eager_step(self):
    state = make_state("mlp", hidden=(16,), dropout=0.2, use_batchnorm=True)
    step = functools.partial(supervised.train_step, num_classes=10)
    batch = random_batch(1)
    ref_state, ref_metrics = jax.jit(step)(state, batch)
    new_state, metrics = self.variant(step)(state, batch)
    # The tolerance is relative to the second tree: the eager metrics and the
    # jitted parameters, as when this compared eager and jit by hand.
    chex.assert_trees_all_close(ref_metrics, metrics, rtol=2e-5, atol=1e-6)
    chex.assert_trees_all_close((new_state.params, new_state.batch_stats),
                                (ref_state.params, ref_state.batch_stats), rtol=2e-5, atol=1e-6)
    assert int(new_state.step) == 1
    # BatchNorm statistics moved, dropout made train and eval outputs differ.
    assert not np.allclose(jax.tree_util.tree_leaves(new_state.batch_stats)[0],
                           jax.tree_util.tree_leaves(state.batch_stats)[0])


def test_step_is_a_pure_function_of_state_and_batch():
  state = make_state("mlp", hidden=(16,), dropout=0.5)
  step = jax.jit(functools.partial(supervised.train_step, num_classes=10))
  batch = random_batch(2)
  a, ma = step(state, batch)
  b, mb = step(state, batch)
  assert float(ma["loss"]) == float(mb["loss"])
  # Exactly equal, and finite (a NaN would not equal itself).
  chex.assert_trees_all_equal(a.params, b.params)
  chex.assert_tree_all_finite(a.params)


def test_vmap_over_seeds_equals_separate_runs():
  model = models.get_model("mlp", 10, hidden=(16,))
  tx = optim.make_optimizer("adam", 1e-3)
  states = [train.create_train_state(model, tx, jax.random.PRNGKey(s), jnp.zeros((2, 8, 8, 1)))
            for s in (0, 1)]
  step = functools.partial(supervised.train_step, num_classes=10)
  batch = random_batch(3)
  stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
  vstate, vmetrics = jax.vmap(step, in_axes=(0, None))(stacked, batch)
  for i, s in enumerate(states):
    one, metrics = jax.jit(step)(s, batch)
    np.testing.assert_allclose(vmetrics["loss"][i], metrics["loss"], rtol=1e-5)
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda v: v[i], vstate.params), one.params,
                                rtol=1e-5, atol=1e-7)


def test_chunks_do_not_retrace():
  traces = []

  def step(state, batch):
    traces.append(1)  # runs only while tracing
    return supervised.train_step(state, batch, num_classes=10)

  chex.clear_trace_counter()
  state = make_state("mlp", hidden=(8,))
  data = {"x": jnp.zeros((64, 8, 8, 1)), "y": jnp.zeros((64,), jnp.int32)}
  # The chunk may trace the step more than once per trace of its own, so the
  # step's traces are counted by hand; the chunk's own with chex.
  chunk = jax.jit(chex.assert_max_traces(
      train.make_train_chunk(step, num_examples=64, batch_size=16), n=1), donate_argnums=(0,))
  state, _ = chunk(state, data, np.int32(3))
  count = len(traces)
  for n in (1, 4, 2, 3):
    state, _ = chunk(state, data, np.int32(n))
  assert len(traces) == count
  assert int(state.step) == 13


def test_eval_padding_matches_unpadded_mean():
  state = make_state("mlp", hidden=(8,))
  b = random_batch(4, batch=37)
  mesh = parallel.make_mesh(8)
  evaluate = train.make_evaluate(supervised.eval_step, np.asarray(b["x"]), np.asarray(b["y"]),
                                      mesh=mesh, batch_size=10)
  got = evaluate(state)
  ref = jax.jit(supervised.eval_step)(state, b)
  assert got["accuracy"] == pytest.approx(float(ref["accuracy"]), abs=1e-6)
  assert got["loss"] == pytest.approx(float(ref["loss"]), rel=1e-5)


@pytest.mark.parametrize("model", ["cnn_bn", "mlp"])
def test_one_device_equals_eight_devices(model):
  c = small_config()
  if model == "cnn_bn":  # BatchNorm statistics must be global across devices
    with c.unlocked():
      c.model = supervised.default_config().model
      c.model.name = "cnn"
      c.model.features = (8, 16)
      c.model.hidden = (32,)
      c.model.use_batchnorm = True
  results = {}
  for devices in (1, 8):
    with c.unlocked():
      c.train.num_devices = devices
    exp = supervised.Experiment(c)
    assert exp.mesh.devices.size == devices
    state, losses = exp.state, []
    for _ in range(3):
      state, metrics = exp.run_chunk(state, np.int32(7))
      losses.append(float(metrics["loss"]))
    results[devices] = (losses, jax.device_get(state.params), exp.evaluate(state))
  np.testing.assert_allclose(results[1][0], results[8][0], rtol=1e-4)
  # Reductions split over 8 devices round differently; Adam's normalisation
  # magnifies that for near-zero gradients, hence the absolute tolerance.
  chex.assert_trees_all_close(results[1][1], results[8][1], rtol=1e-3, atol=2e-4)
  assert results[1][2]["accuracy"] == pytest.approx(results[8][2]["accuracy"], abs=1 / 360 + 1e-9)


def test_batch_not_divisible_by_devices_is_a_clear_error():
  c = small_config()
  c.train.batch_size = 60
  with pytest.raises(JaxdlError, match=r"train.batch_size=60 is not divisible by the 8 devices"):
    supervised.Experiment(c)


def test_same_seed_same_params_different_seed_different(tmp_path):
  runs = {}
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    c = small_config()
    c.train.seed = seed
    _, metrics = supervised.train_and_evaluate(c, tmp_path / name)
    runs[name] = metrics
  assert runs["a"]["params_sha256"] == runs["b"]["params_sha256"]
  assert runs["a"]["test_loss"] == runs["b"]["test_loss"]
  assert runs["a"]["params_sha256"] != runs["c"]["params_sha256"]


def test_outputs_of_a_run(tmp_path):
  c = small_config()
  c.train.steps = 60
  state, metrics = supervised.train_and_evaluate(c, tmp_path)
  final = json.loads((tmp_path / "metrics.json").read_text())
  for key in ("test_accuracy", "test_loss", "train_loss", "steps", "wall_seconds", "params_sha256"):
    assert key in final
  assert final["steps"] == 60 and int(state.step) == 60
  assert len(final["params_sha256"]) == 64
  assert final["test_accuracy"] > 0.5  # an MLP on digits learns fast
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "train/loss" in r] == [20, 22, 40, 44, 60]
  assert any("test/accuracy" in r for r in records)
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["train"]["steps"] == 60 and saved["model"]["hidden"] == [32]
  png = (tmp_path / "learning_curves.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
  assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_step_keys_streams_are_distinct():
  rng = jax.random.PRNGKey(0)
  data_root, k0 = step_keys(rng, 0)
  _, k1 = step_keys(rng, 1)
  assert not np.array_equal(k0, k1)
  assert not np.array_equal(jax.random.fold_in(data_root, 0), k0)


def test_a_sharded_training_set_keeps_each_devices_rows_only_and_trains(tmp_path):
  c = small_config()
  c.data.placement = "sharded"
  task = supervised.SupervisedTask(c)
  devices, n = task.mesh.devices.size, task.dataset.num_train  # 1437 digits: 179 rows per device, 5 dropped
  rows = n // devices
  assert task.placement == "sharded" and task.train_rows == rows * devices
  x_train = task.arrays()[0]
  for shard in task.train_data["x"].addressable_shards:
    assert shard.data.shape == (rows, *x_train.shape[1:])
    start = shard.index[0].start
    np.testing.assert_array_equal(shard.data, x_train[start:start + rows])  # its own rows, in file order
  assert f"sharded ({rows} rows per device, {n - rows * devices} dropped)" in task.headline(task.state)

  def losses(workdir):
    records = map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
    return [r["train/loss"] for r in records if "train/loss" in r]

  _, metrics = supervised.train_and_evaluate(c, tmp_path / "sharded")
  replicated = small_config()
  replicated.data.placement = "replicated"
  _, other = supervised.train_and_evaluate(replicated, tmp_path / "replicated")
  assert other["params_sha256"] != metrics["params_sha256"]  # another batch order
  ours, theirs = losses(tmp_path / "sharded"), losses(tmp_path / "replicated")
  assert ours[-1] < ours[0] - 0.3 and ours[-1] == pytest.approx(theirs[-1], rel=0.1)  # it learns as fast
  assert metrics["test_accuracy"] > 0.7


def test_an_unknown_data_placement_is_a_one_line_error_and_other_loops_refuse_the_key():
  c = small_config()
  c.data.placement = "striped"
  with pytest.raises(JaxdlError, match="data.placement='striped' must be 'replicated', 'sharded'"):
    supervised.validate(c)
  from jaxdl.loops import lm
  c = lm.default_config()
  c.data.placement = "sharded"
  with pytest.raises(JaxdlError, match="data.placement is not a key of the 'lm' loop"):
    lm.validate(c)
