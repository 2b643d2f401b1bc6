"""The transfer study: a shrunk "transfer_digits" learns and transfers, resume, bad input."""

import json
import pathlib

import jax
import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli
from jaxdl import configs
from jaxdl.loops import supervised, transfer
from jaxdl.loops.transfer.experiment import build_data
from jaxdl.utils.errors import JaxdlError

REPO = pathlib.Path(__file__).resolve().parents[2]

# A shrunk transfer_digits: a narrower CNN, a shorter pretraining, and a short budget on the
# target task without dropout or augmentation, where the pretrained backbone is far ahead.
SHRUNK = ("model.features=(8, 16)", "model.hidden=(32,)", "model.dropout=0.0", "augment.shift=0",
          "transfer.pretrain_steps=150", "transfer.pretrain_batch_size=64", "train.batch_size=48",
          "train.steps=10", "train.eval_every=5", "train.log_every=5")


def preset(*overrides):
  config, _ = configs.load_preset(REPO / "experiments" / "transfer_digits.py")
  return configs.apply_overrides(config, SHRUNK + overrides)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("transfer")
  _, metrics = transfer.train_and_evaluate(preset(), workdir)
  return workdir, metrics


def test_the_shrunk_preset_learns_and_fine_tuning_beats_scratch(study):
  workdir, m = study
  assert m["pretrain_test_accuracy"] > 0.9, m  # 5 classes: chance is 0.2
  assert m["test_accuracy"] > 0.6, m
  assert m["test_accuracy"] > m["scratch_test_accuracy"] + 0.05, m
  assert m["transfer_gain"] == pytest.approx(m["test_accuracy"] - m["scratch_test_accuracy"])
  assert (m["train_examples"], m["labels_per_class"], m["head"]) == (50, 10, ["Dense_1.*"])
  source, target = build_data(preset())
  assert (m["test_examples"], m["pretrain_examples"]) == (target.num_test, source.num_train)
  assert set(np.unique(target.y_test)) == set(range(5))  # 5-9, relabelled
  assert json.loads((workdir / "metrics.json").read_text()) == m
  assert (workdir / "transfer.png").stat().st_size > 0


def test_the_fine_tuned_run_starts_from_the_pretrained_backbone(study):
  workdir, m = study
  fine = json.loads((workdir / "finetune" / "metrics.json").read_text())
  assert fine["init_from"] == str((workdir / "pretrain").absolute())
  params = supervised.load_run(workdir / "finetune").variables["params"]
  assert fine["init_restored"] == m["restored_arrays"] == len(jax.tree_util.tree_leaves(params)) - 2  # all but the head
  scratch = json.loads((workdir / "scratch" / "metrics.json").read_text())
  assert "init_from" not in scratch and scratch["steps"] == fine["steps"]  # the same budget


def test_a_rerun_finds_every_run_finished(study, capsys):
  workdir, m = study
  _, again = transfer.train_and_evaluate(preset(), workdir)
  assert {k: again[k] for k in ("test_accuracy", "scratch_test_accuracy", "params_sha256")} == \
      {k: m[k] for k in ("test_accuracy", "scratch_test_accuracy", "params_sha256")}
  assert capsys.readouterr().out.count("already finished") == 3


@pytest.mark.parametrize("overrides, words", [
    (("transfer.head=('Dense_9.*',)",), ["transfer.head", "'Dense_9.*'", "Conv_0.kernel"]),
    (("transfer.backbone_lr_multiplier=-1.0",), ["transfer.backbone_lr_multiplier"]),
    (("transfer.source_classes=(0, 10)",), ["(0, 10)"]),
])
def test_bad_input_fails_before_anything_is_written(tmp_path, overrides, words):
  with pytest.raises(JaxdlError) as info:
    transfer.train_and_evaluate(preset(*overrides), tmp_path / "run")
  for word in words:
    assert word in str(info.value), str(info.value)
  assert not (tmp_path / "run").exists()


def test_the_study_sets_init_and_frozen_itself(tmp_path):
  config = preset()
  with config.unlocked():
    config.init = {"workdir": "elsewhere"}
  with pytest.raises(JaxdlError, match="init.workdir is not a key of the 'transfer' loop"):
    transfer.validate(config)


def test_the_cli_refuses_a_head_that_matches_nothing(capsys, tmp_path):
  code, _, err = run_cli(capsys, "run", "transfer_digits", "--workdir", str(tmp_path / "run"),
                         "--set", "transfer.head=('Dense_9.*',)")
  assert_one_line_error(code, err, "transfer.head", "Dense_9.*")
  assert not (tmp_path / "run").exists()
