"""The checks ``jaxdl.data.dataset.build`` runs on raw arrays, each naming the array it refuses.

Inputs must be numeric, labels integers in range, targets finite; token ids
integers below the vocabulary on their valid steps; lengths (N,) integers in
[1, T]. Also the two helpers of padded sequences: ``pad_steps`` and
``valid_steps``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np

from jaxdl.utils.errors import JaxdlError

# Per-example rank -> what the models call it: (D,), (L, C), (H, W, C).
KINDS = {1: "vector", 2: "signal", 3: "image"}
# Each split's inputs -> the array of its examples' lengths (padded sequences).
LENGTH_KEYS = {"x_train": "lengths_train", "x_test": "lengths_test"}


def fail(where: str, problem: str) -> NoReturn:
  raise JaxdlError(f"{where}: {problem}")


def plural(count: int, noun: str) -> str:
  return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def check_inputs(x: Any, where: str) -> np.ndarray:
  x = np.asarray(x)
  if x.dtype.kind not in "biuf":
    fail(where, f"inputs must be numeric, got dtype {x.dtype}")
  if x.ndim - 1 not in KINDS:
    fail(where, f"must be (N, D), (N, L, C) or (N, H, W, C), got shape {x.shape}")
  if x.size == 0:
    fail(where, f"empty (shape {x.shape})")
  converted = np.asarray(x, dtype=np.float32)
  if x.dtype.kind == "f":
    # Checked after the cast: float64 values beyond float32's range become inf.
    bad = ~np.isfinite(converted)
    if bad.any():
      rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
      fail(where, f"{plural(int(bad.sum()), 'non-finite value')} (NaN or inf) in "
                   f"{plural(len(rows), 'example')}, first in example {int(rows[0])}")
  return converted


def check_labels(y: Any, where: str) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1:
    fail(where, f"labels must be a 1-D array (N,), got shape {y.shape}")
  if y.size == 0:
    fail(where, "empty (shape (0,))")
  if y.dtype.kind == "f":
    whole = np.isfinite(y) & (y == np.round(y))
    if not whole.all():
      i = int(np.flatnonzero(~whole)[0])
      fail(where, f"labels must be integers, found {y[i].item()} at index {i} "
                   f"({plural(int((~whole).sum()), 'non-integer label')}); for real-valued targets "
                   f"use task=regression (train.task in a config)")
  elif y.dtype.kind not in "biu":
    fail(where, f"labels must be integers, got dtype {y.dtype}")
  negative = y < 0
  if negative.any():
    i = int(np.flatnonzero(negative)[0])
    fail(where, f"{plural(int(negative.sum()), 'negative label')}, first {y[i].item()} "
                 f"at index {i}")
  if y.max() >= np.iinfo(np.int32).max:
    fail(where, f"label {y.max().item()} does not fit in int32")
  return y.astype(np.int32)


# ------------------------------------------------------------------ sequences --


def holds_tokens(arrays: Mapping[str, Any], full: Mapping[str, str], vocab_size: Any) -> bool:
  """Whether the inputs are token ids: integer (N, T), not uint8 (pixel rows) unless a vocabulary is given."""
  if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool) or vocab_size < 0:
    fail(full["x_train"], f"vocab_size must be a non-negative integer, got {vocab_size!r}")

  def ids(x):
    x = np.asarray(x)
    return x.ndim == 2 and x.dtype.kind in "iu" and (bool(vocab_size) or x.dtype != np.uint8)

  tokens = [ids(arrays[key]) for key in ("x_train", "x_test")]
  if tokens[0] != tokens[1]:
    kinds = [f"{key} is {'token ids' if t else 'not token ids'} ({np.asarray(arrays[key]).dtype} "
             f"{np.asarray(arrays[key]).shape})" for key, t in zip(("x_train", "x_test"), tokens)]
    fail(full["x_train"], f"both splits must be integer token ids (N, T) or neither: {'; '.join(kinds)}")
  if vocab_size and not tokens[0]:
    fail(full["x_train"], f"vocab_size={vocab_size} is given, but the inputs are not integer token ids "
                           f"(N, T): {np.asarray(arrays['x_train']).dtype} {np.asarray(arrays['x_train']).shape}")
  return tokens[0]


def check_tokens(x: Any, where: str) -> np.ndarray:
  x = np.asarray(x)
  if x.size == 0:
    fail(where, f"empty (shape {x.shape})")
  if x.min() < np.iinfo(np.int32).min or x.max() > np.iinfo(np.int32).max:
    fail(where, f"token id {x.max().item() if x.max() > 0 else x.min().item()} does not fit in int32")
  return x.astype(np.int32)


def check_lengths(lengths: Any, x: np.ndarray, where: str, x_where: str) -> np.ndarray:
  lengths = np.asarray(lengths)
  if lengths.dtype.kind not in "iu":
    fail(where, f"lengths must be integers, got dtype {lengths.dtype}")
  if lengths.shape != x.shape[:1]:
    fail(where, f"lengths must be one per example of {x_where} (shape {x.shape[:1]}), "
                 f"got shape {lengths.shape}")
  steps = x.shape[1]
  for bad, what in ((lengths < 1, "below 1"), (lengths > steps, f"beyond the {steps} steps of {x_where}")):
    if bad.any():
      i = int(np.flatnonzero(bad)[0])
      fail(where, f"{plural(int(bad.sum()), 'length')} {what}, first {lengths[i].item()} at index {i}")
  return lengths.astype(np.int32)


def check_all_lengths(arrays: Mapping[str, Any], xs: Mapping[str, np.ndarray], where: Mapping[str, str],
                       full: Mapping[str, str], pair: str) -> dict[str, np.ndarray]:
  """``lengths_train`` and ``lengths_test`` checked against their inputs, or {} when there are none."""
  given = {key: arrays.get(key) for key in LENGTH_KEYS.values()}
  if all(value is None for value in given.values()):
    return {}
  missing = [key for key, value in given.items() if value is None]
  if missing:
    other = next(key for key in given if key not in missing)
    raise JaxdlError(f"{pair}{where.get(other, other)} is given without {missing[0]}: padded sequences "
                     f"need the lengths of both splits")
  for x, key in LENGTH_KEYS.items():
    if xs[x].ndim not in (2, 3) or (xs[x].ndim == 2 and xs[x].dtype != np.int32):
      fail(full[key], f"lengths need sequences, (N, T, F) floats or (N, T) integer token ids; "
                       f"{where[x]} has shape {xs[x].shape}")
  return {key: check_lengths(given[key], xs[x], full[key], where[x]) for x, key in LENGTH_KEYS.items()}


def pad_steps(x: np.ndarray, steps: int) -> np.ndarray:
  """``x`` (N, T, ...) cropped or zero-padded along its step axis to ``steps``."""
  if x.shape[1] >= steps:
    return x[:, :steps]
  return np.pad(x, [(0, 0), (0, steps - x.shape[1])] + [(0, 0)] * (x.ndim - 2))


def valid_steps(x: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
  """True at the valid steps of (N, T) ``x`` (everywhere without lengths)."""
  if lengths is None:
    return np.ones(x.shape, bool)
  return np.arange(x.shape[1])[None, :] < lengths[:, None]


def check_ids(xs: dict[str, np.ndarray], lengths: Mapping[str, np.ndarray], full: Mapping[str, str],
               vocab_size: int) -> int:
  """Checks the ids at valid steps (in ``[0, vocab_size)``), zeroes those at padded ones, returns the vocabulary."""
  valid = {x: valid_steps(ids, lengths.get(LENGTH_KEYS[x])) for x, ids in xs.items()}
  for x, ids in xs.items():
    negative = valid[x] & (ids < 0)
    if negative.any():
      i, t = (int(v[0]) for v in np.nonzero(negative))
      fail(full[x], f"{plural(int(negative.sum()), 'negative token id')}, first {ids[i, t]} at example {i}, "
                     f"step {t}")
  inferred = int(max(np.where(valid[x], ids, 0).max() for x, ids in xs.items())) + 1
  for x, ids in xs.items():
    beyond = valid[x] & (ids >= vocab_size) if vocab_size else np.zeros_like(valid[x])
    if beyond.any():
      i, t = (int(v[0]) for v in np.nonzero(beyond))
      fail(full[x], f"{plural(int(beyond.sum()), 'token id')} outside the vocabulary (vocab_size={vocab_size}), "
                     f"first {ids[i, t]} at example {i}, step {t}")
    ids[~valid[x]] = 0  # padding: any id the file holds there is never read
  return int(vocab_size) or inferred


def check_targets(y: Any, where: str) -> np.ndarray:
  """Regression targets: numeric and finite, (N,) or (N, K); float32."""
  y = np.asarray(y)
  if y.dtype.kind not in "biuf":
    fail(where, f"regression targets must be numeric, got dtype {y.dtype}")
  if y.ndim not in (1, 2) or y.size == 0:
    fail(where, f"regression targets must be a non-empty (N,) or (N, K) array, got shape {y.shape}")
  converted = y.astype(np.float32)
  bad = ~np.isfinite(converted)  # after the cast: float64 beyond float32's range becomes inf
  if bad.any():
    i = int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])
    fail(where, f"{plural(int(bad.sum()), 'non-finite target')} (NaN or inf), first at index {i} "
                 f"({y[i].tolist()})")
  return converted


def check_range(y: np.ndarray, where: str, num_classes: int, inferred: bool) -> None:
  beyond = y >= num_classes
  if beyond.any():
    i = int(np.flatnonzero(beyond)[0])
    if inferred:
      fail(where, f"label {y[i]} at index {i} is beyond the classes in y_train "
                   f"(0..{num_classes - 1}); set data.num_classes")
    fail(where, f"{plural(int(beyond.sum()), 'label')} out of range for "
                 f"data.num_classes={num_classes}, first {y[i]} at index {i}")


def target_width(y_train: np.ndarray, y_test: np.ndarray, where: Mapping[str, str], pair: str,
                  num_classes: int) -> int:
  """K, the columns of regression targets (1 for (N,)): the same in both splits."""
  if num_classes:
    raise JaxdlError(f"data.num_classes={num_classes} is for classification; a regression's output width "
                     f"is the columns of y_train: leave data.num_classes=0")
  if y_train.shape[1:] != y_test.shape[1:]:
    raise JaxdlError(f"{pair}{where['y_train']} targets have shape {y_train.shape[1:]} per example but "
                     f"{where['y_test']} has {y_test.shape[1:]}")
  return int(y_train.shape[1]) if y_train.ndim == 2 else 1
