"""The supervised loop from Python: arrays in memory, your loss and optimizer, load_run and predict."""

import json

import jax
import numpy as np
import optax
import pytest

import jaxdl
from jaxdl.utils.errors import JaxdlError

SHORT = ["train.steps=60", "train.log_every=30", "train.batch_size=64", "checkpoint.every_steps=30"]


def config(name="digits_mlp", extra=(), vectors=True):
  c, _ = jaxdl.load_preset(name)  # by name, from Python
  return jaxdl.apply_overrides(c, SHORT + (["augment.shift=0"] if vectors else []) + list(extra))


def arrays(seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(3, 6)) * 3
  y_train, y_test = rng.integers(0, 3, 300), rng.integers(0, 3, 90)
  x_train = centers[y_train] + rng.normal(size=(300, 6))
  x_test = centers[y_test] + rng.normal(size=(90, 6))
  return jaxdl.Dataset.from_arrays("blobs", x_train, y_train, x_test, y_test)


def test_load_run_predicts_exactly_the_reported_accuracy_batchnorm_included(tmp_path):
  _, metrics = jaxdl.train_and_evaluate(config("digits_cnn", ["optim.warmup_steps=10", "model.features=(8, 16)",
                                                              "model.hidden=(32,)"], vectors=False), tmp_path)
  run = jaxdl.load_run(tmp_path)
  assert "batch_stats" in run.variables and run.step == 60 and run.num_classes == 10
  ds = jaxdl.load_dataset("digits")
  logits = run.predict(ds.x_test)
  assert logits.shape == (360, 10)
  assert float(np.mean(logits.argmax(1) == ds.y_test)) == pytest.approx(metrics["test_accuracy"], abs=1e-6)  # float32
  with pytest.raises(JaxdlError, match="trained on"):
    run.predict(np.zeros((2, 4, 4, 1)))


def test_arrays_in_memory_train_and_a_resume_with_other_arrays_is_refused(tmp_path):
  state, metrics = jaxdl.train_and_evaluate(config(), tmp_path, data=arrays(0))
  assert metrics["dataset"] == "blobs" and metrics["test_accuracy"] > 0.8
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["data"]["name"] == "blobs" and saved["data"]["num_classes"] == 3
  assert json.loads((tmp_path / "data.json").read_text())["input_shape"] == [6]
  np.testing.assert_array_equal(jaxdl.load_run(tmp_path).predict(arrays(0).x_test).argmax(1).shape, (90,))
  with pytest.raises(JaxdlError, match="not this data"):
    jaxdl.train_and_evaluate(config(extra=["train.steps=60"]), tmp_path, data=arrays(1))
  with pytest.raises(JaxdlError, match="must be a jaxdl.Dataset"):
    jaxdl.train_and_evaluate(config(), tmp_path / "other", data={"x": 1})


def test_your_own_loss_and_optimizer_run_the_whole_loop(tmp_path):
  seen = []

  def squared_error(logits, batch):  # a Brier-style loss: (B,) per example
    seen.append(batch["targets"].shape)
    return ((jax.nn.softmax(logits) - batch["targets"]) ** 2).sum(-1)

  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.5, momentum=0.9))
  constant = ["optim.schedule=constant"]  # (optim.* is not read with tx; the schedule key lets the run extend)
  _, metrics = jaxdl.train_and_evaluate(config(extra=constant), tmp_path, data=arrays(0), loss_fn=squared_error,
                                        tx=tx)
  assert seen and all(s[-1] == 3 for s in seen)  # soft targets (B, K) reached the loss
  assert metrics["test_accuracy"] > 0.8 and metrics["test_loss"] < 0.4  # the test loss is this loss too
  assert (tmp_path / "checkpoints" / "60").is_dir() and (tmp_path / "learning_curves.png").is_file()
  # The workdir, checkpoints and resume work as with the config's own loss and optimizer.
  _, more = jaxdl.train_and_evaluate(config(extra=constant + ["train.steps=90"]), tmp_path, data=arrays(0),
                                     loss_fn=squared_error, tx=tx)
  assert more["steps"] == 90 and more["resumed_from_step"] == 60
