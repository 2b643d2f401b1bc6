"""The engine without a loop: a Task of one's own, trained, checkpointed and resumed by ``fit``."""

import json

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cli_helpers import tensorboard_steps
from jaxdl import configs
from jaxdl.train import StepUnit, TaskBase, TrainState, fit, fresh_batches, make_chunk, parallel


def line_batch(key, data):
  """y = 3 x + 1 plus a little noise, drawn fresh each step: (32, 1) each."""
  del data
  kx, kn = jax.random.split(key)
  x = jax.random.normal(kx, (32, 1))
  return {"x": x, "y": 3.0 * x + 1.0 + 0.01 * jax.random.normal(kn, (32, 1))}


def line_step(state, batch):
  def loss_fn(params):
    return jnp.mean(jnp.square(batch["x"] * params["w"] + params["b"] - batch["y"]))

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), {"loss": loss, "grad_norm": optax.tree.norm(grads)}


class LineTask(TaskBase):
  """A regression nobody ships: what a researcher's own task looks like to the engine."""

  def __init__(self, steps):
    self.config = ml_collections.ConfigDict({"loop": "line", "train": configs.train_section(),
                                             "checkpoint": configs.checkpoint_section()})
    self.config.train.log_every = 25
    self.config.checkpoint.every_steps = 50
    self.config.checkpoint.async_save = False
    self.mesh = parallel.make_mesh(1)
    state = TrainState.create(apply_fn=None, params={"w": jnp.zeros(()), "b": jnp.zeros(())},
                              tx=optax.sgd(0.1), rng=jax.random.PRNGKey(0), skipped=jnp.zeros((), jnp.int32))
    self.state = parallel.put_replicated(state.replace(step=jnp.zeros((), jnp.int32)), self.mesh)
    self.chunk = jax.jit(make_chunk(line_step, fresh_batches(line_batch)), donate_argnums=(0,))
    self.total_steps, self.max_chunk, self.eval_every = steps, 25, 0
    self.evaluations = 0

  def run_chunk(self, state, n):
    return self.chunk(state, {}, n)

  def evaluate(self, state):
    self.evaluations += 1
    return {"w_error": float(abs(state.params["w"] - 3.0))}

  def headline(self, state):
    return "a line"


def test_fit_trains_checkpoints_and_logs_a_task_of_ones_own(tmp_path):
  task = LineTask(steps=100)
  fitted = fit(task, tmp_path)
  params = jax.device_get(fitted.state.params)
  np.testing.assert_allclose([params["w"], params["b"]], [3.0, 1.0], atol=0.05)
  assert int(fitted.state.step) == 100 and fitted.start == 0
  assert task.evaluations == 1  # eval_every=0: only at the end
  assert fitted.test_metrics(task.evaluate) == {"w_error": fitted.summary["test/w_error"]}
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [25, 50, 75, 100]
  assert records[0]["train/loss"] > records[-1]["train/loss"]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["100", "50"]
  record = fitted.record(0.0)
  assert record["resumed_from_step"] == 0 and record["checkpoint_saves"] == 2 and record["seed"] == 0


def test_a_longer_run_of_the_same_task_resumes_bit_exactly(tmp_path):
  straight = fit(LineTask(steps=150), tmp_path / "straight").state
  fit(LineTask(steps=100), tmp_path / "resumed")
  resumed = fit(LineTask(steps=150), tmp_path / "resumed")
  assert resumed.start == 100
  chex.assert_trees_all_equal(jax.device_get(resumed.state.params), jax.device_get(straight.params))


def test_a_task_shows_its_own_unit_on_the_bar_and_in_tensorboard(tmp_path, capsys):
  task = LineTask(steps=100)
  task.unit = StepUnit("samples", 32)  # a step draws 32 examples: the bar and TensorBoard count those
  fit(task, tmp_path)
  bar = capsys.readouterr().err
  assert "3200/3200" in bar and "samples/s" in bar
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], r["samples"]) for r in records] == [(25, 800), (50, 1600), (75, 2400), (100, 3200)]
  assert tensorboard_steps(tmp_path / "tb")["train/loss"] == [800, 1600, 2400, 3200]
  # Checkpoints keep counting the task's steps.
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [50, 100]
