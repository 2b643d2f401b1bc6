"""One atomic file write, for every file jaxdl leaves that a crash must not cut in half."""

import contextlib
import os
import pathlib
import tempfile


def write_atomic(path: str | os.PathLike, data: str | bytes, *, fsync: bool = False) -> pathlib.Path:
  """Writes ``data`` to ``path`` so that readers see the old file or the whole new one.

  The bytes go to a uniquely named temporary file in the same directory (so
  concurrent writers of one path never share it) that is then renamed over
  ``path``.

  Args:
    path: the file to write.
    data: text (written as UTF-8) or bytes.
    fsync: also flush the file to disk before the rename: for a file that a
      later file (a checkpoint) relies on surviving a power cut, not only a
      killed process.

  Returns:
    ``path``.
  """
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data.encode("utf-8") if isinstance(data, str) else data)
      if fsync:
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise
  return path
