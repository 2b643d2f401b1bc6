"""Every preset learns: a shortened run of each must clearly beat chance.

The full runs and their accuracies are in the README; these only show that
each preset's model, data, optimizer and augmentation fit together and learn.
"""

import pytest

from jaxdl import configs, supervised

# preset -> (overrides that shrink it, test accuracy it must beat; chance is 0.1)
SHRUNK = {
    "digits_mlp": (["train.steps=120"], 0.85),
    "digits_cnn": (["train.steps=200", "optim.warmup_steps=10", "model.features=(16, 32)", "model.hidden=(64,)"], 0.8),
    "mnist1d_mlp": (["train.steps=200", "model.hidden=(256, 256)"], 0.3),
    "mnist1d_cnn": (["train.steps=200", "model.features=(16, 32, 32)", "model.hidden=(64,)"], 0.4),
    "mnist1d_resnet": (["train.steps=200", "optim.warmup_steps=10", "model.stage_sizes=(1, 1)", "model.width=16"], 0.4),
    "mnist1d_tcn": (["train.steps=200", "optim.warmup_steps=10", "model.channels=24"], 0.4),
}


def test_every_preset_is_covered(repo_root):
  assert set(SHRUNK) == {p.stem for p in (repo_root / "experiments").glob("[!_]*.py")}


@pytest.mark.parametrize("name", sorted(SHRUNK))
def test_preset_learns(repo_root, tmp_path, name):
  overrides, bar = SHRUNK[name]
  config, _ = configs.load_preset(repo_root / "experiments" / f"{name}.py")
  configs.apply_overrides(config, overrides + ["train.eval_every=0", "train.log_every=50"])
  _, metrics = supervised.train_and_evaluate(config, tmp_path)
  assert metrics["test_accuracy"] > bar, metrics
  assert metrics["train_loss"] < 2.2  # below log(10), the loss of a uniform guess
