"""The supervised loop as a regression (train.task=regression): losses, metrics, (N, K) targets, bad input, presets."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdl
from cli_helpers import assert_one_line_error, run_cli
from jaxdl import configs, models, optim, train
from jaxdl.data import files
from jaxdl.loops import supervised
from jaxdl.loops.supervised.step import Regression
from jaxdl.train import losses, parallel
from jaxdl.train.workdir import config_differences
from jaxdl.utils.errors import JaxdlError

PREDICTIONS = np.array([[1.0, 2.0], [0.0, -3.0]], np.float32)
TARGETS = np.array([[0.5, 2.0], [2.0, 0.0]], np.float32)  # errors 0.5, 0; -2, -3


def test_mse_and_huber_losses_against_hand_computations():
  # Squared errors averaged over the two outputs: (0.25 + 0) / 2, (4 + 9) / 2.
  np.testing.assert_allclose(losses.squared_error(PREDICTIONS, TARGETS), [0.125, 6.5])
  # Huber, delta 1: 0.5 * 0.5^2 = 0.125 and 0 inside; 1 * (2 - 0.5) = 1.5 and 3 - 0.5 = 2.5 beyond.
  np.testing.assert_allclose(losses.huber(PREDICTIONS, TARGETS, 1.0), [0.0625, 2.0])
  # Delta 2.5: -2 is inside now (0.5 * 4 = 2), -3 beyond (2.5 * (3 - 1.25) = 4.375).
  np.testing.assert_allclose(losses.huber(PREDICTIONS, TARGETS, 2.5), [0.0625, 3.1875])
  np.testing.assert_allclose(Regression(loss="huber").per_example_loss(PREDICTIONS, TARGETS), [0.0625, 2.0])
  np.testing.assert_allclose(Regression(loss="mse").per_example_loss(PREDICTIONS, TARGETS), [0.125, 6.5])


def test_the_train_step_minimises_the_chosen_loss():
  model = models.get_model("mlp", 2, hidden=(8,))
  state = train.create_train_state(model, optim.make_optimizer("sgd", 0.1), jax.random.PRNGKey(0), jnp.zeros((2, 3)))
  x = jax.random.normal(jax.random.PRNGKey(1), (16, 3))
  batch = {"x": x, "y": jnp.stack([x[:, 0], x[:, 1] - x[:, 2]], axis=1)}  # (B, 2)
  outputs = state.apply_fn(state.variables(), x, train=False)
  for loss, per_example in (("mse", losses.squared_error), ("huber", losses.huber)):
    regression = Regression(loss=loss, target_std=(2.0, 3.0))
    new_state, metrics = jax.jit(lambda s, b, r=regression: supervised.train_step(s, b, num_classes=2,
                                                                                  regression=r))(state, batch)
    assert float(metrics["loss"]) == pytest.approx(float(per_example(outputs, batch["y"]).mean()), rel=1e-5)
    errors = (np.asarray(outputs) - np.asarray(batch["y"])) * [2.0, 3.0]  # in the targets' units
    assert float(metrics["rmse"]) == pytest.approx(float(np.sqrt(np.mean(errors ** 2))), rel=1e-5)
    after = new_state.apply_fn(new_state.variables(), x, train=False)
    assert float(per_example(after, batch["y"]).mean()) < float(metrics["loss"])  # one step downhill


def test_test_metrics_against_numpy_with_padding_and_eight_devices():
  rng = np.random.default_rng(0)
  model = models.get_model("mlp", 3, hidden=(8,))
  state = train.create_train_state(model, optim.make_optimizer("adam", 1e-3), jax.random.PRNGKey(0),
                                   jnp.zeros((2, 5)))
  x = rng.normal(size=(37, 5)).astype(np.float32)  # 37: padded to whole batches of 16
  z = rng.normal(size=(37, 3)).astype(np.float32) * [1.0, 0.5, 2.0] + [0.0, 1.0, -1.0]
  std = (2.0, 10.0, 0.5)
  regression = Regression(target_std=std)
  evaluate = train.make_evaluate(lambda s, b: supervised.eval_step(s, b, regression=regression), x,
                                 z.astype(np.float32), mesh=parallel.make_mesh(8), batch_size=10,
                                 finish=regression.summarize)
  got = evaluate(state)
  # In the targets' units (any mean: it cancels from errors and from r2).
  predicted = np.asarray(state.apply_fn(state.variables(), x, train=False), np.float64) * std + 7.0
  y = z.astype(np.float64) * std + 7.0
  assert got["rmse"] == pytest.approx(np.sqrt(np.mean((predicted - y) ** 2)), rel=1e-5)
  assert got["mae"] == pytest.approx(np.mean(np.abs(predicted - y)), rel=1e-5)
  r2 = 1 - ((predicted - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
  assert got["r2"] == pytest.approx(np.mean(r2), rel=1e-4, abs=1e-5)
  assert got["loss"] == pytest.approx(np.mean((predicted - y) ** 2 / np.square(std)), rel=1e-5)


def linear_targets(seed=0, n=400, outputs=2):
  """Inputs (N, 4) and targets y = x W + 50 (N, K) with a little noise, in units far from 1."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(4, outputs)) * [[30.0] * outputs]
  x = rng.normal(size=(n, 4))
  y = x @ w + 50 + rng.normal(size=(n, outputs))
  return x, (y if outputs > 1 else y[:, 0])


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory):
  x, y = linear_targets()
  data = jaxdl.Dataset.from_arrays("linear", x[:320], y[:320], x[320:], y[320:], task="regression")
  config, _ = jaxdl.load_preset("diabetes_mlp")
  configs.apply_overrides(config, ["train.steps=150", "train.eval_every=0", "optim.learning_rate=1e-2"])
  workdir = tmp_path_factory.mktemp("two_outputs")
  _, metrics = supervised.train_and_evaluate(config, workdir, data=data)
  return data, workdir, metrics


def test_targets_of_k_columns_train_a_k_wide_model_that_predicts_in_their_units(two_outputs):
  data, workdir, metrics = two_outputs
  assert data.num_classes == 2 and data.y_train.shape == (320, 2)
  assert metrics["test_r2"] > 0.9 and metrics["task"] == "regression", metrics
  run = jaxdl.load_run(workdir)
  assert run.task == "regression" and run.num_classes == 2
  predicted = run.predict(data.x_test)
  assert predicted.shape == (80, 2)
  # What predict gives is what the run was scored on: the test rmse in the targets' units.
  rmse = np.sqrt(np.mean((predicted.astype(np.float64) - data.y_test) ** 2))
  assert rmse == pytest.approx(metrics["test_rmse"], rel=1e-4)
  assert json.loads((workdir / "config.json").read_text())["data"]["num_classes"] == 0


def test_a_regression_target_with_nan_names_the_array_and_the_first_bad_index(tmp_path, capsys):
  x, y = linear_targets(outputs=1, n=60)
  y[[13, 40]] = np.nan
  with pytest.raises(JaxdlError, match=r"array 'y_train': 2 non-finite targets \(NaN or inf\), first at index 13"):
    jaxdl.Dataset.from_arrays("nan", x[:50], y[:50], x[50:], y[50:], task="regression")
  files.save_npz(tmp_path / "nan.npz", x[:50], y[:50], x[50:], y[50:])
  code, _, err = run_cli(capsys, "run", "diabetes_mlp", "--set", "data.name=npz", "--set",
                         f"data.path={tmp_path / 'nan.npz'}", "--workdir", str(tmp_path / "run"))
  assert_one_line_error(code, err, "nan.npz", "y_train", "first at index 13")
  assert not (tmp_path / "run").exists()


def test_float_targets_with_the_classification_task_suggest_regression(tmp_path, capsys):
  x, y = linear_targets(outputs=1, n=60)
  files.save_npz(tmp_path / "float.npz", x[:50], y[:50], x[50:], y[50:])
  code, _, err = run_cli(capsys, "run", "tabular_mlp", "--set", "data.name=npz", "--set",
                         f"data.path={tmp_path / 'float.npz'}", "--workdir", str(tmp_path / "run"))
  assert_one_line_error(code, err, "y_train", "labels must be integers", "task=regression")


def test_an_augmentation_that_does_not_fit_a_table_says_which_key_and_preset(tmp_path, capsys):
  x, y = linear_targets(outputs=1, n=60)
  files.save_npz(tmp_path / "table.npz", x[:50], (y[:50] > 50).astype(int), x[50:], (y[50:] > 50).astype(int))
  code, _, err = run_cli(capsys, "run", "digits_mlp", "--set", "data.name=npz", "--set",
                         f"data.path={tmp_path / 'table.npz'}", "--workdir", str(tmp_path / "run"))
  assert_one_line_error(code, err, "augment.shift needs spatial axes", "set augment.shift=0", "tabular_mlp")


@pytest.mark.parametrize("overrides, words", [
    (["train.loss=huber"], ["train.loss='huber'", "train.task=regression"]),
    (["train.task=regression", "train.loss=cross_entropy"], ["not a regression loss", "mse or huber"]),
    (["train.task=regresion"], ["train.task='regresion'", "classification, regression"]),
    (["train.task=regression", "train.label_smoothing=0.1"], ["train.label_smoothing=0.1"]),
    (["train.task=regression", "train.huber_delta=2.0"], ["train.huber_delta=2.0", "train.loss=huber"]),
    (["train.task=regression", "checkpoint.keep_best=test/accuracy"], ["test/rmse", "test/r2"]),
    (["train.task=regression", "checkpoint.keep_best=test/rmse"], ["better when lower", "best_mode=min"]),
    (["data.name=diabetes"], ["dataset 'diabetes' is a regression", "set train.task=regression"]),
])
def test_what_only_the_other_task_reads_is_a_one_line_error(overrides, words):
  config = supervised.default_config()
  configs.apply_overrides(config, ["data.name=breast_cancer", "model.name=mlp", *overrides])
  with pytest.raises(JaxdlError) as e:
    supervised.SupervisedTask(config)
  for word in words:
    assert word in str(e.value), (word, str(e.value))


def test_a_run_started_before_the_task_keys_resumes_as_a_classification():
  saved = {"loop": "supervised", "train": {"seed": 0, "steps": 100}, "data": {"name": "digits"}}
  current = {"loop": "supervised", "train": {"seed": 0, "steps": 100, "task": "classification", "loss": "",
                                             "huber_delta": 1.0}, "data": {"name": "digits",
                                                                           "normalize": ""}}
  assert config_differences(saved, current) == []
  changed = {**current, "train": {**current["train"], "task": "regression", "huber_delta": 2.0}}
  assert config_differences(saved, changed) == ["train.huber_delta", "train.task"]


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
  config, _ = jaxdl.load_preset("diabetes_mlp")
  configs.apply_overrides(config, ["train.steps=100", "train.log_every=50", "train.eval_every=10"])
  workdir = tmp_path_factory.mktemp("diabetes")
  _, metrics = supervised.train_and_evaluate(config, workdir)
  return workdir, metrics


def test_diabetes_mlp_shrunk_learns(diabetes):
  workdir, metrics = diabetes
  assert metrics["test_r2"] > 0.25, metrics  # 0 is predicting the mean; RidgeCV reaches 0.34 on this split
  assert metrics["test_rmse"] < 66 and metrics["test_mae"] < 55  # the target's test std is 72 (25..346)
  assert "test_accuracy" not in metrics and metrics["dataset"] == "diabetes"
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  rmse = [r["test/rmse"] for r in records if "test/rmse" in r]
  assert len(rmse) == 10 and rmse[-1] < rmse[0] - 10  # about 79 after 10 steps, 57 after 100
  assert all("train/rmse" in r for r in records)
  assert (workdir / "learning_curves.png").stat().st_size > 10_000


def test_load_run_predicts_diabetes_in_its_units_and_explain_says_it_does_not_apply(diabetes, capsys):
  workdir, metrics = diabetes
  run = jaxdl.load_run(workdir)
  ds = jaxdl.load_dataset("diabetes", task="regression")
  predicted = run.predict(ds.x_test)  # raw features: the run's standardisation is applied inside
  assert predicted.shape == (89,)
  r2 = 1 - np.sum((predicted - ds.y_test) ** 2) / np.sum((ds.y_test - ds.y_test.mean()) ** 2)
  assert r2 == pytest.approx(metrics["test_r2"], abs=1e-4)
  code, _, err = run_cli(capsys, "explain", str(workdir))
  assert_one_line_error(code, err, "regression", "jaxdl explain")
