"""Text as integer tokens for character-level language models.

Two sources, by ``data.name``:

- ``pystdlib``: the default corpus, real text that every machine with Python
  has offline: the source and docstrings of a fixed list of standard-library
  modules (:data:`PYSTDLIB_FILES`), read from the running interpreter's
  installation (``sysconfig.get_paths()["stdlib"]``). The files differ
  between Python versions, so the SHA-256 of their concatenated bytes is
  recorded with every run; a listed file that is missing is an error, never
  silently replaced.
- ``text``: the user's UTF-8 text file (``data.path``).

From Python, :func:`corpus_from_text` takes a ``str`` in memory instead.

The vocabulary is the sorted set of characters in the whole text (train and
validation, so no validation character is out of vocabulary), non-ASCII
included. The split is by position: the last ``val_fraction`` of the text is
the validation split, so no validation window overlaps a training one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import platform
import sysconfig

import numpy as np

from jaxdl.utils.errors import JaxdlError

# Relative to the stdlib directory; alphabetical, so the validation split
# (the last tenth by default) is the end of the list: threading, tokenize and
# weakref, ordinary library code. Chosen to be plain modules with long
# docstrings that exist, as single files, in CPython 3.11 to 3.13
# (about 1.2 MB in 3.11). Packages that moved (pathlib, sysconfig) and
# modules removed by PEP 594 are left out.
PYSTDLIB_FILES: tuple[str, ...] = (
    "abc.py",
    "argparse.py",
    "base64.py",
    "bisect.py",
    "calendar.py",
    "cmd.py",
    "collections/__init__.py",
    "colorsys.py",
    "configparser.py",
    "contextlib.py",
    "copy.py",
    "csv.py",
    "dataclasses.py",
    "difflib.py",
    "enum.py",
    "fnmatch.py",
    "fractions.py",
    "functools.py",
    "getopt.py",
    "gettext.py",
    "graphlib.py",
    "heapq.py",
    "ipaddress.py",
    "json/decoder.py",
    "json/encoder.py",
    "numbers.py",
    "operator.py",
    "pprint.py",
    "queue.py",
    "random.py",
    "reprlib.py",
    "sched.py",
    "shlex.py",
    "shutil.py",
    "statistics.py",
    "tempfile.py",
    "textwrap.py",
    "threading.py",
    "tokenize.py",
    "weakref.py",
)

TEXT_DATASETS: dict[str, str] = {
    "pystdlib": f"the source of {len(PYSTDLIB_FILES)} Python standard-library modules, read "
                "from the running interpreter (about 1.2 MB, no download)",
    "text": "a UTF-8 text file (data.path)",
}


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TextCorpus:
  """A text and its characters as integer tokens.

  Attributes:
    name: ``pystdlib`` or ``text``.
    text: the whole text.
    vocab: the characters, token id -> character, sorted by code point.
    ids: the text as token ids, (N,) int32.
    info: JSON-able facts: source, files, ``sha256`` of the bytes read,
      ``num_files``.
  """

  name: str
  text: str
  vocab: tuple[str, ...]
  ids: np.ndarray
  info: dict

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def __repr__(self) -> str:
    return (f"TextCorpus(name={self.name!r}, chars={len(self.ids)}, "
            f"vocab_size={self.vocab_size}, files={self.info.get('num_files')})")


def encode(text: str, vocab: tuple[str, ...] | list[str]) -> np.ndarray:
  """Token ids (N,) int32 of ``text``; a character outside ``vocab`` is an error naming it."""
  index = {c: i for i, c in enumerate(vocab)}
  try:
    return np.fromiter((index[c] for c in text), np.int32, count=len(text))
  except KeyError as e:
    raise JaxdlError(f"character {e.args[0]!r} is not in the vocabulary of "
                     f"{len(vocab)} characters") from None


def decode(ids, vocab: tuple[str, ...] | list[str]) -> str:
  """The text of token ids."""
  return "".join(vocab[int(i)] for i in np.asarray(ids).reshape(-1))


def build_vocab(text: str) -> tuple[str, ...]:
  """The sorted distinct characters of ``text``."""
  return tuple(sorted(set(text)))


def stdlib_dir() -> pathlib.Path:
  """The running interpreter's standard-library directory."""
  return pathlib.Path(sysconfig.get_paths()["stdlib"])


def _decode(data: bytes, where: str) -> str:
  """UTF-8 text of ``data``, or a one-line error for bytes that are not text."""
  nul = data.find(b"\x00")
  if nul >= 0:
    # No text encoding jaxdl reads puts NUL in text; images, archives and
    # arrays are full of them.
    raise JaxdlError(f"{where} is not text: it contains NUL bytes (binary data, first at "
                     f"byte {nul})")
  try:
    return data.decode("utf-8-sig")  # a leading BOM is not part of the text
  except UnicodeDecodeError as e:
    raise JaxdlError(f"{where} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset "
                     f"{e.start} is invalid") from None


def read_pystdlib() -> tuple[str, dict]:
  """The default corpus: the listed stdlib files, concatenated in list order."""
  root = stdlib_dir()
  chunks = []
  for rel in PYSTDLIB_FILES:
    path = root / rel
    try:
      chunks.append(path.read_bytes())
    except OSError:
      raise JaxdlError(f"data.name=pystdlib: standard-library file {rel} is missing from "
                       f"{root} (Python {platform.python_version()}); use data.name=text "
                       f"with data.path=FILE") from None
  data = b"".join(chunks)
  info = {"source": "python-stdlib", "stdlib": str(root),
          "python": platform.python_version(), "files": list(PYSTDLIB_FILES),
          "num_files": len(PYSTDLIB_FILES), "bytes": len(data),
          "sha256": hashlib.sha256(data).hexdigest()}
  return _decode(data, f"data.name=pystdlib ({root})"), info


def read_text_file(path: str | os.PathLike) -> tuple[str, dict]:
  """A user's UTF-8 text file."""
  where = f"data.path={os.fspath(path)}"
  path = pathlib.Path(path)
  if not path.is_file():
    raise JaxdlError(f"{where}: no such file" + (" (it is a directory)" if path.is_dir() else ""))
  try:
    data = path.read_bytes()
  except OSError as e:
    raise JaxdlError(f"{where}: cannot read it ({e.strerror})") from None
  if not data.strip():
    raise JaxdlError(f"{where} is empty" + (" (whitespace only)" if data else ""))
  info = {"source": str(path.resolve()), "files": [str(path)], "num_files": 1,
          "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
  return _decode(data, where), info


def load_text(name: str, path: str | os.PathLike | None = None) -> TextCorpus:
  """Loads a corpus by name (the ``data.*`` keys of a language-model config).

  Args:
    name: ``pystdlib`` or ``text`` (``data.name``).
    path: the text file for ``text`` (``data.path``); empty for ``pystdlib``.

  Returns:
    The corpus with its vocabulary and token ids.

  Raises:
    JaxdlError: an unknown name, a missing or superfluous path, a missing
      stdlib file, or a file that is empty or not UTF-8 text.
  """
  key = str(name).strip().lower()
  path = os.fspath(path) if path else ""
  if key == "pystdlib":
    if path:
      raise JaxdlError(f"dataset 'pystdlib' reads no user file, but data.path={path!r} is set; "
                       "use data.name=text for your own file")
    text, info = read_pystdlib()
  elif key == "text":
    if not path:
      raise JaxdlError("dataset 'text' needs a path: set data.path to a UTF-8 text file")
    text, info = read_text_file(path)
  else:
    raise JaxdlError(f"unknown text dataset {name!r} (data.name); language models read: "
                     f"{', '.join(TEXT_DATASETS)}")
  vocab = build_vocab(text)
  return TextCorpus(name=key, text=text, vocab=vocab, ids=encode(text, vocab), info=info)


def corpus_from_text(text: str) -> TextCorpus:
  """A corpus of a text in memory (``train_and_evaluate(..., text=...)``).

  ``info["sha256"]`` is the SHA-256 of the text's UTF-8 bytes, as for a file
  holding it.

  Raises:
    JaxdlError: ``text`` is not a ``str``, or is empty or whitespace only.
  """
  if not isinstance(text, str):
    raise JaxdlError(f"text must be a str (the text itself), not {type(text).__name__}; for a file, use "
                     f"data.name=text with data.path=FILE")
  if not text.strip():
    raise JaxdlError("the text passed in is empty" + (" (whitespace only)" if text else ""))
  try:
    data = text.encode("utf-8")
  except UnicodeEncodeError as e:  # a lone surrogate, say
    raise JaxdlError(f"the text passed in is not valid Unicode: {text[e.start]!r} at character {e.start}") from None
  info = {"source": "text passed in from Python", "files": [], "num_files": 0, "bytes": len(data),
          "sha256": hashlib.sha256(data).hexdigest()}
  vocab = build_vocab(text)
  return TextCorpus(name="text", text=text, vocab=vocab, ids=encode(text, vocab), info=info)


def split_by_position(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """(train, validation): the first ``1 - val_fraction`` of the tokens and the rest."""
  if not 0 < val_fraction < 1:
    raise JaxdlError(f"data.val_fraction={val_fraction} must be in (0, 1)")
  cut = len(ids) - int(round(len(ids) * val_fraction))
  return ids[:cut], ids[cut:]


def unigram_bpc(train: np.ndarray, targets: np.ndarray, vocab_size: int) -> float:
  """Bits per character of an add-one (Laplace) smoothed unigram model fit on ``train``.

  Args:
    train: token ids the counts come from.
    targets: token ids to score.
    vocab_size: V; every token gets one extra count.

  Returns:
    ``-mean(log2 p(target))`` with ``p(c) = (n_c + 1) / (N + V)``.
  """
  counts = np.bincount(train, minlength=vocab_size).astype(np.float64)
  p = (counts + 1.0) / (counts.sum() + vocab_size)
  return float(-np.log2(p[targets]).mean())


def bigram_bpc(train: np.ndarray, contexts: np.ndarray, targets: np.ndarray,
               vocab_size: int) -> float:
  """Bits per character of an add-one smoothed bigram model fit on ``train``.

  ``p(b | a) = (n_ab + 1) / (n_a. + V)``, with ``n_a.`` the number of
  bigrams starting with ``a``. Pair counts are kept sparse (sorted pair
  codes), so a vocabulary of thousands of characters does not need a V x V
  table.

  Args:
    train: token ids the counts come from.
    contexts: the previous token of each target.
    targets: token ids to score, aligned with ``contexts``.
    vocab_size: V.

  Returns:
    ``-mean(log2 p(target | context))``.
  """
  v = np.int64(vocab_size)
  pairs = train[:-1].astype(np.int64) * v + train[1:]
  codes, counts = np.unique(pairs, return_counts=True)
  row = np.bincount(train[:-1], minlength=vocab_size).astype(np.float64)  # n_a.
  query = contexts.astype(np.int64) * v + targets
  at = np.clip(np.searchsorted(codes, query), 0, max(len(codes) - 1, 0))
  n_ab = np.where(codes[at] == query, counts[at], 0) if len(codes) else np.zeros(len(query))
  p = (n_ab + 1.0) / (row[contexts] + vocab_size)
  return float(-np.log2(p).mean())
