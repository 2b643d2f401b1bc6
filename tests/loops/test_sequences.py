"""Padded sequences and token ids through the supervised loop.

The 1-D presets train on such files with only ``data.name`` and ``data.path``
set; lengths travel with the batches (sharded over the 8 devices) into the
step and the evaluation, so padding changes no result; a sequence too long
for memory is a one-line error.
"""

import jax
import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli
from jaxdl import configs
from jaxdl.data import Dataset, files, load_dataset
from jaxdl.loops import supervised
from test_presets import SHRUNK

# MNIST-1D's 40 samples, each cut to 28-40 and padded back to 40 (the length
# mnist1d_transformer's 10 learned positions of 4 samples cover).
STEPS = 40
# One preset per way a model reads lengths: the recurrences (the tanh RNN is the
# LSTM's and GRU's module with another cell), the TCN's masked BatchNorm, the
# Transformer's attention mask, and the models that read the padded signal
# whole (the ResNet and the MLP; the CNN is the ResNet's case without blocks).
PRESETS = ("mnist1d_lstm", "mnist1d_gru", "mnist1d_tcn", "mnist1d_transformer", "mnist1d_resnet", "mnist1d_mlp")


def _cut(rng, x, lengths, junk):
  """``x`` (N, STEPS, ...) kept to each length, with ``junk`` (never read) after it."""
  valid = (np.arange(STEPS)[None, :] < lengths[:, None]).reshape(lengths.shape + (STEPS,) + (1,) * (x.ndim - 2))
  return np.where(valid, x, junk(rng, x.shape))


@pytest.fixture(scope="module")
def sequence_files(tmp_path_factory):
  """{layout: an .npz of 1000 train / 300 test MNIST-1D signals cut to random lengths}."""
  ds = load_dataset("mnist1d")
  rng = np.random.default_rng(0)
  x_train, x_test = ds.x_train[:1000], ds.x_test[:300]
  lengths = {"lengths_train": rng.integers(28, STEPS + 1, 1000), "lengths_test": rng.integers(28, STEPS + 1, 300)}
  labels = {"y_train": ds.y_train[:1000], "y_test": ds.y_test[:300]}
  # Token ids: each sample's value in one of 16 bins of equal counts.
  edges = np.quantile(x_train, np.linspace(0, 1, 17)[1:-1])
  folder = tmp_path_factory.mktemp("sequences")
  paths = {}
  for layout, train, test, junk in (
      ("floats", x_train, x_test, lambda r, shape: 100 * r.normal(size=shape)),
      ("tokens", np.digitize(x_train[..., 0], edges), np.digitize(x_test[..., 0], edges),
       lambda r, shape: np.full(shape, -1))):
    paths[layout] = folder / f"{layout}.npz"
    files.save_npz(paths[layout], _cut(rng, train, lengths["lengths_train"], junk), labels["y_train"],
                   _cut(rng, test, lengths["lengths_test"], junk), labels["y_test"], **lengths)
  return paths


def _preset(name, path, *more):
  """The preset shrunk as tests/test_presets.py shrinks it, on the file ``path`` (None: data from Python)."""
  config, _ = configs.load_preset(name)
  overrides, bar = SHRUNK[name]
  data = [] if path is None else ["data.name=npz", f"data.path={path}"]
  configs.apply_overrides(config, [*data, *overrides, "train.eval_every=0", "train.log_every=50", *more])
  return config, bar


# Each 1-D preset learns from one of the layouts (each layout from three
# families): the lengths and the embedding reach every model the same way.
LAYOUTS = {"mnist1d_gru": "floats", "mnist1d_tcn": "floats", "mnist1d_mlp": "floats",
           "mnist1d_lstm": "tokens", "mnist1d_transformer": "tokens", "mnist1d_resnet": "tokens"}


@pytest.mark.parametrize("name", PRESETS)
def test_the_1d_presets_learn_padded_sequences_with_only_the_file_set(name, sequence_files, tmp_path):
  layout = LAYOUTS[name]
  # On 2 devices as tests/test_presets.py, for 100 steps: they clear these bars with room
  # (accuracy 0.29-0.68 against bars of 0.15-0.2 on an AMD EPYC).
  config, bar = _preset(name, sequence_files[layout], "train.num_devices=2", "train.steps=100")
  state, metrics = supervised.train_and_evaluate(config, tmp_path)
  # The cut-off tails (and the 16 bins of the token ids) cost accuracy: half
  # the bar whole signals must beat, and at least 0.15 (chance is 0.1).
  assert metrics["test_accuracy"] > max(0.15, bar / 2), metrics
  assert metrics["train_loss"] < 2.25  # below log(10), the loss of a uniform guess
  if layout == "tokens":
    assert state.params["embed"]["embedding"].shape == (16, 64)  # the 16 ids the file holds
    run = supervised.load_run(tmp_path)
    ds = load_dataset("npz", sequence_files["tokens"])
    assert run.vocab_size == ds.vocab_size == 16
    logits = run.predict(ds.x_test, lengths=ds.lengths_test)
    np.testing.assert_allclose((logits.argmax(-1) == ds.y_test).mean(), metrics["test_accuracy"], atol=1e-6)


def _padded(ds, extra):
  """``ds`` with ``extra`` more padded steps (zeros) on every sequence."""
  pad = lambda x: np.pad(x, [(0, 0), (0, extra), (0, 0)])  # noqa: E731
  return Dataset.from_arrays(ds.name, pad(ds.x_train), ds.y_train, pad(ds.x_test), ds.y_test,
                             lengths_train=ds.lengths_train, lengths_test=ds.lengths_test)


def test_training_on_data_padded_further_ends_on_the_same_parameters(sequence_files, tmp_path):
  # The TCN: BatchNorm's statistics over the valid steps of a batch split
  # over 8 devices, lengths sharded with it in training and evaluation. No
  # dropout: its masks are drawn in the padded shape, so they would differ.
  ds = load_dataset("npz", sequence_files["floats"])
  config, _ = _preset("mnist1d_tcn", None, "train.steps=8", "optim.warmup_steps=2", "model.dropout=0.0",
                      "model.dilations=(1, 4)")
  runs = [supervised.train_and_evaluate(config, tmp_path / str(extra), data=_padded(ds, extra))
          for extra in (0, 12)]
  (state, metrics), (other_state, other_metrics) = runs
  assert jax.device_count() == 8
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), other_state.params, state.params)
  np.testing.assert_allclose(other_metrics["test_loss"], metrics["test_loss"], rtol=1e-4)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
  """8 float sequences of 50,000 steps: far beyond what attention over every step can hold."""
  path = tmp_path_factory.mktemp("long") / "long.npz"
  rng = np.random.default_rng(0)
  files.save_npz(path, rng.normal(size=(8, 50_000, 1)).astype(np.float32), np.arange(8) % 2,
                 rng.normal(size=(8, 50_000, 1)).astype(np.float32), np.arange(8) % 2,
                 lengths_train=np.full(8, 50_000), lengths_test=np.full(8, 40_000))
  return path


# The Transformer attends over every one of the 50,000 steps (no patches),
# shrunk to one small layer: its (B, heads, T, T) weights alone need 150 GiB.
LONG_TRANSFORMER = ["train.batch_size=8", "model.patch_size=1", "model.max_len=50000", "model.num_layers=1",
                    "model.width=16", "model.num_heads=2"]


def test_a_sequence_too_long_for_memory_is_a_one_line_error_naming_its_length(long_file, capsys):
  sets = [x for s in ["data.name=npz", f"data.path={long_file}", *LONG_TRANSFORMER] for x in ("--set", s)]
  code, _, err = run_cli(capsys, "run", "mnist1d_transformer", "--workdir", str(long_file.parent / "run"), *sets)
  assert_one_line_error(code, err, "sequences of 50000 steps do not fit in memory", "GiB", "data.max_length")
  assert not (long_file.parent / "run").exists()


def test_max_length_crops_a_long_sequence_to_what_fits(long_file):
  config, _ = configs.load_preset("mnist1d_transformer")
  configs.apply_overrides(config, ["data.name=npz", f"data.path={long_file}", *LONG_TRANSFORMER,
                                   "data.max_length=600"])
  task = supervised.SupervisedTask(config)  # checked, as every sequence longer than 512 steps is, and fits
  assert task.dataset.input_shape == (600, 1) and task.dataset.lengths_test.max() == 600


def test_bad_lengths_in_a_file_are_exit_code_2(tmp_path, capsys):
  path = tmp_path / "bad.npz"
  x = np.zeros((4, 6, 1))
  files.save_npz(path, x, [0, 1, 0, 1], x, [0, 1, 0, 1], lengths_train=[6, 7, 1, 2], lengths_test=[1, 1, 1, 1])
  code, _, err = run_cli(capsys, "run", "mnist1d_gru", "--workdir", str(tmp_path / "run"), "--set",
                         "data.name=npz", "--set", f"data.path={path}")
  assert_one_line_error(code, err, str(path), "lengths_train", "beyond the 6 steps", "first 7 at index 1")


def test_the_transformer_preset_takes_a_length_it_was_not_written_for(long_file):
  """mnist1d_transformer sizes its learned positions to the data (model.max_len=0) and completes a last patch
  of 4 samples with zeros: 50 steps are 13 tokens, with nothing set but the file and its length."""
  config, _ = configs.load_preset("mnist1d_transformer")
  configs.apply_overrides(config, ["data.name=npz", f"data.path={long_file}", "data.max_length=50",
                                   "train.batch_size=8"])
  task = supervised.SupervisedTask(config)
  assert task.state.params["trunk"]["positions"].shape == (13, config.model.width)
