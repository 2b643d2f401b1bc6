"""Loaders: exact sizes, splits, dtypes, determinism, file round trips and errors."""

import gzip
import importlib.machinery
import importlib.util
import json
import os
import pathlib
import pickle
import random
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxdl.data import DATASETS, Dataset, load_dataset
from jaxdl.data import builtin, files
from jaxdl.utils.errors import JaxdlError

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  # Never write into the real ~/.cache from tests.
  monkeypatch.setenv("JAXDL_CACHE_DIR", str(tmp_path / "cache"))


def _assert_same(a: Dataset, b: Dataset):
  for key in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
  assert a.num_classes == b.num_classes


def _images(rng, n, shape=(28, 28)):
  return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


# --------------------------------------------------------------------- digits --


def test_digits_sizes_dtypes_ranges():
  ds = load_dataset("digits")
  assert (ds.num_train, ds.num_test, ds.num_classes) == (1437, 360, 10)
  assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
  assert ds.input_shape == (8, 8, 1) and ds.kind == "image"
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.x_test.dtype == np.float32 and ds.y_test.dtype == np.int32
  assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
  # /16 of integer counts: every value is a multiple of 1/16.
  np.testing.assert_array_equal(ds.x_train * 16, np.round(ds.x_train * 16))
  assert set(np.unique(ds.y_train)) == set(range(10))
  json.dumps(ds.info)  # JSON-able


def test_digits_split_is_stratified():
  ds = load_dataset("digits")
  for c in range(10):
    n_train, n_test = int((ds.y_train == c).sum()), int((ds.y_test == c).sum())
    assert abs(n_test - 0.2 * (n_train + n_test)) <= 1, (c, n_train, n_test)


def test_digits_deterministic_and_a_partition():
  a, b = load_dataset("digits"), load_dataset("DIGITS")
  _assert_same(a, b)
  assert a.info["arrays_sha256"] == b.info["arrays_sha256"]
  # The split partitions the 1797 images: sklearn's digits has duplicates, so
  # compare multisets of (image, label) rows rather than asserting disjointness.
  from sklearn.datasets import load_digits
  full = load_digits()

  def rows(counts, labels):  # (N, 8, 8) pixel counts 0..16, (N,)
    table = np.concatenate([counts.reshape(len(counts), -1), labels[:, None]], 1)
    return sorted(map(bytes, np.round(table).astype(np.uint8)))

  ours = rows(np.concatenate([a.x_train, a.x_test]) * 16, np.concatenate([a.y_train, a.y_test]))
  assert ours == rows(full.images, full.target)


def test_digits_cache_serves_the_same_split_without_scikit_learn(tmp_path, monkeypatch):
  first = builtin._digits_arrays.__wrapped__()  # split by scikit-learn, written to the cache
  assert len(list((tmp_path / "cache").glob("digits-*.npz"))) == 1

  def no_split():
    raise AssertionError("should have read the disk cache")

  monkeypatch.setattr(builtin, "_split_digits", no_split)
  cached = builtin._digits_arrays.__wrapped__()
  for key in first:
    np.testing.assert_array_equal(cached[key], first[key])
    assert cached[key].dtype == first[key].dtype and not cached[key].flags.writeable
  # What a run sees is the same dataset, hash included, cached or not.
  monkeypatch.setattr(builtin, "_digits_arrays", lambda: cached)
  from_cache = load_dataset("digits")
  monkeypatch.undo()
  monkeypatch.setenv("JAXDL_CACHE_DIR", str(tmp_path / "cache"))
  _assert_same(from_cache, load_dataset("digits"))
  assert from_cache.info == load_dataset("digits").info


# -------------------------------------------------------------------- mnist1d --


def test_mnist1d_generation_shapes_and_global_rng_untouched():
  builtin._mnist1d_arrays.cache_clear()  # force a real generation in this test
  np.random.seed(1234)
  random.seed(99)
  np_before, py_before = np.random.get_state(), random.getstate()
  ds = load_dataset("mnist1d")
  np_after = np.random.get_state()
  assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1])
  assert np_after[2:] == np_before[2:]
  assert random.getstate() == py_before
  assert (ds.num_train, ds.num_test, ds.num_classes) == (4000, 1000, 10)
  assert ds.x_train.shape == (4000, 40, 1) and ds.x_test.shape == (1000, 40, 1)
  assert ds.kind == "signal" and ds.input_shape == (40, 1)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert set(np.unique(ds.y_train)) == set(range(10))
  # Standardised by the generator over train+test together.
  everything = np.concatenate([ds.x_train, ds.x_test])
  assert abs(everything.mean()) < 1e-2 and abs(everything.std() - 1) < 1e-2
  json.dumps(ds.info)


def test_mnist1d_deterministic_and_returns_own_copies():
  a = load_dataset("mnist1d")
  a.x_train[0, 0, 0] = 1e6  # callers may mutate their copy
  b = load_dataset("mnist1d")
  assert b.x_train[0, 0, 0] != 1e6
  c = load_dataset("mnist1d")
  _assert_same(b, c)


def test_mnist1d_disk_cache_round_trip(tmp_path, monkeypatch):
  cache = tmp_path / "cache"
  # The real arrays (generated once per process), served by a stub generator so
  # this test does not pay for a second generation.
  real = builtin._mnist1d_arrays()
  monkeypatch.setattr(builtin, "_generate_mnist1d", lambda: {k: np.array(v) for k, v in real.items()})
  fresh = builtin._mnist1d_arrays.__wrapped__()  # bypasses the in-process cache
  assert not fresh["x_train"].flags.writeable  # shared arrays are read-only
  written = list(cache.glob("mnist1d-*.npz"))
  assert len(written) == 1 and not list(cache.glob("*.tmp"))

  def no_generation():
    raise AssertionError("should have read the disk cache")

  monkeypatch.setattr(builtin, "_generate_mnist1d", no_generation)
  cached = builtin._mnist1d_arrays.__wrapped__()
  for key in fresh:
    np.testing.assert_array_equal(fresh[key], cached[key])
    assert fresh[key].dtype == cached[key].dtype

  # Altered arrays under the old checksum are rejected.
  with np.load(written[0]) as archive:
    stored = dict(archive)
  stored["x_train"] = stored["x_train"] + 1
  np.savez(written[0], **stored)
  assert builtin._read_cache(written[0]) is None

  # A damaged cache file is ignored and rewritten.
  written[0].write_bytes(b"not an npz")
  monkeypatch.setattr(builtin, "_generate_mnist1d", lambda: {k: np.array(v) for k, v in real.items()})
  regenerated = builtin._mnist1d_arrays.__wrapped__()
  np.testing.assert_array_equal(regenerated["x_test"], fresh["x_test"])
  assert builtin._read_cache(written[0]) is not None


# In a fresh process, with the cache written: load MNIST-1D, then say whether mnist1d was imported.
_CACHED_LOAD = """
import json, sys
from jaxdl.data import load_dataset
ds = load_dataset("mnist1d")
print(json.dumps({"imported": "mnist1d" in sys.modules, "sha": ds.info["arrays_sha256"], "args": ds.info["args"]}))
"""


def test_a_cached_mnist1d_loads_without_importing_the_generator(tmp_path, monkeypatch):
  real = load_dataset("mnist1d")
  arrays = builtin._mnist1d_arrays()  # from memory if an earlier test loaded it: write this test's cache
  monkeypatch.setattr(builtin, "_generate_mnist1d", lambda: {k: np.array(v) for k, v in arrays.items()})
  builtin._mnist1d_arrays.__wrapped__()
  assert list((tmp_path / "cache").glob("mnist1d-*.npz"))
  env = {**os.environ, "JAXDL_CACHE_DIR": str(tmp_path / "cache")}
  done = subprocess.run([sys.executable, "-c", _CACHED_LOAD], capture_output=True, text=True, timeout=120, env=env)
  assert done.returncode == 0, done.stderr[-2000:]
  child = json.loads(done.stdout.splitlines()[-1])
  assert child == {"imported": False, "sha": real.info["arrays_sha256"], "args": real.info["args"]}
  assert child["args"]["seed"] == 42 and child["args"]["final_seq_length"] == 40  # the generator's defaults


def test_the_mnist1d_cache_key_follows_the_generators_source(tmp_path, monkeypatch):
  installed = pathlib.Path(importlib.util.find_spec("mnist1d").origin).parent
  copy = tmp_path / "mnist1d"
  copy.mkdir()
  for name in builtin._MNIST1D_SOURCES:
    (copy / name).write_bytes((installed / name).read_bytes())
  spec = importlib.machinery.ModuleSpec("mnist1d", None, is_package=True)
  spec.submodule_search_locations.append(str(copy))
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: spec if name == "mnist1d" else real_find_spec(name, *a))
  same = builtin._mnist1d_cache_key()
  (copy / "data.py").write_text((copy / "data.py").read_text().replace("'seed': 42", "'seed': 43"))
  assert builtin._mnist1d_cache_key() != same  # an edited default: a new cache, not the old arrays
  monkeypatch.undo()
  assert builtin._mnist1d_cache_key() == same  # the copy hashes as the installed package does


def test_mnist1d_unwritable_cache_dir_is_skipped(tmp_path, monkeypatch):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  monkeypatch.setenv("JAXDL_CACHE_DIR", str(blocker / "sub"))  # cannot mkdir under a file
  arrays = {"x_train": np.zeros((4, 40, 1), np.float32), "y_train": np.arange(4, dtype=np.int32),
            "x_test": np.zeros((2, 40, 1), np.float32), "y_test": np.arange(2, dtype=np.int32)}
  monkeypatch.setattr(builtin, "_generate_mnist1d", lambda: dict(arrays))
  got = builtin._mnist1d_arrays.__wrapped__()
  np.testing.assert_array_equal(got["y_train"], arrays["y_train"])


# ------------------------------------------------------------------------ npz --


@pytest.mark.parametrize("example_shape, kind", [((6,), "vector"), ((12, 2), "signal"),
                                                 ((5, 4, 3), "image")])
def test_npz_round_trip(tmp_path, example_shape, kind):
  rng = np.random.default_rng(0)
  x_train = rng.normal(size=(20, *example_shape))  # float64 on disk
  x_test = rng.normal(size=(10, *example_shape))
  y_train, y_test = rng.integers(0, 4, 20), rng.integers(0, 4, 10)
  y_train[0] = 3  # so the inferred count is 4
  path = tmp_path / "data.npz"
  files.save_npz(path, x_train, y_train, x_test, y_test)
  ds = load_dataset("npz", str(path))
  assert ds.kind == kind and ds.input_shape == example_shape
  assert ds.x_train.dtype == np.float32 and ds.y_test.dtype == np.int32
  np.testing.assert_array_equal(ds.x_train, x_train.astype(np.float32))
  np.testing.assert_array_equal(ds.x_test, x_test.astype(np.float32))
  np.testing.assert_array_equal(ds.y_train, y_train)
  np.testing.assert_array_equal(ds.y_test, y_test)
  assert ds.num_classes == 4
  assert load_dataset("npz", path, num_classes=7).num_classes == 7
  assert list(ds.info["sha256"]) == ["data.npz"]
  json.dumps(ds.info)
  _assert_same(ds, load_dataset("npz", path))


def test_npz_whole_float_labels_are_accepted(tmp_path):
  path = tmp_path / "d.npz"
  files.save_npz(path, np.ones((3, 2)), np.array([0.0, 1.0, 2.0]), np.ones((1, 2)), np.array([1.0]))
  ds = load_dataset("npz", path)
  np.testing.assert_array_equal(ds.y_train, [0, 1, 2])
  assert ds.y_train.dtype == np.int32


def _good_arrays():
  rng = np.random.default_rng(1)
  return {"x_train": rng.normal(size=(20, 4, 4, 1)), "y_train": np.arange(20) % 3,
          "x_test": rng.normal(size=(10, 4, 4, 1)), "y_test": np.arange(10) % 3}


def _nan_in_x_train(a):
  a["x_train"][5, 1, 2, 0] = np.nan
  a["x_train"][7, 0, 0, 0] = np.inf


def _edit(key, value):
  return lambda a: a.__setitem__(key, value(a) if callable(value) else value)


NPZ_ERRORS = {
    "mismatched lengths": (_edit("y_train", lambda a: a["y_train"][:19]),
                           ["x_train", "20", "y_train", "19"]),
    "negative label": (_edit("y_test", np.array([0, 1, -1, 2, 0, 1, 2, 0, 1, 2])),
                       ["y_test", "negative", "-1", "index 2"]),
    "non-integer label": (_edit("y_train", lambda a: a["y_train"] + 0.5),
                          ["y_train", "integers", "0.5"]),
    "string labels": (_edit("y_train", np.array(["a"] * 20)), ["y_train", "integers"]),
    "out of range test label": (_edit("y_test", np.array([0, 1, 2, 7, 0, 1, 2, 0, 1, 2])),
                                ["y_test", "label 7", "index 3", "data.num_classes"]),
    "non-finite inputs": (_nan_in_x_train, ["x_train", "2 non-finite", "example 5"]),
    "inf in test inputs": (_edit("x_test", lambda a: np.where(np.arange(10)[:, None, None, None] == 3,
                                                              -np.inf, a["x_test"])),
                           ["x_test", "16 non-finite", "1 example,", "example 3"]),
    "different example shapes": (_edit("x_test", np.zeros((10, 4, 5, 1))),
                                 ["x_train", "x_test", "(4, 4, 1)", "(4, 5, 1)"]),
    "empty train": (_edit("x_train", np.zeros((0, 4, 4, 1))), ["x_train", "empty"]),
    "empty labels": (_edit("y_test", np.zeros((0,), np.int64)), ["y_test", "empty"]),
    "scalar inputs": (_edit("x_train", np.zeros((20,))), ["x_train", "(20,)"]),
    "2-D labels": (_edit("y_train", np.zeros((20, 1), np.int64)), ["y_train", "(20, 1)"]),
}


@pytest.mark.parametrize("case", list(NPZ_ERRORS))
def test_npz_validation_errors_name_the_offender(tmp_path, case):
  edit, needles = NPZ_ERRORS[case]
  arrays = _good_arrays()
  edit(arrays)
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  with pytest.raises(JaxdlError) as excinfo:
    load_dataset("npz", str(path))
  message = str(excinfo.value)
  assert "\n" not in message and str(path) in message
  for needle in needles:
    assert needle in message, (needle, message)


def test_npz_label_beyond_given_num_classes(tmp_path):
  path = tmp_path / "d.npz"
  np.savez(path, **_good_arrays())  # labels 0..2
  with pytest.raises(JaxdlError, match=r"y_train.*out of range for data.num_classes=2.*first 2"):
    load_dataset("npz", path, num_classes=2)
  assert load_dataset("npz", path, num_classes=3).num_classes == 3
  with pytest.raises(JaxdlError, match="data.num_classes"):
    load_dataset("npz", path, num_classes=-1)


def test_npz_missing_file_and_missing_array(tmp_path):
  with pytest.raises(JaxdlError, match=r"nope\.npz: not found"):
    load_dataset("npz", tmp_path / "nope.npz")
  arrays = _good_arrays()
  del arrays["y_test"]
  np.savez(tmp_path / "three.npz", **arrays)
  with pytest.raises(JaxdlError, match=r"three\.npz: missing array 'y_test'"):
    load_dataset("npz", tmp_path / "three.npz")


@pytest.mark.parametrize("content", [b"", b"hello, not numpy", "npy", "object"])
def test_npz_not_a_valid_archive(tmp_path, content):
  path = tmp_path / "junk.npz"
  if content == "npy":
    with open(path, "wb") as f:
      np.save(f, np.zeros(3))
  elif content == "object":
    arrays = _good_arrays()
    arrays["y_train"] = np.array([{"a": 1}] * 20, dtype=object)
    np.savez(path, **arrays)
  else:
    path.write_bytes(content)
  with pytest.raises(JaxdlError) as excinfo:
    load_dataset("npz", path)
  assert str(path) in str(excinfo.value) and "\n" not in str(excinfo.value)
  if content == "object":
    assert "'y_train'" in str(excinfo.value)


# ------------------------------------------------------------------------ IDX --


def _write_idx_dir(directory, rng, gz_pattern, n_train=20, n_test=10, hw=(28, 28)):
  directory.mkdir()
  labels = lambda n: rng.integers(0, 10, n).astype(np.uint8)
  arrays = {"x_train": _images(rng, n_train, hw), "y_train": labels(n_train),
            "x_test": _images(rng, n_test, hw), "y_test": labels(n_test)}
  arrays["y_train"][0] = 9
  for (key, stem), gz in zip(files.IDX_FILES.items(), gz_pattern):
    files.save_idx(directory / (stem + (".gz" if gz else "")), arrays[key])
  return arrays


@pytest.mark.parametrize("gz_pattern", [(False,) * 4, (True,) * 4, (True, False, False, True)])
def test_idx_round_trip(tmp_path, gz_pattern):
  arrays = _write_idx_dir(tmp_path / "mnist", np.random.default_rng(2), gz_pattern)
  if gz_pattern[0]:  # really gzipped on disk
    assert (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").read_bytes()[:2] == b"\x1f\x8b"
  ds = load_dataset("idx", str(tmp_path / "mnist"))
  assert ds.x_train.shape == (20, 28, 28, 1) and ds.x_test.shape == (10, 28, 28, 1)
  assert ds.kind == "image" and ds.num_classes == 10
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  np.testing.assert_array_equal(ds.x_train[..., 0], arrays["x_train"].astype(np.float32) / 255)
  np.testing.assert_array_equal(np.round(ds.x_test[..., 0] * 255), arrays["x_test"])
  np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
  np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
  assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
  assert len(ds.info["sha256"]) == 4
  _assert_same(ds, load_dataset("idx", tmp_path / "mnist"))


def test_idx_header_is_big_endian_and_exact(tmp_path):
  array = np.arange(2 * 3 * 300, dtype=np.int32).reshape(2, 3, 300) - 500
  files.save_idx(tmp_path / "a.idx", array)
  raw = (tmp_path / "a.idx").read_bytes()
  assert raw[:4] == bytes([0, 0, 0x0C, 3])
  assert raw[4:16] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (300).to_bytes(4, "big")
  assert len(raw) == 16 + array.size * 4
  got = files.read_idx(tmp_path / "a.idx")
  assert got.dtype == np.int32 and got.dtype.isnative
  np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_file(tmp_path, gz):
  _write_idx_dir(tmp_path / "mnist", np.random.default_rng(3), (False,) * 4)
  name = "t10k-images-idx3-ubyte"
  full = (tmp_path / "mnist" / name).read_bytes()
  (tmp_path / "mnist" / name).unlink()
  if gz:
    compressed = gzip.compress(full)
    (tmp_path / "mnist" / f"{name}.gz").write_bytes(compressed[: len(compressed) // 2])
    name += ".gz"
    needle = "truncated gzip"
  else:
    (tmp_path / "mnist" / name).write_bytes(full[:-100])
    needle = "truncated: header says shape (10, 28, 28)"
  with pytest.raises(JaxdlError) as excinfo:
    load_dataset("idx", tmp_path / "mnist")
  assert str(tmp_path / "mnist" / name) in str(excinfo.value)
  assert needle in str(excinfo.value)


@pytest.mark.parametrize("content, needle", [
    (b"\x00\x00\x08", "shorter than the 4-byte magic"),
    (b"\x01\x02\x08\x01" + bytes(8), "not an IDX file"),
    (b"\x00\x00\x07\x01" + bytes(8), "not an IDX file"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated inside the header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x02abc", "1 unexpected bytes"),
])
def test_idx_malformed_headers(tmp_path, content, needle):
  (tmp_path / "f").write_bytes(content)
  with pytest.raises(JaxdlError, match=needle):
    files.read_idx(tmp_path / "f")


def test_idx_missing_dir_and_file(tmp_path):
  with pytest.raises(JaxdlError, match=r"IDX directory .*nowhere: not found"):
    load_dataset("idx", tmp_path / "nowhere")
  _write_idx_dir(tmp_path / "mnist", np.random.default_rng(4), (False,) * 4)
  (tmp_path / "mnist" / "train-labels-idx1-ubyte").unlink()
  with pytest.raises(JaxdlError,
                     match=r"missing train-labels-idx1-ubyte \(or train-labels-idx1-ubyte\.gz\)"):
    load_dataset("idx", tmp_path / "mnist")


def test_idx_mismatched_counts_name_both_files(tmp_path):
  _write_idx_dir(tmp_path / "mnist", np.random.default_rng(5), (False,) * 4)
  files.save_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8))
  with pytest.raises(JaxdlError, match=r"t10k-images-idx3-ubyte has 10 examples but "
                                       r".*t10k-labels-idx1-ubyte has 9 labels"):
    load_dataset("idx", tmp_path / "mnist")


# ------------------------------------------------------------------- CIFAR-10 --


def _write_cifar(directory, rng, n_per_batch=4, n_test=10):
  directory.mkdir(parents=True)
  batches = []
  for name in (*files.CIFAR10_TRAIN, files.CIFAR10_TEST):
    n = n_test if name == files.CIFAR10_TEST else n_per_batch
    data, labels = _images(rng, n, (32, 32, 3)), rng.integers(0, 10, n)
    files.save_cifar10_batch(directory / name, data, labels)
    batches.append((data, labels))
  return batches


@pytest.mark.parametrize("point_at_parent", [False, True])
def test_cifar10_round_trip(tmp_path, point_at_parent):
  batches = _write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(6))
  ds = load_dataset("cifar10", tmp_path if point_at_parent else tmp_path / "cifar-10-batches-py")
  assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (10, 32, 32, 3)
  assert ds.kind == "image" and ds.num_classes == 10
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  np.testing.assert_array_equal(np.round(ds.x_train * 255).astype(np.uint8),
                                np.concatenate([d for d, _ in batches[:5]]))
  np.testing.assert_array_equal(ds.y_train, np.concatenate([y for _, y in batches[:5]]))
  np.testing.assert_array_equal(np.round(ds.x_test * 255).astype(np.uint8), batches[5][0])
  np.testing.assert_array_equal(ds.y_test, batches[5][1])
  json.dumps(ds.info)


def test_cifar10_batch_layout_is_channel_major(tmp_path):
  # The on-disk row is R plane, G plane, B plane (1024 values each).
  image = np.zeros((1, 32, 32, 3), np.uint8)
  image[0, 1, 2] = (10, 20, 30)  # pixel at row 1, column 2
  files.save_cifar10_batch(tmp_path / "b", image, [3])
  with open(tmp_path / "b", "rb") as f:
    batch = pickle.load(f, encoding="bytes")
  row = batch[b"data"][0]
  assert row.shape == (3072,) and batch[b"labels"] == [3]
  assert (row[1 * 32 + 2], row[1024 + 1 * 32 + 2], row[2048 + 1 * 32 + 2]) == (10, 20, 30)
  assert np.count_nonzero(row) == 3


def test_cifar10_missing_and_bad_batches(tmp_path):
  with pytest.raises(JaxdlError, match="not found"):
    load_dataset("cifar10", tmp_path / "nowhere")
  directory = tmp_path / "cifar-10-batches-py"
  _write_cifar(directory, np.random.default_rng(7))
  (directory / "data_batch_3").unlink()
  with pytest.raises(JaxdlError, match="missing batch file data_batch_3"):
    load_dataset("cifar10", tmp_path)
  (directory / "data_batch_3").write_bytes(b"garbage, not a pickle")
  with pytest.raises(JaxdlError, match=r"data_batch_3: not a readable pickle"):
    load_dataset("cifar10", tmp_path)
  with open(directory / "data_batch_3", "wb") as f:
    pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f)
  with pytest.raises(JaxdlError, match=r"data_batch_3: b'data' must be a uint8 array \(N, 3072\)"):
    load_dataset("cifar10", tmp_path)
  with open(directory / "data_batch_3", "wb") as f:
    pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, f)
  with pytest.raises(JaxdlError, match=r"data_batch_3: b'labels' must be 4 integers"):
    load_dataset("cifar10", tmp_path)
  with open(directory / "data_batch_3", "wb") as f:
    pickle.dump([1, 2, 3], f)
  with pytest.raises(JaxdlError, match=r"data_batch_3: expected a pickled dict"):
    load_dataset("cifar10", tmp_path)
  files.save_cifar10_batch(directory / "data_batch_3", np.zeros((4, 32, 32, 3), np.uint8), [0, 1, 2, 10])
  with pytest.raises(JaxdlError, match=r"b'labels'.*out of range for data.num_classes=10"):
    load_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------- load_dataset --


def test_unknown_name_lists_known_names():
  with pytest.raises(JaxdlError) as excinfo:
    load_dataset("imagenet")
  message = str(excinfo.value)
  assert "'imagenet'" in message
  for name in DATASETS:
    assert name in message


@pytest.mark.parametrize("name", ["npz", "idx", "cifar10"])
def test_path_required(name):
  for path in (None, ""):
    with pytest.raises(JaxdlError, match=rf"dataset '{name}' needs a path: set data.path to "):
      load_dataset(name, path)


def test_builtin_rejects_a_path_and_wrong_num_classes(tmp_path):
  with pytest.raises(JaxdlError, match=r"dataset 'digits' reads no files.*data.path"):
    load_dataset("digits", str(tmp_path))
  with pytest.raises(JaxdlError, match=r"data.num_classes=5"):
    load_dataset("digits", num_classes=5)


def test_dataset_registry_and_from_arrays():
  assert set(DATASETS) == {"digits", "mnist1d", "fsdd", "breast_cancer", "diabetes", "npz", "idx", "cifar10"}
  assert all(isinstance(v, str) and "\n" not in v for v in DATASETS.values())
  ds = Dataset.from_arrays("mine", np.ones((5, 3)), [0, 1, 0, 1, 1], np.ones((2, 3)), [1, 0])
  assert ds.kind == "vector" and ds.num_classes == 2 and ds.input_shape == (3,)
  assert "num_train=5" in repr(ds) and "array" not in repr(ds)
  with pytest.raises(JaxdlError, match="dataset 'mine', array 'y_test': label 2"):
    Dataset.from_arrays("mine", np.ones((5, 3)), [0, 1, 0, 1, 1], np.ones((2, 3)), [1, 2])
  with pytest.raises(JaxdlError, match="x_train must be a float32"):
    Dataset("raw", np.ones((2, 3)), np.zeros(2, np.int32), np.ones((1, 3), np.float32),
            np.zeros(1, np.int32), 2)


def test_npz_uint8_images_are_scaled_and_channels_first_is_refused(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (20, 6, 6, 1), dtype=np.uint8)
  y = np.arange(20) % 2
  files.save_npz(tmp_path / "u8.npz", x, y, x[:6], y[:6])
  ds = load_dataset("npz", tmp_path / "u8.npz")
  np.testing.assert_allclose(ds.x_train, x.astype(np.float32) / 255.0)
  assert ds.info["normalisation"] == "uint8 inputs divided by 255"
  chw = np.moveaxis(x, -1, 1).repeat(3, axis=1)  # (N, 3, 6, 6)
  files.save_npz(tmp_path / "chw.npz", chw, y, chw[:6], y[:6])
  with pytest.raises(JaxdlError, match=r"channels-last \(N, H, W, C\) expected"):
    load_dataset("npz", tmp_path / "chw.npz")
