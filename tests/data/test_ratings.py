"""Ratings files: the three formats, MovieLens 100K's folds (official files and the mku.sh rebuild), the other
splits, the validation carve, the synthetic generator, and one-line errors for bad input."""

import numpy as np
import pytest

from jaxdl.data import ratings as ratings_lib
from jaxdl.data.ratings import load_ratings, synthetic_ratings
from jaxdl.data.ratings_files import Table, read_ratings, write_ratings
from jaxdl.utils.errors import JaxdlError

UDATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n244\t51\t2\t880606923\n"


def triples(split: dict, r) -> set:
  """A split's ratings as a set of (raw user, raw item, rating)."""
  return {(r.user_ids[u].item(), r.item_ids[i].item(), float(x))
          for u, i, x in zip(split["user"], split["item"], split["rating"])}


def rows(table: Table) -> list:
  return list(zip(table.users.tolist(), table.items.tolist(), table.ratings.tolist(), table.timestamps.tolist()))


def one_line_error(fn, *words):
  with pytest.raises(JaxdlError) as info:
    fn()
  message = str(info.value)
  assert "\n" not in message, message
  for word in words:
    assert word in message, (word, message)
  return message


# ------------------------------------------------------------------ formats --


def test_each_format_is_read_from_a_small_hand_written_file(tmp_path):
  (tmp_path / "u.data").write_text(UDATA)
  t = read_ratings(tmp_path / "u.data", "udata")
  assert rows(t)[:2] == [(196, 242, 3.0, 881250949), (186, 302, 3.0, 891717742)]
  assert t.users.dtype == np.int64 and t.ratings.dtype == np.float32 and t.timed
  # The newer releases' ratings.csv: a header and half stars.
  (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n")
  t = read_ratings(tmp_path / "ratings.csv", "csv", rating_range=(0.5, 5.0))
  assert rows(t) == [(1, 31, 2.5, 1260759144), (1, 1029, 3.0, 1260759179)]
  # RecBole's atomic file: columns found by their header names, in any order, tokens of any kind.
  (tmp_path / "a.inter").write_text("item_id:token\ttimestamp:float\tuser_id:token\trating:float\n"
                                    "i9\t881250949.0\tu1\t4\ni2\t881250950\tu7\t5\n")
  t = read_ratings(tmp_path / "a.inter", "inter")
  assert rows(t) == [("u1", "i9", 4.0, 881250949), ("u7", "i2", 5.0, 881250950)]
  # Without a timestamp column the ratings still load; a temporal split is refused.
  (tmp_path / "b.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\t3\n4\t5\t1\n")
  assert not read_ratings(tmp_path / "b.inter", "inter").timed


@pytest.mark.parametrize("fmt, name", [("udata", "u.data"), ("csv", "ratings.csv"), ("inter", "ml.inter")])
def test_written_files_read_back_and_a_folder_is_searched(tmp_path, fmt, name):
  table = synthetic_ratings(20, 15, density=0.3, seed=1)
  write_ratings(tmp_path / name, table, fmt)
  for path in (tmp_path / name, tmp_path):  # the file, or the folder that holds it
    file, found = ratings_lib.locate(path)
    assert (file.name, found) == (name, fmt)
    assert rows(read_ratings(file, found)) == rows(table)


def test_synthetic_ratings_are_whole_stars_and_reproducible():
  a, b = synthetic_ratings(seed=3), synthetic_ratings(seed=3)
  assert rows(a) == rows(b) and rows(a) != rows(synthetic_ratings(seed=4))
  assert set(np.unique(a.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0} and len(np.unique(a.ratings)) == 5
  assert np.all(np.diff(a.timestamps) > 0)
  pairs = set(zip(a.users.tolist(), a.items.tolist()))
  assert len(pairs) == len(a)  # each (user, item) once
  assert 0.1 < len(a) / (300 * 200) < 0.2  # the default density 0.15


# ------------------------------------------------------------------- splits --


def test_uk_is_rebuilt_from_u_data_as_mku_sh_does(tmp_path):
  table = synthetic_ratings(30, 20, density=0.2, seed=0)
  n = len(table)
  write_ratings(tmp_path / "u.data", table)
  for fold in (1, 2, 5):
    r = load_ratings(tmp_path, split=f"u{fold}", val_fraction=0.0)
    block = slice(n * (fold - 1) // 5, n * fold // 5)  # the fold-th fifth of the rows, in file order
    want_test = {(u, i, x) for u, i, x, _ in rows(table)[block]}
    assert triples(r.test, r) == want_test
    assert triples(r.train, r) == {(u, i, x) for u, i, x, _ in rows(table)} - want_test
    assert not r.info["official_split"]
    # Sorted by (user, item), as mku.sh's sort -k 1,1n -k 2,2n.
    keys = list(zip(r.user_ids[r.test["user"]], r.item_ids[r.test["item"]]))
    assert keys == sorted(keys)
  # Users and items are numbered over the whole file, test-only ones included.
  assert r.num_users == len(np.unique(table.users)) and r.num_items == len(np.unique(table.items))


def test_official_split_files_are_preferred_and_equal_the_rebuild(tmp_path):
  table = synthetic_ratings(30, 20, density=0.2, seed=0)
  write_ratings(tmp_path / "u.data", table)
  rebuilt = load_ratings(tmp_path, split="u1")
  # uK.base / uK.test as mku.sh writes them: the rebuilt split, array for array.
  n = len(table)
  inside = np.zeros(n, bool)
  inside[:n // 5] = True
  write_ratings(tmp_path / "u1.base", table.take(~inside))
  write_ratings(tmp_path / "u1.test", table.take(inside))
  official = load_ratings(tmp_path, split="u1")
  assert official.info["official_split"] and official.sha256 == rebuilt.sha256
  # Other official files win over the rebuild: here the test fold is the last fifth.
  last = inside[::-1].copy()
  write_ratings(tmp_path / "u1.base", table.take(~last))
  write_ratings(tmp_path / "u1.test", table.take(last))
  other = load_ratings(tmp_path / "u.data", split="u1", val_fraction=0.0)
  assert triples(other.test, other) == {(u, i, x) for u, i, x, _ in rows(table)[n - n // 5:]}
  # A RecBole .inter file in u.data's row order rebuilds the same fold.
  write_ratings(tmp_path / "ml.inter", table, "inter")
  assert load_ratings(tmp_path / "ml.inter", split="u1").sha256 == rebuilt.sha256


def test_random_and_temporal_splits_and_the_validation_carve(tmp_path):
  table = synthetic_ratings(40, 30, density=0.2, seed=2)
  write_ratings(tmp_path / "u.data", table)
  r = load_ratings(tmp_path, split="random", test_fraction=0.25, val_fraction=0.1, seed=0)
  n = len(table)
  parts = [triples(s, r) for s in (r.train, r.val, r.test)]
  assert sum(map(len, parts)) == n and len(set.union(*parts)) == n  # disjoint, and all of them
  assert len(parts[2]) == round(n * 0.25) and len(parts[1]) == round((n - len(parts[2])) * 0.1)
  assert load_ratings(tmp_path, split="random", test_fraction=0.25, val_fraction=0.1, seed=0).sha256 == r.sha256
  assert load_ratings(tmp_path, split="random", test_fraction=0.25, val_fraction=0.1, seed=1).sha256 != r.sha256
  assert len(load_ratings(tmp_path, split="u1", val_fraction=0.0).val["rating"]) == 0  # no validation set
  # Temporal: the test set is the latest ratings, validation the latest of the rest.
  t = load_ratings(tmp_path, split="temporal", test_fraction=0.2, val_fraction=0.1)
  stamp = dict(((u, i), s) for u, i, _, s in rows(table))
  times = [np.asarray([stamp[(u, i)] for u, i, _ in triples(s, t)]) for s in (t.train, t.val, t.test)]
  assert times[0].max() < times[1].min() and times[1].max() < times[2].min()


# ---------------------------------------------------------------- bad input --


@pytest.mark.parametrize("text, words", [
    ("1\t2\t3\t881250949\n1\t3\t4\n", ("u.data:2", "4 tab-separated fields", "got 3")),
    ("1\t2\t3\t881250949\n\n7\tx\t4\t881250949\n", ("u.data:3", "item 'x'", "integer")),
    ("1\t2\tgood\t881250949\n", ("u.data:1", "rating 'good'", "not a number")),
    ("1\t2\t3\t881250949\n1\t3\t6\t881250950\n", ("u.data:2", "rating 6", "data.rating_range [1, 5]")),
    ("1\t2\t0.5\t881250949\n", ("u.data:1", "rating 0.5", "outside")),
    ("1\t2\t3\tnoon\n", ("u.data:1", "timestamp 'noon'")),
])
def test_a_bad_line_is_named_by_its_file_and_number(tmp_path, text, words):
  (tmp_path / "u.data").write_text(text)
  one_line_error(lambda: load_ratings(tmp_path, split="random"), str(tmp_path), *words)


def test_bad_files_headers_and_splits_are_one_line_errors(tmp_path):
  one_line_error(lambda: load_ratings(tmp_path / "nowhere"), "nowhere", "does not exist", "pip download recbole")
  one_line_error(lambda: load_ratings(tmp_path), "no u.data, ratings.csv or single .inter")
  (tmp_path / "ratings.csv").write_text("user,item,rating\n1,2,3\n")
  one_line_error(lambda: load_ratings(tmp_path, split="random"), "ratings.csv:1", "userId,movieId,rating,timestamp")
  (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3,4\n1,3,4\n")
  one_line_error(lambda: load_ratings(tmp_path, split="random"), "ratings.csv:3", "got 3")
  (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3,4\n1,3,4,5\n")
  one_line_error(lambda: load_ratings(tmp_path, split="u1"), "data.split=u1", "sorted by user", "random")
  one_line_error(lambda: load_ratings(tmp_path, split="u6"), "data.split='u6'", "u1", "temporal")
  one_line_error(lambda: load_ratings(tmp_path, split="random", rating_range=(5, 1)), "data.rating_range")
  (tmp_path / "x.inter").write_text("user_id:token\trating:float\n1\t3\n")
  one_line_error(lambda: load_ratings(tmp_path / "x.inter", split="random"), "x.inter:1", "missing item_id")
  (tmp_path / "t.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t3\t4\n")
  one_line_error(lambda: load_ratings(tmp_path / "t.inter", split="temporal"), "temporal", "timestamps")
  mk = tmp_path / "ml"
  mk.mkdir()
  (mk / "u.data").write_text(UDATA)
  (mk / "u2.base").write_text(UDATA)
  one_line_error(lambda: load_ratings(mk, split="u2"), "u2.base", "u2.test is not")
