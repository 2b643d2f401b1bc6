"""Datasets read from the user's own files, and writers for the same formats.

Three formats, each checked with one-line :class:`JaxdlError` messages that name
the file and the offending thing:

- ``.npz``: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``; inputs
  keep their per-example shape ((D,), (L, C) or (H, W, C), channels last).
  Padded sequences may add ``lengths_train`` and ``lengths_test`` (N,);
  integer ``x`` of shape (N, T) holds token ids, with an optional 0-d
  ``vocab_size``.
- IDX (MNIST, Fashion-MNIST): the four ``*-ubyte`` files in one directory,
  each optionally gzipped.
- CIFAR-10 python batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``).

The writers (:func:`save_npz`, :func:`save_idx`, :func:`save_cifar10_batch`)
produce files these readers accept, for tests and for converting data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import pickle
import zipfile
import zlib
from typing import Any, NoReturn

import numpy as np

from jaxdl.data.dataset import Dataset, build
from jaxdl.utils.errors import JaxdlError

PathLike = str | os.PathLike

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_OPTIONAL = ("lengths_train", "lengths_test", "vocab_size")
_NPY_MAGIC = b"\x93NUMPY"  # a bare .npy file, which np.load also accepts


def _fail(where: Any, problem: str) -> NoReturn:
  raise JaxdlError(f"{where}: {problem}")


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    # 1 MiB reads: few syscalls, small memory even for CIFAR's 30 MB batches.
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _scale_uint8(x: np.ndarray) -> np.ndarray:
  # uint8 pixels -> [0, 1]; float32 throughout so a 50k-image set stays 600 MB.
  return x.astype(np.float32) / np.float32(255)


# ------------------------------------------------------------------------ npz --


def save_npz(path: PathLike, x_train: Any, y_train: Any, x_test: Any, y_test: Any, **optional: Any) -> None:
  """Writes the four arrays to an uncompressed ``.npz`` that ``load_npz`` reads.

  Args:
    path: the file to write (numpy appends ``.npz`` if it is missing).
    x_train: inputs ``(N, ...)``.
    y_train: labels ``(N,)``.
    x_test: inputs ``(M, ...)``.
    y_test: labels ``(M,)``.
    **optional: ``lengths_train`` and ``lengths_test`` (N,) of padded
      sequences, ``vocab_size`` of token ids; None values are left out.
  """
  unknown = set(optional) - set(_NPZ_OPTIONAL)
  if unknown:
    raise ValueError(f"save_npz takes no array {sorted(unknown)[0]!r} (optional: {', '.join(_NPZ_OPTIONAL)})")
  extra = {key: np.asarray(value) for key, value in optional.items() if value is not None}
  np.savez(os.fspath(path), x_train=np.asarray(x_train), y_train=np.asarray(y_train),
           x_test=np.asarray(x_test), y_test=np.asarray(y_test), **extra)


def load_npz(path: PathLike, *, num_classes: int = 0, task: str = "classification") -> Dataset:
  """Loads a dataset from an ``.npz`` file holding the four arrays.

  Args:
    path: the file, with arrays ``x_train``, ``y_train``, ``x_test``,
      ``y_test``, and optionally ``lengths_train`` and ``lengths_test`` (the
      valid steps of padded sequences) and a 0-d ``vocab_size`` (token ids).
    num_classes: the number of classes; 0 infers ``max(y_train) + 1``.
    task: ``"regression"``: ``y_*`` are real-valued targets (N,) or (N, K),
      read as float32 (every one finite), instead of integer labels.

  Returns:
    The dataset: inputs float32 in their stored per-example shape, labels
    int32. ``uint8`` inputs are divided by 255 (as IDX and CIFAR-10 pixels
    are); other inputs are used as stored. Integer ``(N, T)`` inputs of
    another type (or any with ``vocab_size``) are token ids, int32, with the
    vocabulary ``vocab_size`` or ``max(id) + 1``.

  Raises:
    JaxdlError: a missing or unreadable file, a missing array, bad shapes,
      non-finite inputs or bad labels; the message names the file and array.
  """
  path = pathlib.Path(path).expanduser()
  where = f"npz file {path}"
  if not path.is_file():
    _fail(where, "not found" if not path.exists() else "is not a file")
  with open(path, "rb") as f:
    magic = f.read(len(_NPY_MAGIC))
  if magic == _NPY_MAGIC:
    _fail(where, "holds a single array (.npy); expected an .npz with "
                 f"{', '.join(_NPZ_KEYS)} (see jaxdl.data.files.save_npz)")
  if not zipfile.is_zipfile(path):
    _fail(where, "not an .npz archive (not a zip file)")
  try:
    # allow_pickle=False: an .npz can hold pickled object arrays, which would
    # run code on load; numeric data never needs them.
    archive = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    _fail(where, f"damaged .npz archive ({type(e).__name__}: {e})".replace("\n", " "))
  arrays = {}
  with archive:
    for key in (*_NPZ_KEYS, *_NPZ_OPTIONAL):
      if key not in archive.files:
        if key in _NPZ_OPTIONAL:
          continue
        _fail(where, f"missing array '{key}' (has: {', '.join(archive.files) or 'nothing'})")
      try:
        arrays[key] = archive[key]
      except ValueError as e:
        if "pickle" in str(e):  # numpy's refusal to unpickle an object array
          _fail(f"{where}, array '{key}'", "holds Python objects (dtype=object); "
                                          "only numeric arrays are read")
        _fail(f"{where}, array '{key}'", f"unreadable ({e})".replace("\n", " "))
      except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        _fail(f"{where}, array '{key}'", f"unreadable ({e})".replace("\n", " "))
  vocab_size = _vocab_size(arrays.pop("vocab_size", None), where)
  normalisation = "none (values as stored)"
  if all(arrays[k].dtype == np.uint8 for k in ("x_train", "x_test")) and not vocab_size:
    # 8-bit pixels: scaled to [0, 1] as the IDX and CIFAR-10 loaders do.
    arrays["x_train"], arrays["x_test"] = (arrays[k].astype(np.float32) / 255.0 for k in ("x_train", "x_test"))
    normalisation = "uint8 inputs divided by 255"
  shape = arrays["x_train"].shape
  if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3, 4) and shape[2] == shape[3]:
    _fail(f"{where}, array 'x_train'", f"has shape {shape}, which looks channels-first (N, C, H, W); "
                                       f"channels-last (N, H, W, C) expected: np.moveaxis(x, 1, -1)")
  info = {"source": "npz", "path": str(path.resolve()), "sha256": {path.name: _sha256(path)},
          "normalisation": normalisation}
  return build("npz", arrays, {key: f"array '{key}'" for key in (*_NPZ_KEYS, *_NPZ_OPTIONAL)}, source=where,
               num_classes=num_classes, info=info, vocab_size=vocab_size, task=task)


def _vocab_size(array: np.ndarray | None, where: str) -> int:
  """The 0-d ``vocab_size`` array of an .npz as an int (0 when absent)."""
  if array is None:
    return 0
  if array.shape != () or array.dtype.kind not in "iu" or array < 1:
    _fail(f"{where}, array 'vocab_size'", f"must be a positive integer scalar (0-d), got {array.dtype} "
                                          f"{array.shape}" + (f" {array.item()}" if array.size == 1 else ""))
  return int(array)


# ------------------------------------------------------------------------ IDX --

# IDX type codes (third magic byte) -> big-endian dtypes, from the format's
# definition on the MNIST page.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder("=").name: code for code, dtype in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def save_idx(path: PathLike, array: Any) -> None:
  """Writes an array as an IDX file, gzipped when ``path`` ends with ``.gz``.

  Args:
    path: the file to write.
    array: uint8 (MNIST's images and labels), int8, int16, int32, float32 or
      float64, of rank 1 to 255.

  Raises:
    ValueError: for a dtype or rank IDX cannot hold.
  """
  array = np.asarray(array)
  code = _IDX_CODES.get(array.dtype.name)
  if code is None:
    raise ValueError(f"IDX cannot store dtype {array.dtype} (supported: {sorted(_IDX_CODES)})")
  if not 1 <= array.ndim <= 255:
    raise ValueError(f"IDX needs rank 1 to 255, got shape {array.shape}")
  # Magic: two zero bytes, the type code, the rank; then big-endian uint32 dims.
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  payload = np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
  path = os.fspath(path)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + payload)


def read_idx(path: PathLike) -> np.ndarray:
  """Reads one IDX file (plain or gzipped, detected from its first bytes).

  Args:
    path: the file.

  Returns:
    The array in native byte order, shaped as its header says.

  Raises:
    JaxdlError: a missing, unreadable, malformed or truncated file.
  """
  path = pathlib.Path(path).expanduser()
  where = f"IDX file {path}"
  if not path.is_file():
    _fail(where, "not found")
  try:
    with open(path, "rb") as f:
      raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
      raw = gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    # gzip raises EOFError for a cut-off stream, BadGzipFile (OSError) for junk.
    _fail(where, f"unreadable or truncated gzip data ({e})")
  if len(raw) < 4:
    _fail(where, f"truncated: {len(raw)} bytes, shorter than the 4-byte magic number")
  if raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
    _fail(where, f"not an IDX file (magic bytes {raw[:4].hex()}, expected 0000 + a type "
                 f"code in {', '.join(f'{c:02x}' for c in _IDX_DTYPES)} + the rank)")
  dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
  if ndim == 0:
    _fail(where, "header gives rank 0")
  offset = 4 + 4 * ndim
  if len(raw) < offset:
    _fail(where, f"truncated inside the header ({len(raw)} of {offset} bytes)")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  found = len(raw) - offset
  if found < expected:
    _fail(where, f"truncated: header says shape {shape} ({expected} bytes of data), "
                 f"found {found} bytes")
  if found > expected:
    _fail(where, f"{found - expected} unexpected bytes after the data of shape {shape}")
  array = np.frombuffer(raw, dtype, offset=offset).reshape(shape)
  return array.astype(dtype.newbyteorder("="))  # a writable native-order copy


def _find_idx(directory: pathlib.Path, stem: str) -> pathlib.Path:
  for candidate in (directory / stem, directory / f"{stem}.gz"):
    if candidate.is_file():
      return candidate
  _fail(f"IDX directory {directory}", f"missing {stem} (or {stem}.gz)")


def load_idx(path: PathLike, *, num_classes: int = 0) -> Dataset:
  """Loads MNIST-style IDX files from a directory.

  Args:
    path: a directory with ``train-images-idx3-ubyte``,
      ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
      ``t10k-labels-idx1-ubyte``, each optionally with a ``.gz`` suffix.
    num_classes: the number of classes; 0 infers ``max(y_train) + 1``.

  Returns:
    The dataset: images ``(N, H, W, 1)`` float32 in [0, 1] (pixels / 255),
    labels int32.

  Raises:
    JaxdlError: a missing directory or file, a malformed or truncated file,
      images that are not uint8 ``(N, H, W)``, or bad labels.
  """
  directory = pathlib.Path(path).expanduser()
  if not directory.is_dir():
    _fail(f"IDX directory {directory}", "not found" if not directory.exists()
          else "is not a directory")
  files = {key: _find_idx(directory, stem) for key, stem in IDX_FILES.items()}
  arrays = {}
  for key, file in files.items():
    array = read_idx(file)
    if key.startswith("x"):
      if array.dtype != np.uint8 or array.ndim != 3:
        _fail(f"IDX file {file}", f"images must be uint8 (N, H, W), got {array.dtype} "
                                  f"{array.shape}")
      array = _scale_uint8(array)[..., None]  # (N, H, W, 1)
    arrays[key] = array
  info = {"source": "idx", "path": str(directory.resolve()),
          "sha256": {file.name: _sha256(file) for file in files.values()},
          "normalisation": "pixels / 255"}
  return build("idx", arrays, {key: f"IDX file {file}" for key, file in files.items()},
               num_classes=num_classes, info=info)


# ------------------------------------------------------------------- CIFAR-10 --

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
_CIFAR_SUBDIR = "cifar-10-batches-py"
_CIFAR_HWC = (32, 32, 3)


def save_cifar10_batch(path: PathLike, data: Any, labels: Any) -> None:
  """Writes a CIFAR-10 python batch (the pickle layout of the original files).

  Args:
    path: the file to write (e.g. ``dir/data_batch_1``).
    data: uint8 images ``(N, 32, 32, 3)``, channels last.
    labels: integer labels ``(N,)``.

  Raises:
    ValueError: for data that is not uint8 ``(N, 32, 32, 3)`` or labels of
      another length.
  """
  data = np.asarray(data)
  labels = np.asarray(labels)
  if data.dtype != np.uint8 or data.shape[1:] != _CIFAR_HWC:
    raise ValueError(f"data must be uint8 (N, 32, 32, 3), got {data.dtype} {data.shape}")
  if labels.shape != data.shape[:1]:
    raise ValueError(f"labels must have shape ({len(data)},), got {labels.shape}")
  # The original rows are channel-major: 1024 red, 1024 green, 1024 blue values.
  rows = data.transpose(0, 3, 1, 2).reshape(len(data), -1)  # (N, 3072)
  batch = {
      b"batch_label": os.path.basename(os.fspath(path)).encode(),
      b"labels": [int(label) for label in labels],
      b"data": rows,
      b"filenames": [f"{i:05d}.png".encode() for i in range(len(data))],
  }
  with open(path, "wb") as f:
    pickle.dump(batch, f, protocol=2)


def _read_cifar10_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  where = f"CIFAR-10 batch {path}"
  try:
    with open(path, "rb") as f:
      # Pickles can execute code when loaded; these are the named batch files in
      # the directory the user pointed at, read the same way the dataset's own
      # instructions read them. encoding="bytes" keeps Python 2 str keys as bytes.
      batch = pickle.load(f, encoding="bytes")
  except Exception as e:  # noqa: BLE001 -- a bad pickle raises almost anything
    _fail(where, f"not a readable pickle ({type(e).__name__}: {e})".replace("\n", " "))
  if not isinstance(batch, dict):
    _fail(where, f"expected a pickled dict, got {type(batch).__name__}")
  # Keys are bytes in the original files; also accept str from a Python 3 writer.
  batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
  for key in ("data", "labels"):
    if key not in batch:
      _fail(where, f"missing key b'{key}'")
  data = batch["data"]
  if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
      or data.shape[1] != np.prod(_CIFAR_HWC):
    _fail(where, "b'data' must be a uint8 array (N, 3072), got "
                 f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
  try:
    labels = np.asarray(batch["labels"])
  except (TypeError, ValueError) as e:
    _fail(where, f"b'labels' is not a list of integers ({e})")
  if labels.shape != data.shape[:1] or labels.dtype.kind not in "iu":
    _fail(where, f"b'labels' must be {len(data)} integers, got {labels.dtype} {labels.shape}")
  images = data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
  return images, labels


def load_cifar10(path: PathLike, *, num_classes: int = 0) -> Dataset:
  """Loads CIFAR-10 from its python batches.

  The batches are pickles, and loading a pickle can run code: only point this
  at a copy of the dataset you trust. Only the six named files are read.

  Args:
    path: the ``cifar-10-batches-py`` directory, or its parent.
    num_classes: the number of classes; 0 means 10.

  Returns:
    The dataset: images ``(N, 32, 32, 3)`` float32 in [0, 1] (pixels / 255),
    labels int32; 50000 / 10000 examples for the full dataset.

  Raises:
    JaxdlError: a missing directory or batch, or a batch with bad contents.
  """
  directory = pathlib.Path(path).expanduser()
  if (directory / _CIFAR_SUBDIR).is_dir():
    directory = directory / _CIFAR_SUBDIR
  where = f"CIFAR-10 directory {directory}"
  if not directory.is_dir():
    _fail(where, "not found" if not directory.exists() else "is not a directory")
  names = (*CIFAR10_TRAIN, CIFAR10_TEST)
  for name in names:
    if not (directory / name).is_file():
      _fail(where, f"missing batch file {name}")
  train = [_read_cifar10_batch(directory / name) for name in CIFAR10_TRAIN]
  x_test, y_test = _read_cifar10_batch(directory / CIFAR10_TEST)
  arrays = {
      "x_train": _scale_uint8(np.concatenate([x for x, _ in train])),
      "y_train": np.concatenate([y for _, y in train]),
      "x_test": _scale_uint8(x_test),
      "y_test": y_test,
  }
  info = {"source": "cifar10", "path": str(directory.resolve()),
          "sha256": {name: _sha256(directory / name) for name in names},
          "normalisation": "pixels / 255"}
  train_where = f"CIFAR-10 batches {CIFAR10_TRAIN[0]}..{CIFAR10_TRAIN[-1]} in {directory}"
  test_where = f"CIFAR-10 batch {directory / CIFAR10_TEST}"
  where = {"x_train": f"{train_where}, b'data'", "y_train": f"{train_where}, b'labels'",
           "x_test": f"{test_where}, b'data'", "y_test": f"{test_where}, b'labels'"}
  # CIFAR-10 has 10 classes even if a cut-down copy lacks the last ones.
  return build("cifar10", arrays, where, num_classes=num_classes or 10, info=info)
