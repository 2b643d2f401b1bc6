"""The in-memory dataset every loader returns, and the checks that build it.

A :class:`Dataset` is plain host arrays (NumPy), already scaled and in the
layout the models expect (channels last). Putting them on devices, sharding and
batching belong to the training loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np

from jaxdl.utils.errors import JaxdlError

# Per-example rank -> what the models call it: (D,), (L, C), (H, W, C).
_KINDS = {1: "vector", 2: "signal", 3: "image"}
_SPLITS = ("x_train", "y_train", "x_test", "y_test")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
  """A classification dataset as host arrays.

  ``eq=False``: comparing arrays with ``==`` has no single truth value, so two
  datasets compare (and hash) by identity.

  Attributes:
    name: the name it was loaded under (``digits``, ``npz``, ...).
    x_train: float32 inputs, ``(N, *input_shape)``, channels last.
    y_train: int32 labels in ``[0, num_classes)``, ``(N,)``.
    x_test: float32 inputs, ``(M, *input_shape)``.
    y_test: int32 labels, ``(M,)``.
    num_classes: number of classes (the width of the model's logits).
    info: small JSON-able facts: source, file hashes, normalisation used.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  info: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    # Structural checks only (cheap); value checks live in `from_arrays`.
    for split in _SPLITS:
      array = getattr(self, split)
      want = np.float32 if split.startswith("x") else np.int32
      if not isinstance(array, np.ndarray) or array.dtype != want:
        got = getattr(array, "dtype", type(array).__name__)
        raise JaxdlError(f"Dataset {self.name!r}: {split} must be a {np.dtype(want).name} "
                         f"numpy array, got {got}")
    if self.x_train.ndim - 1 not in _KINDS:
      raise JaxdlError(f"Dataset {self.name!r}: x_train must be (N, D), (N, L, C) or "
                       f"(N, H, W, C), got shape {self.x_train.shape}")
    if self.x_test.shape[1:] != self.x_train.shape[1:]:
      raise JaxdlError(f"Dataset {self.name!r}: x_test examples have shape {self.x_test.shape[1:]} "
                       f"but x_train examples have shape {self.x_train.shape[1:]}")
    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
      if getattr(self, y).shape != getattr(self, x).shape[:1]:
        raise JaxdlError(f"Dataset {self.name!r}: {y} has shape {getattr(self, y).shape} "
                         f"but {x} has {len(getattr(self, x))} examples")
    if not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 1:
      raise JaxdlError(f"Dataset {self.name!r}: num_classes must be a positive integer, "
                       f"got {self.num_classes!r}")

  @property
  def sha256(self) -> str:
    """A digest of the four arrays and the class count: what a run trained and was tested on."""
    return arrays_sha256({**{k: getattr(self, k) for k in _SPLITS},
                          "num_classes": np.asarray(self.num_classes, np.int64)})

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example, e.g. ``(8, 8, 1)``."""
    return tuple(self.x_train.shape[1:])

  @property
  def num_train(self) -> int:
    return int(self.x_train.shape[0])

  @property
  def num_test(self) -> int:
    return int(self.x_test.shape[0])

  @property
  def kind(self) -> str:
    """``"image"`` for (H, W, C) examples, ``"signal"`` for (L, C), ``"vector"`` for (D,)."""
    return _KINDS[len(self.input_shape)]

  def __repr__(self) -> str:
    # The default repr would print the arrays.
    return (f"Dataset(name={self.name!r}, kind={self.kind!r}, input_shape={self.input_shape}, "
            f"num_train={self.num_train}, num_test={self.num_test}, "
            f"num_classes={self.num_classes})")

  @classmethod
  def from_arrays(cls, name: str, x_train: Any, y_train: Any, x_test: Any, y_test: Any, *,
                  num_classes: int = 0, info: dict | None = None) -> Dataset:
    """Validates and converts user arrays into a :class:`Dataset`.

    Runs the same checks as the file loaders: non-empty, numeric and finite
    inputs of rank 2 to 4 with matching per-example shapes, integer labels
    (whole-number floats are accepted) in range.

    Args:
      name: a name for messages and ``Dataset.name``.
      x_train: inputs ``(N, D)``, ``(N, L, C)`` or ``(N, H, W, C)``.
      y_train: labels ``(N,)``.
      x_test: inputs with the same per-example shape as ``x_train``.
      y_test: labels ``(M,)``.
      num_classes: the number of classes; 0 infers ``max(y_train) + 1``.
      info: JSON-able facts to keep with the data.

    Returns:
      The dataset, inputs float32 and labels int32.

    Raises:
      JaxdlError: naming the offending array on any failed check.
    """
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return build(name, arrays, {key: f"array '{key}'" for key in _SPLITS},
                 source=f"dataset {name!r}",
                 num_classes=num_classes, info=info or {})


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
  """SHA-256 over named arrays: their names, dtypes, shapes and bytes."""
  digest = hashlib.sha256()
  for key in sorted(arrays):
    array = np.ascontiguousarray(arrays[key])
    digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _fail(where: str, problem: str) -> NoReturn:
  raise JaxdlError(f"{where}: {problem}")


def _plural(count: int, noun: str) -> str:
  return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _check_inputs(x: Any, where: str) -> np.ndarray:
  x = np.asarray(x)
  if x.dtype.kind not in "biuf":
    _fail(where, f"inputs must be numeric, got dtype {x.dtype}")
  if x.ndim - 1 not in _KINDS:
    _fail(where, f"must be (N, D), (N, L, C) or (N, H, W, C), got shape {x.shape}")
  if x.size == 0:
    _fail(where, f"empty (shape {x.shape})")
  converted = np.asarray(x, dtype=np.float32)
  if x.dtype.kind == "f":
    # Checked after the cast: float64 values beyond float32's range become inf.
    bad = ~np.isfinite(converted)
    if bad.any():
      rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
      _fail(where, f"{_plural(int(bad.sum()), 'non-finite value')} (NaN or inf) in "
                   f"{_plural(len(rows), 'example')}, first in example {int(rows[0])}")
  return converted


def _check_labels(y: Any, where: str) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1:
    _fail(where, f"labels must be a 1-D array (N,), got shape {y.shape}")
  if y.size == 0:
    _fail(where, "empty (shape (0,))")
  if y.dtype.kind == "f":
    whole = np.isfinite(y) & (y == np.round(y))
    if not whole.all():
      i = int(np.flatnonzero(~whole)[0])
      _fail(where, f"labels must be integers, found {y[i].item()} at index {i} "
                   f"({_plural(int((~whole).sum()), 'non-integer label')})")
  elif y.dtype.kind not in "biu":
    _fail(where, f"labels must be integers, got dtype {y.dtype}")
  negative = y < 0
  if negative.any():
    i = int(np.flatnonzero(negative)[0])
    _fail(where, f"{_plural(int(negative.sum()), 'negative label')}, first {y[i].item()} "
                 f"at index {i}")
  if y.max() >= np.iinfo(np.int32).max:
    _fail(where, f"label {y.max().item()} does not fit in int32")
  return y.astype(np.int32)


def _check_range(y: np.ndarray, where: str, num_classes: int, inferred: bool) -> None:
  beyond = y >= num_classes
  if beyond.any():
    i = int(np.flatnonzero(beyond)[0])
    if inferred:
      _fail(where, f"label {y[i]} at index {i} is beyond the classes in y_train "
                   f"(0..{num_classes - 1}); set data.num_classes")
    _fail(where, f"{_plural(int(beyond.sum()), 'label')} out of range for "
                 f"data.num_classes={num_classes}, first {y[i]} at index {i}")


def build(name: str, arrays: Mapping[str, Any], where: Mapping[str, str], *,
          num_classes: int, info: dict, source: str = "") -> Dataset:
  """Checks raw arrays and makes the :class:`Dataset` (shared by all loaders).

  Args:
    name: the dataset's name.
    arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test``.
    where: for each array, how messages name it (its file, or its name in
      ``source``).
    num_classes: 0 infers ``max(y_train) + 1``.
    info: JSON-able facts.
    source: the one file all four arrays come from, if they do; messages
      start with it.

  Returns:
    The dataset.

  Raises:
    JaxdlError: naming the offending array on any failed check.
  """
  if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) \
      or num_classes < 0:
    raise JaxdlError(f"data.num_classes must be a non-negative integer, got {num_classes!r}")
  prefix = f"{source}, " if source else ""
  full = {key: prefix + where[key] for key in _SPLITS}  # names one array
  pair = f"{source}: " if source else ""  # starts a message naming two
  x_train = _check_inputs(arrays["x_train"], full["x_train"])
  x_test = _check_inputs(arrays["x_test"], full["x_test"])
  y_train = _check_labels(arrays["y_train"], full["y_train"])
  y_test = _check_labels(arrays["y_test"], full["y_test"])
  for x, y, nx, ny in ((x_train, y_train, "x_train", "y_train"),
                       (x_test, y_test, "x_test", "y_test")):
    if len(x) != len(y):
      raise JaxdlError(f"{pair}{where[nx]} has {_plural(len(x), 'example')} but {where[ny]} "
                       f"has {_plural(len(y), 'label')}")
  if x_train.shape[1:] != x_test.shape[1:]:
    raise JaxdlError(f"{pair}{where['x_train']} examples have shape {x_train.shape[1:]} but "
                     f"{where['x_test']} examples have shape {x_test.shape[1:]}")
  inferred = not num_classes
  num_classes = int(num_classes) or int(y_train.max()) + 1
  _check_range(y_train, full["y_train"], num_classes, inferred)
  _check_range(y_test, full["y_test"], num_classes, inferred)
  return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                 num_classes=num_classes, info=info)
