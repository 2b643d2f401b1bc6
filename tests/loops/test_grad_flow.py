"""The grad_flow study: its presets "grad_flow" and "exploding_gradients" on shrunk configs, and its bad input."""

import json
import math

import pytest

from jaxdl import configs
from jaxdl.loops import grad_flow
from jaxdl.train.loop import Diverged
from jaxdl.utils.errors import JaxdlError

from cli_helpers import assert_one_line_error, run_cli


def _preset(name, *overrides, keep=None):
  config, _ = configs.load_preset(name)
  configs.apply_overrides(config, ["train.num_devices=1", "checkpoint.every_steps=0", *overrides])
  if keep:  # a subset of the preset's own variants
    config.study.variants = tuple(v for v in config.study.variants if v.split(":")[0] in keep)
  return config


@pytest.fixture(scope="module")
def vanishing(tmp_path_factory):
  """"grad_flow" with 6-layer MLPs of width 16: sigmoid against ReLU with residuals and BatchNorm."""
  workdir = tmp_path_factory.mktemp("grad_flow")
  config = _preset("grad_flow", f"model.hidden={(16,) * 6}", "train.steps=200", "train.log_layer_stats=false",
                   "study.grad_examples=128", keep=("sigmoid", "relu_residual_bn"))
  _, metrics = grad_flow.train_and_evaluate(config, workdir)
  return workdir, metrics


def test_sigmoid_gradients_vanish_and_residual_bn_ones_do_not(vanishing):
  _, m = vanishing
  sigmoid, resnet = m["grad_norm_first_over_last/sigmoid"], m["grad_norm_first_over_last/relu_residual_bn"]
  assert sigmoid < 1e-2 and 0.1 <= resnet <= 10, m
  assert sigmoid < resnet / 100, m
  assert m["trained_grad_norm_first_over_last/sigmoid"] < m["trained_grad_norm_first_over_last/relu_residual_bn"]
  assert m["test_accuracy/relu_residual_bn"] > 0.7, m  # the residual net learns; chance is 0.1
  assert m["test_accuracy/relu_residual_bn"] > m["test_accuracy/sigmoid"] + 0.2, m
  assert not m["diverged/sigmoid"] and not m["diverged/relu_residual_bn"]


def test_the_study_writes_its_files(vanishing):
  workdir, m = vanishing
  assert json.loads((workdir / "metrics.json").read_text())["variants"] == "sigmoid,relu_residual_bn"
  for png in ("grad_flow.png", "training.png"):
    assert (workdir / png).stat().st_size > 10_000, png
  layers = json.loads((workdir / "layers.json").read_text())
  res = layers["relu_residual_bn"]
  assert res["order"][:3] == ["Dense_0", "BatchNorm_0", "Dense_1"] and res["order"][-1] == "Dense_6"
  assert res["weight_layers"] == [f"Dense_{i}" for i in range(7)]
  ratio = res["init"]["grad_norm"]["Dense_0"] / res["init"]["grad_norm"]["Dense_6"]
  assert math.isclose(ratio, m["grad_norm_first_over_last/relu_residual_bn"], rel_tol=1e-6)
  for variant in ("sigmoid", "relu_residual_bn"):  # each variant is a whole supervised run
    sub = json.loads((workdir / variant / "metrics.json").read_text())
    assert sub["test_accuracy"] == m[f"test_accuracy/{variant}"]
    assert (workdir / variant / "config.json").is_file()


@pytest.fixture(scope="module")
def exploding(tmp_path_factory):
  """"exploding_gradients", shorter."""
  workdir = tmp_path_factory.mktemp("exploding")
  config = _preset("exploding_gradients", "train.steps=80", "train.log_every=10", "study.grad_examples=128")
  _, metrics = grad_flow.train_and_evaluate(config, workdir)
  return workdir, metrics


def test_clipping_bounds_the_gradient_and_learns(exploding):
  _, m = exploding
  assert m["diverged/no_clip"] and m["skipped_steps/no_clip"] > 0, m
  assert not m["diverged/clip"] and m["skipped_steps/clip"] == 0, m
  assert m["test_accuracy/clip"] > 0.7, m
  assert m["test_accuracy/clip"] > m["test_accuracy/no_clip"] + 0.2, m
  assert m["max_grad_norm/clip"] < m["max_grad_norm/no_clip"], m


def test_a_halted_variant_is_reported_not_raised(tmp_path, monkeypatch):
  """Under train.nan_policy=halt a sub-run raises Diverged: the study records it and goes on."""
  config = _preset("grad_flow", "model.hidden=(8,)", "train.nan_policy=halt")
  config.study.variants = ("halts: optim.learning_rate=0.1", "fine: optim.learning_rate=0.01")

  def fake_run(sub, workdir, **kwargs):  # the sub-runs, without training them
    if sub.optim.learning_rate == 0.1:
      (workdir / "metrics.jsonl").parent.mkdir(parents=True)
      (workdir / "metrics.jsonl").write_text(json.dumps({"step": 5, "train/loss": 9.0, "train/grad_norm": 1e4}))
      raise Diverged(7, 0, "non-finite loss or parameters at step 7")
    return None, {"test_accuracy": 0.5, "test_loss": 1.0, "train_loss": 1.0, "skipped_steps": 0}

  monkeypatch.setattr(grad_flow.experiment.supervised, "train_and_evaluate", fake_run)
  _, m = grad_flow.train_and_evaluate(config, tmp_path)
  assert m["diverged/halts"] and m["diverged_at_step/halts"] == 7 and math.isnan(m["test_accuracy/halts"])
  assert m["max_grad_norm/halts"] == 1e4
  assert not m["diverged/fine"] and m["test_accuracy/fine"] == 0.5
  assert (tmp_path / "training.png").is_file() and (tmp_path / "grad_flow.png").is_file()


# ------------------------------------------------------------------ bad input --


@pytest.mark.parametrize("variants, words", [
    (("relu",), ("'NAME: KEY=VALUE",)),
    (("a b: model.activation=tanh",), ("'NAME: KEY=VALUE",)),
    (("a: model.activation=tanh", "a: model.activation=relu"), ("twice",)),
    (("a: train.stepz=3",), ("'a'", "train.stepz")),
    (("a: model.depth=3",), ("'a'", "depth")),
    ((), ("non-empty",)),
])
def test_bad_variants_are_one_line_errors(variants, words):
  config = grad_flow.default_config()
  config.study.variants = variants
  with pytest.raises(JaxdlError) as e:
    grad_flow.validate(config)
  for word in words:
    assert word in str(e.value)


def test_a_variant_that_cannot_build_fails_before_any_trains(tmp_path):
  config = _preset("grad_flow", "model.hidden=(8,)")
  config.study.variants = ("fine: model.activation=tanh", "typo: model.activation=swoosh")
  with pytest.raises(JaxdlError, match="'typo'.*swoosh"):
    grad_flow.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_a_variant_may_change_the_model():
  config = grad_flow.default_config()
  sub = grad_flow.variant_config(config, ("model.name=cnn", "model.features=(4,)"))
  assert sub.model.name == "cnn" and tuple(sub.model.features) == (4,) and sub.loop == "supervised"
  assert "study" not in sub


def test_cli_refuses_a_bad_variant_before_writing(capsys, tmp_path):
  code, _, err = run_cli(capsys, "run", "grad_flow", "--workdir", str(tmp_path / "run"),
                         "--set", "study.variants=('ok: model.activation=tanh', 'bad: optim.nam=sgd')")
  assert_one_line_error(code, err, "bad", "optim.nam")
  assert not (tmp_path / "run").exists()
  # A model option the preset leaves at its default is reachable with --set, as in the supervised loop.
  code, out, _ = run_cli(capsys, "show", "grad_flow", "--set", "model.dropout=0.1")
  assert code == 0 and json.loads(out)["model"]["dropout"] == 0.1
