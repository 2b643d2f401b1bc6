"""Sequences as a whole dataset: cropped or padded to a length, standardised per sequence.

``data.max_length`` and ``data.normalize=sequence`` of the supervised loop;
both act on a :class:`jaxdl.data.Dataset` of (N, T, F) floats or (N, T)
token ids with their lengths.
"""

import dataclasses

import numpy as np

from jaxdl.data.checks import LENGTH_KEYS, pad_steps, valid_steps
from jaxdl.data.dataset import Dataset
from jaxdl.utils.errors import JaxdlError


def with_steps(ds: Dataset, steps: int) -> Dataset:
  """``ds`` with every sequence cropped or zero-padded to ``steps`` steps (``data.max_length``).

  Cropping keeps the first ``steps`` steps and clips the lengths; padding
  adds zero steps, and lengths if the set had none, so the models never read
  the padding.

  Raises:
    JaxdlError: ``steps`` < 1, or data that is not sequences.
  """
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
    raise JaxdlError(f"data.max_length must be a positive integer (0: the lengths as stored), got {steps!r}")
  if ds.kind not in ("signal", "tokens"):
    raise JaxdlError(f"data.max_length={steps} crops or pads sequences, but {ds.name!r} holds {ds.kind}s of "
                     f"shape {ds.input_shape}")
  if steps == ds.steps:
    return ds
  lengths = {}
  if ds.lengths_train is not None or steps > ds.steps:
    for x, key in LENGTH_KEYS.items():
      stored = getattr(ds, key)
      stored = np.full(len(getattr(ds, x)), ds.steps, np.int32) if stored is None else stored
      lengths[key] = np.minimum(stored, steps).astype(np.int32)
  return dataclasses.replace(ds, x_train=pad_steps(ds.x_train, steps), x_test=pad_steps(ds.x_test, steps),
                             info={**ds.info, "max_length": int(steps)}, **lengths)


# A floor under a feature's standard deviation within one sequence, so a
# feature that barely moves over a few steps is not blown up to unit variance
# (inputs here are standardised over the dataset first: of order 1).
_SEQUENCE_STD_FLOOR = 1e-2


def normalize_sequences(ds: Dataset) -> Dataset:
  """``ds`` with each sequence's features standardised over its own valid steps (``data.normalize=sequence``).

  Per-utterance mean and variance normalisation of speech features:
  subtracting an utterance's mean removes a fixed channel (microphone,
  room) and dividing by its spread removes loudness, along with whatever the
  average itself said. Padded steps become 0.

  Raises:
    JaxdlError: data that is not float sequences (N, T, F).
  """
  if ds.kind != "signal":
    raise JaxdlError(f"data.normalize=sequence standardises float sequences (N, T, F), but {ds.name!r} holds "
                     f"{ds.kind}s of shape {ds.input_shape}")

  def normalize(x, lengths):
    valid = valid_steps(x[..., 0], lengths)[..., None]  # (N, T, 1)
    counts = valid.sum(axis=1, keepdims=True)
    mean = np.where(valid, x, 0).sum(axis=1, keepdims=True) / counts  # (N, 1, F)
    std = np.sqrt(np.where(valid, (x - mean) ** 2, 0).sum(axis=1, keepdims=True) / counts)
    return np.where(valid, (x - mean) / np.maximum(std, _SEQUENCE_STD_FLOOR), 0).astype(np.float32)

  return dataclasses.replace(ds, x_train=normalize(ds.x_train, ds.lengths_train),
                             x_test=normalize(ds.x_test, ds.lengths_test),
                             info={**ds.info, "normalize": "sequence"})
