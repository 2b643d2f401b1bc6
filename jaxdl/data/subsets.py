"""Parts of a dataset: some of its classes, or a few labelled examples per class.

    first = select_classes(ds, (0, 1, 2, 3, 4))            # relabelled 0..4
    few = labels_per_class(select_classes(ds, range(5, 10)), 10, seed=0)

Transfer learning pretrains on some classes and fine-tunes on others with few
labels; a linear probe with 10 labels per class measures a representation.
Both pick their examples here, at a fixed seed, so every run of a preset sees
the same subset.
"""

from collections.abc import Iterable

import numpy as np

from jaxdl.data.dataset import Dataset
from jaxdl.utils.errors import JaxdlError


def select_classes(ds: Dataset, classes: Iterable[int], *, relabel: bool = True) -> Dataset:
  """The examples of ``classes`` only, in both splits.

  Args:
    ds: the dataset.
    classes: the labels to keep, each in ``[0, ds.num_classes)``, no repeats.
    relabel: map the kept labels to ``0..len(classes)-1`` in the order
      given (and set ``num_classes`` to that count); else keep them as they are.

  Raises:
    JaxdlError: a class the data does not have, or repeated.
  """
  classes = [int(c) for c in classes]
  bad = [c for c in classes if not 0 <= c < ds.num_classes]
  if bad or not classes or len(set(classes)) != len(classes):
    raise JaxdlError(f"classes {tuple(classes)} must be distinct labels of {ds.name!r}, "
                     f"in [0, {ds.num_classes})")
  lookup = np.full(ds.num_classes, -1, np.int32)
  lookup[classes] = np.arange(len(classes)) if relabel else classes

  def part(x, y):
    keep = np.isin(y, classes)
    return x[keep], lookup[y[keep]].astype(np.int32)

  x_train, y_train = part(ds.x_train, ds.y_train)
  x_test, y_test = part(ds.x_test, ds.y_test)
  info = {**ds.info, "classes": classes, "relabelled": relabel}
  lengths = {}
  if ds.lengths_train is not None:  # padded sequences keep their lengths
    lengths = {"lengths_train": ds.lengths_train[np.isin(ds.y_train, classes)],
               "lengths_test": ds.lengths_test[np.isin(ds.y_test, classes)]}
  return Dataset(f"{ds.name}[{','.join(map(str, classes))}]", x_train, y_train, x_test, y_test,
                 len(classes) if relabel else ds.num_classes, info, vocab_size=ds.vocab_size, **lengths)


def per_class_indices(y: np.ndarray, k: int, num_classes: int, *, seed: int) -> np.ndarray:
  """Indices of ``k`` examples of each class in ``y``, drawn without replacement at ``seed``, sorted.

  Raises:
    JaxdlError: ``k`` < 1, or a class with fewer than ``k`` examples.
  """
  if k < 1:
    raise JaxdlError(f"labels per class must be >= 1, got {k}")
  rng = np.random.default_rng(seed)
  picked = []
  for c in range(num_classes):
    where = np.flatnonzero(y == c)
    if len(where) < k:
      raise JaxdlError(f"class {c} has {len(where)} training examples, fewer than the {k} asked for")
    picked.append(rng.choice(where, k, replace=False))
  return np.sort(np.concatenate(picked))


def labels_per_class(ds: Dataset, k: int, *, seed: int = 0) -> Dataset:
  """The same test set, and a training set of ``k`` examples per class (``k * num_classes`` in all)."""
  idx = per_class_indices(ds.y_train, k, ds.num_classes, seed=seed)
  lengths = {}
  if ds.lengths_train is not None:  # padded sequences keep their lengths
    lengths = {"lengths_train": ds.lengths_train[idx], "lengths_test": ds.lengths_test}
  return Dataset(f"{ds.name}[{k}/class]", ds.x_train[idx], ds.y_train[idx], ds.x_test, ds.y_test,
                 ds.num_classes, {**ds.info, "labels_per_class": k, "subset_seed": seed},
                 vocab_size=ds.vocab_size, **lengths)
