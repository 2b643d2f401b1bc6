"""Variable-length sequences and token ids in datasets: the three input layouts, lengths, and their errors."""

import dataclasses

import numpy as np
import pytest

from jaxdl.data import Dataset, files, load_dataset, with_steps
from jaxdl.data.dataset import arrays_sha256
from jaxdl.data.subsets import labels_per_class, select_classes
from jaxdl.utils.errors import JaxdlError


def _padded(rng, n, steps, features=2, low=1):
  """Float sequences (n, steps, features), their lengths, and junk (not zeros) at the padded steps."""
  lengths = rng.integers(low, steps + 1, n)
  x = rng.normal(size=(n, steps, features))
  return x, lengths


def _write(path, **arrays):
  np.savez(path, **arrays)
  return path


@pytest.fixture
def sequences(tmp_path):
  rng = np.random.default_rng(0)
  x_train, l_train = _padded(rng, 20, 9)
  x_test, l_test = _padded(rng, 10, 12)  # padded further than the training split
  arrays = {"x_train": x_train, "y_train": np.arange(20) % 3, "x_test": x_test, "y_test": np.arange(10) % 3,
            "lengths_train": l_train, "lengths_test": l_test}
  return arrays, _write(tmp_path / "seq.npz", **arrays)


def test_padded_float_sequences_keep_their_lengths_and_share_one_padded_length(sequences):
  arrays, path = sequences
  ds = load_dataset("npz", path)
  assert ds.kind == "signal" and ds.input_shape == (12, 2) and ds.steps == 12 and ds.vocab_size == 0
  assert ds.lengths_train.dtype == np.int32 and ds.lengths_test.dtype == np.int32
  np.testing.assert_array_equal(ds.lengths_train, arrays["lengths_train"])
  np.testing.assert_array_equal(ds.x_train[:, :9], arrays["x_train"].astype(np.float32))
  assert not ds.x_train[:, 9:].any()  # the three steps added to match the test split are zeros
  np.testing.assert_array_equal(ds.x_test, arrays["x_test"].astype(np.float32))
  assert "variable lengths" in repr(ds)


def test_lengths_enter_the_digest_and_whole_length_data_keeps_its_old_one(sequences):
  arrays, path = sequences
  ds = load_dataset("npz", path)
  other = dict(arrays, lengths_train=np.where(arrays["lengths_train"] > 1, arrays["lengths_train"] - 1, 1))
  assert load_dataset("npz", _write(path.parent / "other.npz", **other)).sha256 != ds.sha256
  whole = Dataset.from_arrays("w", np.ones((4, 3, 1)), [0, 1, 0, 1], np.ones((2, 3, 1)), [1, 0])
  assert whole.sha256 == arrays_sha256({**{k: getattr(whole, k) for k in ("x_train", "y_train", "x_test", "y_test")},
                                        "num_classes": np.asarray(2, np.int64)})


def test_integer_inputs_are_token_ids_with_the_vocabulary_read_from_the_data(tmp_path):
  rng = np.random.default_rng(1)
  x_train, x_test = rng.integers(0, 40, (20, 7)), rng.integers(0, 40, (10, 7))
  x_test[3, 2] = 57  # only the test split holds the largest id: the embedding still needs its row
  y = np.arange(30) % 3
  ds = load_dataset("npz", _write(tmp_path / "t.npz", x_train=x_train, y_train=y[:20], x_test=x_test, y_test=y[20:]))
  assert ds.kind == "tokens" and ds.input_shape == (7,) and ds.x_train.dtype == np.int32
  assert ds.vocab_size == 58 and ds.lengths_train is None
  np.testing.assert_array_equal(ds.x_test, x_test)
  explicit = load_dataset("npz", _write(tmp_path / "v.npz", x_train=x_train, y_train=y[:20], x_test=x_test,
                                        y_test=y[20:], vocab_size=np.int64(100)))
  assert explicit.vocab_size == 100 and explicit.sha256 != ds.sha256
  # uint8 (N, D) stays pixels, divided by 255, unless a vocabulary says they are ids.
  pixels = rng.integers(0, 256, (20, 7)).astype(np.uint8)
  as_pixels = load_dataset("npz", _write(tmp_path / "p.npz", x_train=pixels, y_train=y[:20], x_test=pixels[:10],
                                         y_test=y[20:]))
  assert as_pixels.kind == "vector" and as_pixels.x_train.max() <= 1.0
  as_ids = load_dataset("npz", _write(tmp_path / "b.npz", x_train=pixels, y_train=y[:20], x_test=pixels[:10],
                                      y_test=y[20:], vocab_size=np.int64(256)))
  assert as_ids.kind == "tokens" and as_ids.vocab_size == 256


def test_ids_at_padded_steps_are_never_checked_and_read_as_zero(tmp_path):
  x = np.full((4, 6), -1)  # -1: a common padding marker, outside any vocabulary
  x[:, :3] = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 1, 1]]
  lengths = np.array([3, 3, 2, 1])
  ds = Dataset.from_arrays("t", x, [0, 1, 0, 1], x, [0, 1, 0, 1], lengths_train=lengths, lengths_test=lengths)
  assert ds.vocab_size == 9  # the 9 of example 2 sits past its length: not part of the vocabulary
  np.testing.assert_array_equal(ds.x_train[2], [7, 8, 0, 0, 0, 0])
  np.testing.assert_array_equal(ds.x_train[3], [1, 0, 0, 0, 0, 0])


def _arrays(**edits):
  rng = np.random.default_rng(2)
  x, lengths = _padded(rng, 20, 8)
  arrays = {"x_train": x, "y_train": np.arange(20) % 3, "x_test": x[:10], "y_test": np.arange(10) % 3,
            "lengths_train": lengths, "lengths_test": lengths[:10]}
  arrays.update(edits)
  return {k: v for k, v in arrays.items() if v is not None}


def _tokens(**edits):
  ids = np.random.default_rng(3).integers(0, 30, (20, 8))
  return _arrays(**{"x_train": ids, "x_test": ids[:10], **edits})


ERRORS = {
    "lengths that do not match x": (_arrays(lengths_train=np.full(19, 3)),
                                    ["lengths_train", "one per example", "(20,)", "(19,)"]),
    "a length beyond T": (_arrays(lengths_test=np.r_[np.full(9, 3), 9]),
                          ["lengths_test", "1 length beyond the 8 steps", "first 9 at index 9"]),
    "a length below 1": (_arrays(lengths_train=np.r_[4, 0, -2, np.full(17, 3)]),
                         ["lengths_train", "2 lengths below 1", "first 0 at index 1"]),
    "float lengths": (_arrays(lengths_train=np.full(20, 3.0)), ["lengths_train", "integers", "float64"]),
    "one split's lengths": (_arrays(lengths_test=None), ["lengths_train", "without lengths_test"]),
    "lengths of images": (_arrays(x_train=np.zeros((20, 4, 4, 1)), x_test=np.zeros((10, 4, 4, 1))),
                          ["lengths_train", "need sequences", "(20, 4, 4, 1)"]),
    "a negative token id": (_tokens(x_test=np.r_[np.ones((9, 8), int), [[1, 2, -5, 1, 1, 1, 1, 1]]],
                                    lengths_test=np.full(10, 8)),
                            ["x_test", "1 negative token id", "first -5 at example 9, step 2"]),
    "an id outside vocab_size": (_tokens(vocab_size=np.int64(20)),
                                 ["x_train", "outside the vocabulary (vocab_size=20)", "token id"]),
    "a vocab_size that is not a positive scalar": (_tokens(vocab_size=np.array([30])),
                                                   ["vocab_size", "positive integer scalar"]),
    "token ids in one split only": (_arrays(x_train=np.ones((20, 8), int), lengths_train=None, lengths_test=None),
                                    ["token ids", "x_test is not token ids"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_sequences_are_one_line_errors_naming_the_file_and_array(tmp_path, case):
  arrays, needles = ERRORS[case]
  path = _write(tmp_path / "bad.npz", **arrays)
  with pytest.raises(JaxdlError) as excinfo:
    load_dataset("npz", path)
  message = str(excinfo.value)
  assert "\n" not in message and str(path) in message, message
  for needle in needles:
    assert needle in message, (needle, message)


def test_the_same_checks_guard_arrays_from_python():
  with pytest.raises(JaxdlError, match=r"dataset 'mine', array 'lengths_train': 1 length beyond the 3 steps"):
    Dataset.from_arrays("mine", np.ones((2, 3, 1)), [0, 1], np.ones((1, 3, 1)), [0],
                        lengths_train=[3, 4], lengths_test=[1])
  with pytest.raises(JaxdlError, match=r"lengths_test must be an int32 numpy array of shape \(1,\)"):
    Dataset("d", np.ones((2, 3, 1), np.float32), np.zeros(2, np.int32), np.ones((1, 3, 1), np.float32),
            np.zeros(1, np.int32), 2, lengths_train=np.ones(2, np.int32))


def test_save_npz_writes_the_optional_arrays(tmp_path):
  rng = np.random.default_rng(4)
  ids = rng.integers(0, 9, (6, 5))
  lengths = np.array([5, 1, 2, 3, 4, 5])
  files.save_npz(tmp_path / "s.npz", ids, np.arange(6) % 2, ids, np.arange(6) % 2, lengths_train=lengths,
                 lengths_test=lengths, vocab_size=12)
  ds = load_dataset("npz", tmp_path / "s.npz")
  assert ds.vocab_size == 12
  np.testing.assert_array_equal(ds.lengths_test, lengths)
  with pytest.raises(ValueError, match="lenghts"):
    files.save_npz(tmp_path / "t.npz", ids, [0] * 6, ids, [0] * 6, lenghts_train=lengths)


def test_max_length_crops_or_pads_every_sequence(sequences):
  _, path = sequences
  ds = load_dataset("npz", path)
  short = with_steps(ds, 5)
  assert short.input_shape == (5, 2) and short.info["max_length"] == 5
  np.testing.assert_array_equal(short.lengths_train, np.minimum(ds.lengths_train, 5))
  np.testing.assert_array_equal(short.x_test, ds.x_test[:, :5])
  long = with_steps(ds, 20)
  assert long.input_shape == (20, 2) and not long.x_train[:, 12:].any()
  np.testing.assert_array_equal(long.lengths_test, ds.lengths_test)
  # Whole-length signals padded gain the lengths that hide the padding; cropped, they stay whole.
  whole = Dataset.from_arrays("w", np.ones((4, 6, 1)), [0, 1, 0, 1], np.ones((2, 6, 1)), [1, 0])
  np.testing.assert_array_equal(with_steps(whole, 9).lengths_train, [6, 6, 6, 6])
  assert with_steps(whole, 4).lengths_train is None
  with pytest.raises(JaxdlError, match=r"data.max_length=4 crops or pads sequences.*image"):
    with_steps(Dataset.from_arrays("i", np.ones((2, 3, 3, 1)), [0, 1], np.ones((1, 3, 3, 1)), [0]), 4)
  with pytest.raises(JaxdlError, match="data.max_length must be a positive integer"):
    with_steps(ds, -3)


def test_subsets_keep_the_lengths_of_the_examples_they_keep(sequences):
  _, path = sequences
  ds = load_dataset("npz", path)
  part = select_classes(ds, (2, 0))
  keep = np.isin(ds.y_train, (2, 0))
  np.testing.assert_array_equal(part.lengths_train, ds.lengths_train[keep])
  assert len(part.lengths_test) == part.num_test
  few = labels_per_class(ds, 2, seed=0)
  assert len(few.lengths_train) == few.num_train == 6
  tokens = dataclasses.replace(ds, x_train=np.zeros((20, 12), np.int32), x_test=np.zeros((10, 12), np.int32),
                               vocab_size=4)
  assert select_classes(tokens, (1,)).vocab_size == 4
