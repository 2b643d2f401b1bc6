"""Explicit ratings (user, item, rating, timestamp) for recommenders, read from MovieLens files.

``load_ratings(path, split=...)`` returns a :class:`Ratings`: train,
validation and test triples of contiguous user and item indices, with the
raw ids they stand for. Three file formats, each checked line by line with
one-line :class:`JaxdlError` messages that name the file and the line:

- MovieLens 100K's ``u.data``: tab-separated ``user item rating timestamp``,
  no header. A folder holding it may also hold the official splits
  ``u1.base``/``u1.test`` .. ``u5.base``/``u5.test`` (the same format).
- ``ratings.csv`` of the newer MovieLens releases (ml-latest, ml-1m
  converted, ml-25m): the header ``userId,movieId,rating,timestamp``.
- a RecBole atomic ``.inter`` file: tab-separated, a header of
  ``name:type`` fields (``user_id:token item_id:token rating:float
  timestamp:float``), columns found by name.

``data.path`` may name the file or the folder holding it. MovieLens is not
shipped with jaxdl: its licence forbids redistribution (see
:data:`NOT_SHIPPED`).

Splits (``data.split``):

- ``u1`` .. ``u5``: MovieLens 100K's five-fold split. The official
  ``uK.base``/``uK.test`` files are read when they are beside ``u.data``.
  Otherwise the split is rebuilt the way the MovieLens README's ``mku.sh``
  makes it: the K-th block of a fifth of the ratings in file order (20,000
  of ``u.data``'s 100,000) is the test set, the rest the training set, each
  sorted by (user, item) as ``mku.sh`` sorts them; so the rebuilt split is
  the official one, array for array. RecBole's ``ml-100k.inter`` keeps
  ``u.data``'s row order (checked: its first rows are ``u.data``'s, and
  the rebuilt ``u1.test`` has the official file's 459 users, 1,410 items
  and first lines), so ``u1`` is rebuilt from it exactly. ``ratings.csv``
  files are sorted by user, so a block of rows would be a block of users:
  ``uK`` is refused for them.
- ``random``: a share ``test_fraction`` of the ratings drawn at ``seed``.
- ``temporal``: the latest ``test_fraction`` of the ratings by timestamp
  (ties in file order) are the test set.

The validation set is carved from the training set, never from the test
set: a share ``val_fraction`` drawn at ``seed`` (for ``temporal``, the
latest ``val_fraction`` of the training ratings). Users and items are
numbered over every rating of the file (sorted raw ids), so an item seen
only in the test set still has an index.

:func:`synthetic_ratings` draws low-rank ratings, and
``jaxdl.data.ratings_files.write_ratings`` writes them in any of the three
formats, for tests and notebooks (``jaxdl.data.ratings_files`` reads and
writes the files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from jaxdl.data.ratings_files import PathLike, Table, locate, read_ratings
from jaxdl.utils.errors import JaxdlError

RATING_DATASETS: dict[str, str] = {
    "movielens": "explicit ratings (data.path): MovieLens 100K's folder or u.data, a ratings.csv of the newer "
                 "releases, or a RecBole .inter file",
}
SPLITS = ("u1", "u2", "u3", "u4", "u5", "random", "temporal")
_FOLDS = 5  # mku.sh's five blocks


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Ratings:
  """A ratings dataset split three ways, as contiguous indices.

  Attributes:
    name: what it was loaded as (``movielens``, or a name from Python).
    train, val, test: ``{"user": int32 (N,), "item": int32 (N,), "rating":
      float32 (N,)}``; ``val`` may be empty.
    user_ids, item_ids: the raw id of each user and item index.
    rating_range: (lowest, highest) rating allowed; predictions are clipped
      to it.
    info: JSON-able facts: source, format, split, whether the official
      split files were read.
  """

  name: str
  train: dict
  val: dict
  test: dict
  user_ids: np.ndarray
  item_ids: np.ndarray
  rating_range: tuple[float, float]
  info: dict = dataclasses.field(default_factory=dict)

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_items(self) -> int:
    return len(self.item_ids)

  @property
  def mean(self) -> float:
    """The training ratings' mean: the global bias of the models, and the baseline predictor."""
    return float(np.mean(self.train["rating"], dtype=np.float64))

  @property
  def sha256(self) -> str:
    """SHA-256 of the three splits and the id maps: the same ratings, split the same way, give the same digest."""
    digest = hashlib.sha256()
    for split in (self.train, self.val, self.test):
      for key in ("user", "item", "rating"):
        digest.update(np.ascontiguousarray(split[key]).tobytes())
    for ids in (self.user_ids, self.item_ids):
      digest.update("\t".join(map(str, ids.tolist())).encode())
    return digest.hexdigest()

  def item_index(self, item) -> int:
    """The index of raw item id ``item`` (an int or a token)."""
    found = np.flatnonzero(self.item_ids.astype(str) == str(item))
    if not len(found):
      raise JaxdlError(f"item {item!r} is not an item of {self.name} ({self.num_items} items, ids "
                       f"{self.item_ids[0]!r} .. {self.item_ids[-1]!r})")
    return int(found[0])

  def __repr__(self) -> str:
    return (f"Ratings(name={self.name!r}, users={self.num_users}, items={self.num_items}, "
            f"train={len(self.train['rating'])}, val={len(self.val['rating'])}, test={len(self.test['rating'])})")


# ------------------------------------------------------------------- splits --


def _sorted_by_user_item(table: Table) -> Table:
  return table.take(np.lexsort((table.items, table.users)))


def _fold(split: str) -> int:
  if split not in SPLITS:
    raise JaxdlError(f"data.split={split!r} must be one of {', '.join(SPLITS)} (u1 .. u5: MovieLens 100K's "
                     f"five folds)")
  return int(split[1]) if split.startswith("u") else 0


def split_table(table: Table, split: str, *, test_fraction: float = 0.2, seed: int = 0,
                source: str = "the ratings") -> tuple[Table, Table]:
  """(train, test) of ``table`` by ``split`` (see the module docstring); ``uK`` is the rebuild rule."""
  fold, n = _fold(split), len(table)
  if fold:
    lo, hi = n * (fold - 1) // _FOLDS, n * fold // _FOLDS  # 20,000-row blocks for u.data's 100,000
    inside = np.zeros(n, bool)
    inside[lo:hi] = True
    return _sorted_by_user_item(table.take(~inside)), _sorted_by_user_item(table.take(inside))
  if not 0 < test_fraction < 1:
    raise JaxdlError(f"data.test_fraction={test_fraction} must be in (0, 1)")
  n_test = max(1, round(n * test_fraction))
  if split == "random":
    order = np.random.default_rng(seed).permutation(n)
    return table.take(np.sort(order[n_test:])), table.take(np.sort(order[:n_test]))
  if not table.timed:
    raise JaxdlError(f"data.split=temporal needs timestamps, and {source} has none")
  order = np.argsort(table.timestamps, kind="stable")
  return table.take(order[:-n_test]), table.take(order[-n_test:])


def _carve_validation(train: Table, split: str, val_fraction: float, seed: int) -> tuple[Table, Table]:
  if not 0 <= val_fraction < 1:
    raise JaxdlError(f"data.val_fraction={val_fraction} must be in [0, 1)")
  n_val = round(len(train) * val_fraction)
  if n_val == 0:
    return train, train.take(np.zeros(0, np.int64))
  if split == "temporal":
    order = np.argsort(train.timestamps, kind="stable")
    return train.take(np.sort(order[:-n_val])), train.take(np.sort(order[-n_val:]))
  # Its own stream: a random split's test rows and the validation rows never share draws.
  order = np.random.default_rng((seed, 1)).permutation(len(train))
  return train.take(np.sort(order[n_val:])), train.take(np.sort(order[:n_val]))


def make_ratings(train: Table, test: Table, *, name: str = "ratings", split: str = "random",
                 val_fraction: float = 0.05, seed: int = 0, rating_range: tuple[float, float] = (1.0, 5.0),
                 info: Mapping | None = None) -> Ratings:
  """A :class:`Ratings` from a train and a test table: the validation carve and the index maps.

  Args:
    train, test: the ratings (raw ids) of the two sides of the split.
    name: the dataset's name.
    split: ``uK``, ``random`` or ``temporal`` (how validation is carved).
    val_fraction: the share of ``train`` held out for validation (0: none).
    seed: the validation draw's seed.
    rating_range: the scale (every rating must lie in it).
    info: extra facts to record.
  """
  lo, hi = rating_range
  for side, table in (("train", train), ("test", test)):
    bad = np.flatnonzero((table.ratings < lo) | (table.ratings > hi) | ~np.isfinite(table.ratings))
    if len(bad):
      raise JaxdlError(f"{name}: {side} rating {table.ratings[bad[0]]:g} (row {bad[0]}) is outside "
                       f"data.rating_range [{lo:g}, {hi:g}]")
  if not len(train) or not len(test):
    raise JaxdlError(f"{name}: the split leaves {len(train)} training and {len(test)} test ratings; both must "
                     f"be > 0")
  fit, val = _carve_validation(train, split, val_fraction, seed)
  user_ids = np.unique(np.concatenate([train.users, test.users]))
  item_ids = np.unique(np.concatenate([train.items, test.items]))

  def indexed(table: Table) -> dict:
    return {"user": np.searchsorted(user_ids, table.users).astype(np.int32),
            "item": np.searchsorted(item_ids, table.items).astype(np.int32),
            "rating": table.ratings.astype(np.float32)}

  return Ratings(name=name, train=indexed(fit), val=indexed(val), test=indexed(test), user_ids=user_ids,
                 item_ids=item_ids, rating_range=(float(lo), float(hi)),
                 info={"split": split, "val_fraction": val_fraction, "seed": seed, **(info or {})})


def _official_split(data_file: pathlib.Path, fold: int) -> tuple[pathlib.Path, pathlib.Path] | None:
  """``uK.base`` and ``uK.test`` beside ``u.data``, when both are there."""
  base, test = data_file.with_name(f"u{fold}.base"), data_file.with_name(f"u{fold}.test")
  if base.is_file() != test.is_file():
    present, absent = (base, test) if base.is_file() else (test, base)
    raise JaxdlError(f"{present} is there but {absent.name} is not: the official split needs both (or "
                     f"neither, to rebuild u{fold} from {data_file.name})")
  return (base, test) if base.is_file() else None


def load_ratings(path: PathLike, *, split: str = "u1", rating_range: Sequence[float] = (1.0, 5.0),
                 val_fraction: float = 0.05, test_fraction: float = 0.2, seed: int = 0,
                 name: str = "movielens") -> Ratings:
  """Reads MovieLens ratings from ``path`` and splits them (the ``data.*`` keys of the recommend loop).

  Args:
    path: a MovieLens 100K folder (or its ``u.data``), a ``ratings.csv`` (or
      its folder), or a RecBole ``.inter`` file (or its folder).
    split: ``u1`` .. ``u5``, ``random`` or ``temporal``.
    rating_range: (lowest, highest) allowed rating.
    val_fraction: share of the training ratings held out for validation.
    test_fraction: share of the ratings in the test set (``random`` and
      ``temporal``; the ``uK`` folds are fifths).
    seed: the seed of the random split and of the validation draw.
    name: the dataset's name.

  Raises:
    JaxdlError: see :func:`locate`, :func:`read_ratings` and the splits.
  """
  lo, hi = (float(v) for v in rating_range)
  if len(tuple(rating_range)) != 2 or not lo < hi:
    raise JaxdlError(f"data.rating_range={tuple(rating_range)} must be (lowest, highest) with lowest < highest")
  fold = _fold(split)
  file, fmt = locate(path)
  info = {"source": str(file), "format": fmt, "official_split": False}
  official = _official_split(file, fold) if fold and fmt == "udata" else None
  if official:
    train, test = (_sorted_by_user_item(read_ratings(f, "udata", rating_range=(lo, hi))) for f in official)
    info.update(official_split=True, source=f"{official[0]} + {official[1].name}")
  else:
    if fold and fmt == "csv":
      raise JaxdlError(f"data.split={split} is MovieLens 100K's fold, rebuilt from u.data's row order; {file} is "
                       f"sorted by user, so use data.split=random or temporal")
    train, test = split_table(read_ratings(file, fmt, rating_range=(lo, hi)), split, test_fraction=test_fraction,
                              seed=seed, source=str(file))
  return make_ratings(train, test, name=name, split=split, val_fraction=val_fraction, seed=seed,
                      rating_range=(lo, hi), info=info)


# ---------------------------------------------------------------- synthetic --


def synthetic_ratings(num_users: int = 300, num_items: int = 200, *, rank: int = 3, density: float = 0.15,
                      noise: float = 0.3, seed: int = 0) -> Table:
  """Low-rank ratings on the 1-5 scale, in a shuffled file order, with increasing timestamps.

  Each user and item gets a bias and a ``rank``-dimensional factor (standard
  normal); a rating is ``3 + b_u + b_i + p_u . q_i / sqrt(rank) + noise``,
  rounded and clipped to 1..5, for a share ``density`` of the pairs. A
  model of rank ``rank`` can learn it to about the rounding error, far
  below the spread of the ratings that predicting the mean leaves.

  Returns:
    A :class:`Table` with 1-based integer ids, ready for :func:`write_ratings`.
  """
  if num_users < 1 or num_items < 1 or rank < 1 or not 0 < density <= 1 or noise < 0:
    raise JaxdlError(f"synthetic_ratings: num_users={num_users}, num_items={num_items} and rank={rank} must be "
                     f">= 1, density={density} in (0, 1] and noise={noise} >= 0")
  rng = np.random.default_rng(seed)
  p, q = rng.normal(size=(num_users, rank)), rng.normal(size=(num_items, rank))
  b_u, b_i = 0.5 * rng.normal(size=num_users), 0.5 * rng.normal(size=num_items)
  users, items = np.nonzero(rng.random((num_users, num_items)) < density)
  score = 3.0 + b_u[users] + b_i[items] + np.sum(p[users] * q[items], axis=1) / np.sqrt(rank)
  ratings = np.clip(np.rint(score + noise * rng.normal(size=len(users))), 1, 5)
  order = rng.permutation(len(users))
  timestamps = 880_000_000 + np.cumsum(rng.integers(1, 600, size=len(users)))
  return Table((users[order] + 1).astype(np.int64), (items[order] + 1).astype(np.int64),
               ratings[order].astype(np.float32), timestamps.astype(np.int64))
