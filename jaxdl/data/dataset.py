"""The in-memory dataset every loader returns, and ``build``, which makes one from checked arrays.

A :class:`Dataset` is plain host arrays (NumPy), already scaled and in the
layout the models expect (channels last). Putting them on devices, sharding and
batching belong to the training loop.

Sequences may vary in length: padded float sequences (N, T, F) or integer
token ids (N, T), with ``lengths_train`` / ``lengths_test`` (N,) giving each
example's valid steps (the rest is padding, which no model may read).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxdl.data.checks import (KINDS, LENGTH_KEYS, check_all_lengths, check_ids, check_inputs, check_labels,
                               check_range, check_targets, check_tokens, holds_tokens, pad_steps, plural,
                               target_width)
from jaxdl.utils.errors import JaxdlError

_SPLITS = ("x_train", "y_train", "x_test", "y_test")
TASKS = ("classification", "regression")  # integer labels, or real-valued targets (N,) / (N, K)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
  """A classification (or regression) dataset as host arrays.

  ``eq=False``: comparing arrays with ``==`` has no single truth value, so two
  datasets compare (and hash) by identity.

  Attributes:
    name: the name it was loaded under (``digits``, ``npz``, ...).
    x_train: float32 inputs, ``(N, *input_shape)``, channels last.
    y_train: int32 labels in ``[0, num_classes)``, ``(N,)``; or, for a
      regression (``task``), float32 targets ``(N,)`` or ``(N, K)``.
    x_test: float32 inputs, ``(M, *input_shape)``.
    y_test: int32 labels, ``(M,)`` (float32 targets ``(M,)`` or ``(M, K)``).
    num_classes: number of classes (the width of the model's logits); for
      a regression, K (1 for targets ``(N,)``), the width of its output.
    info: small JSON-able facts: source, file hashes, normalisation used.
    lengths_train: int32 valid steps of each padded training sequence,
      ``(N,)``, each in ``[1, T]``; None: every example is whole.
    lengths_test: the same for the test set (given with ``lengths_train``).
    vocab_size: for integer token ids (``x`` int32 ``(N, T)``), the size of
      the vocabulary (every id is below it); 0 for float inputs.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  info: dict = dataclasses.field(default_factory=dict)
  lengths_train: np.ndarray | None = None
  lengths_test: np.ndarray | None = None
  vocab_size: int = 0

  def __post_init__(self):
    # Structural checks only (cheap); value checks live in `from_arrays`.
    for split in _SPLITS:
      array = getattr(self, split)
      want = np.float32 if split.startswith("x") else np.int32
      if split.startswith("x") and self.vocab_size:
        want = np.int32  # token ids
      if split.startswith("y") and self.task == "regression":
        want = np.float32  # real-valued targets
      if not isinstance(array, np.ndarray) or array.dtype != want:
        got = getattr(array, "dtype", type(array).__name__)
        raise JaxdlError(f"Dataset {self.name!r}: {split} must be a {np.dtype(want).name} "
                         f"numpy array, got {got}")
    if self.x_train.ndim - 1 not in KINDS:
      raise JaxdlError(f"Dataset {self.name!r}: x_train must be (N, D), (N, L, C) or "
                       f"(N, H, W, C), got shape {self.x_train.shape}")
    if self.vocab_size and self.x_train.ndim != 2:
      raise JaxdlError(f"Dataset {self.name!r}: token ids must be (N, T), got shape {self.x_train.shape}")
    self._check_lengths_structure()
    if self.x_test.shape[1:] != self.x_train.shape[1:]:
      raise JaxdlError(f"Dataset {self.name!r}: x_test examples have shape {self.x_test.shape[1:]} "
                       f"but x_train examples have shape {self.x_train.shape[1:]}")
    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
      if getattr(self, y).shape[:1] != getattr(self, x).shape[:1]:
        raise JaxdlError(f"Dataset {self.name!r}: {y} has shape {getattr(self, y).shape} "
                         f"but {x} has {len(getattr(self, x))} examples")
    if not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 1:
      raise JaxdlError(f"Dataset {self.name!r}: num_classes must be a positive integer, "
                       f"got {self.num_classes!r}")
    self._check_targets_structure()

  def _check_targets_structure(self) -> None:
    shapes = (self.y_train.shape, self.y_test.shape)
    if self.task == "classification":
      if any(len(shape) != 1 for shape in shapes):
        raise JaxdlError(f"Dataset {self.name!r}: labels must be (N,), got y_train {shapes[0]} and y_test {shapes[1]}")
      return
    if len(shapes[0]) not in (1, 2) or shapes[0][1:] != shapes[1][1:]:
      raise JaxdlError(f"Dataset {self.name!r}: regression targets must be (N,) or (N, K) in both splits, got "
                       f"y_train {shapes[0]} and y_test {shapes[1]}")
    if self.num_classes != self.num_targets:
      raise JaxdlError(f"Dataset {self.name!r}: num_classes (the model's output width) must be the {self.num_targets} "
                       f"target column(s) of y_train, got {self.num_classes}")

  def _check_lengths_structure(self) -> None:
    lengths = [getattr(self, key) for key in LENGTH_KEYS.values()]
    if all(array is None for array in lengths):
      return
    for x, key in LENGTH_KEYS.items():
      array = getattr(self, key)
      if not isinstance(array, np.ndarray) or array.dtype != np.int32 \
          or array.shape != getattr(self, x).shape[:1]:
        got = "None" if array is None else f"{getattr(array, 'dtype', type(array).__name__)} " \
                                           f"{getattr(array, 'shape', '')}"
        raise JaxdlError(f"Dataset {self.name!r}: {key} must be an int32 numpy array of shape "
                         f"{getattr(self, x).shape[:1]} (one length per example of {x}), got {got}")
    if self.kind not in ("signal", "tokens"):
      raise JaxdlError(f"Dataset {self.name!r}: lengths need sequences, (N, T, F) floats or (N, T) "
                       f"token ids; x_train has shape {self.x_train.shape}")

  @property
  def sha256(self) -> str:
    """A digest of the arrays and the class count (and vocabulary): what a run trained and was tested on."""
    arrays = {**{k: getattr(self, k) for k in _SPLITS}, "num_classes": np.asarray(self.num_classes, np.int64)}
    if self.lengths_train is not None:  # absent keys leave the digest of whole-length data as it was
      arrays.update(lengths_train=self.lengths_train, lengths_test=self.lengths_test)
    if self.vocab_size:
      arrays["vocab_size"] = np.asarray(self.vocab_size, np.int64)
    return arrays_sha256(arrays)

  @property
  def task(self) -> str:
    """``"regression"`` for float32 targets ``y``, ``"classification"`` for int32 labels."""
    return "regression" if getattr(self.y_train, "dtype", None) == np.float32 else "classification"

  @property
  def num_targets(self) -> int:
    """K, the columns of regression targets (N, K); 1 for targets (N,) and for labels."""
    return int(self.y_train.shape[1]) if self.y_train.ndim == 2 else 1

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
    """``"image"`` for (H, W, C) examples, ``"signal"`` for (L, C), ``"vector"`` for (D,), ``"tokens"`` for ids (T,)."""
    return "tokens" if self.vocab_size else KINDS[len(self.input_shape)]

  @property
  def steps(self) -> int:
    """T, the padded length of a sequence (signals and tokens); 0 for vectors and images."""
    return int(self.x_train.shape[1]) if self.kind in ("signal", "tokens") else 0

  def __repr__(self) -> str:
    # The default repr would print the arrays.
    extra = (", variable lengths" if self.lengths_train is not None else "") + \
        (f", vocab_size={self.vocab_size}" if self.vocab_size else "")
    return (f"Dataset(name={self.name!r}, kind={self.kind!r}, input_shape={self.input_shape}, "
            f"num_train={self.num_train}, num_test={self.num_test}, "
            f"num_classes={self.num_classes}{extra})")

  @classmethod
  def from_arrays(cls, name: str, x_train: Any, y_train: Any, x_test: Any, y_test: Any, *,
                  num_classes: int = 0, info: dict | None = None, lengths_train: Any = None,
                  lengths_test: Any = None, vocab_size: int = 0, task: str = "classification") -> Dataset:
    """Validates and converts user arrays into a :class:`Dataset`.

    Runs the same checks as the file loaders: non-empty, numeric and finite
    inputs of rank 2 to 4 with matching per-example shapes, integer labels
    (whole-number floats are accepted) in range. Integer inputs ``(N, T)``
    (other than uint8) are token ids, as are any integer ``(N, T)`` with
    ``vocab_size``; with lengths, the two splits may be padded to different
    lengths (the shorter is padded with zeros).

    Args:
      name: a name for messages and ``Dataset.name``.
      x_train: inputs ``(N, D)``, ``(N, L, C)`` or ``(N, H, W, C)``.
      y_train: labels ``(N,)``.
      x_test: inputs with the same per-example shape as ``x_train``.
      y_test: labels ``(M,)``.
      num_classes: the number of classes; 0 infers ``max(y_train) + 1``.
      info: JSON-able facts to keep with the data.
      lengths_train: valid steps of each padded training sequence (N,), or None.
      lengths_test: the same for the test set (with ``lengths_train``).
      vocab_size: the vocabulary of token ids; 0 infers ``max(id) + 1`` over
        the valid steps of both splits.
      task: ``"regression"`` for real-valued targets ``(N,)`` or ``(N, K)``
        (finite; kept float32), instead of integer labels.

    Returns:
      The dataset, inputs float32 (token ids int32) and labels int32.

    Raises:
      JaxdlError: naming the offending array on any failed check.
    """
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    if lengths_train is not None or lengths_test is not None:
      arrays.update(lengths_train=lengths_train, lengths_test=lengths_test)
    keys = (*_SPLITS, *LENGTH_KEYS.values())
    return build(name, arrays, {key: f"array '{key}'" for key in keys},
                 source=f"dataset {name!r}",
                 num_classes=num_classes, info=info or {}, vocab_size=vocab_size, task=task)


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
  """SHA-256 over named arrays: their names, dtypes, shapes and bytes."""
  digest = hashlib.sha256()
  for key in sorted(arrays):
    array = np.ascontiguousarray(arrays[key])
    digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def build(name: str, arrays: Mapping[str, Any], where: Mapping[str, str], *,
          num_classes: int, info: dict, source: str = "", vocab_size: int = 0,
          task: str = "classification") -> Dataset:
  """Checks raw arrays and makes the :class:`Dataset` (shared by all loaders).

  Args:
    name: the dataset's name.
    arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test``, and optionally
      ``lengths_train`` and ``lengths_test`` (both or neither).
    where: for each array, how messages name it (its file, or its name in
      ``source``).
    num_classes: 0 infers ``max(y_train) + 1``.
    info: JSON-able facts.
    source: the one file all four arrays come from, if they do; messages
      start with it.
    vocab_size: for token ids, the vocabulary (every valid id below it); 0
      infers ``max(id) + 1`` over the valid steps of both splits.
    task: ``classification`` (integer labels) or ``regression`` (finite
      real-valued targets (N,) or (N, K), kept float32; ``num_classes``
      must then be 0, and the dataset's is K).

  Returns:
    The dataset.

  Raises:
    JaxdlError: naming the offending array on any failed check.
  """
  if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) \
      or num_classes < 0:
    raise JaxdlError(f"data.num_classes must be a non-negative integer, got {num_classes!r}")
  prefix = f"{source}, " if source else ""
  full = {key: prefix + where[key] for key in where}  # names one array
  pair = f"{source}: " if source else ""  # starts a message naming two
  tokens = holds_tokens(arrays, full, vocab_size)
  x_train = (check_tokens if tokens else check_inputs)(arrays["x_train"], full["x_train"])
  x_test = (check_tokens if tokens else check_inputs)(arrays["x_test"], full["x_test"])
  if task not in TASKS:
    raise JaxdlError(f"task={task!r} is not one of {', '.join(TASKS)} (train.task)")
  check_y = check_targets if task == "regression" else check_labels
  y_train = check_y(arrays["y_train"], full["y_train"])
  y_test = check_y(arrays["y_test"], full["y_test"])
  for x, y, nx, ny in ((x_train, y_train, "x_train", "y_train"),
                       (x_test, y_test, "x_test", "y_test")):
    if len(x) != len(y):
      raise JaxdlError(f"{pair}{where[nx]} has {plural(len(x), 'example')} but {where[ny]} "
                       f"has {plural(len(y), 'label')}")
  lengths = check_all_lengths(arrays, {"x_train": x_train, "x_test": x_test}, where, full, pair)
  if lengths:  # padded sequences: the splits may be padded to different lengths
    x_train, x_test = (pad_steps(x, max(x_train.shape[1], x_test.shape[1])) for x in (x_train, x_test))
  if x_train.shape[1:] != x_test.shape[1:]:
    raise JaxdlError(f"{pair}{where['x_train']} examples have shape {x_train.shape[1:]} but "
                     f"{where['x_test']} examples have shape {x_test.shape[1:]}")
  if tokens:
    vocab_size = check_ids({"x_train": x_train, "x_test": x_test}, lengths, full, vocab_size)
  if task == "regression":
    num_classes = target_width(y_train, y_test, where, pair, num_classes)
  else:
    inferred = not num_classes
    num_classes = int(num_classes) or int(y_train.max()) + 1
    check_range(y_train, full["y_train"], num_classes, inferred)
    check_range(y_test, full["y_test"], num_classes, inferred)
  return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                 num_classes=num_classes, info=info, lengths_train=lengths.get("lengths_train"),
                 lengths_test=lengths.get("lengths_test"), vocab_size=vocab_size if tokens else 0)
