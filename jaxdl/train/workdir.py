"""One run per workdir: fresh start, exact resume, or a one-line refusal.

A workdir holds one run. Running the same command again resumes it from its
latest intact checkpoint. Changing anything that alters the result (model,
data, seed, optimizer, augmentation) is refused rather than silently mixing
two runs; changing only how long it trains or how often it logs is allowed,
and a longer run only where the learning-rate schedule does not span
``train.steps``. While a run trains, :func:`lock` keeps a second process out.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import socket
from collections.abc import Iterator
from typing import Any

from jaxdl.configs import flatten
from jaxdl.utils.errors import JaxdlError

# Keys that may differ on resume: they change when things happen or where,
# never what a step computes. (train.num_devices changes float rounding only.)
HARMLESS = ("train.steps", "train.log_every", "train.eval_every", "train.eval_batch_size",
            "train.num_devices", "train.distributed", "train.nan_policy", "checkpoint.")
# The lock file of a live run; it is not part of the run (an empty workdir
# holding only a stale lock is still empty).
LOCK_FILE = ".lock"


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """Dotted keys whose values differ and matter, sorted.

  A key only the saved config has is not one: the current config holds every
  key its loop reads, so the run cannot depend on it (a run started before
  the loops' schemas dropped the keys they never read resumes as before).
  """
  a, b = flatten(saved), flatten(current)
  keys = {k for k in b if a.get(k, "<absent>") != b[k]}
  return sorted(k for k in keys if not any(k == h or (h.endswith(".") and k.startswith(h)) for h in HARMLESS))


def check(workdir: str | pathlib.Path, config: dict[str, Any], *, resume: bool) -> bool:
  """Decides whether a run may use ``workdir``; writes nothing.

  Args:
    workdir: the run's directory.
    config: the resolved config as a plain dict.
    resume: ``checkpoint.resume``.

  Returns:
    True when the workdir holds an earlier run of this config (resume from
    it), False when it is new or empty.

  Raises:
    JaxdlError: the workdir holds something this run must not touch.
  """
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise JaxdlError(f"workdir {workdir} is a file, not a directory")
  if not workdir.is_dir() or not any(p.name != LOCK_FILE for p in workdir.iterdir()):
    return False
  if not resume:
    raise JaxdlError(f"workdir {workdir} is not empty and checkpoint.resume=false: "
                     f"choose another --workdir or empty it")
  saved_path = workdir / "config.json"
  if not saved_path.is_file():
    raise JaxdlError(f"workdir {workdir} is not empty and holds no jaxdl run (no config.json): "
                     f"choose another --workdir")
  try:
    saved = json.loads(saved_path.read_text())
  except (OSError, ValueError) as e:
    raise JaxdlError(f"{saved_path} is unreadable ({e}); choose another --workdir") from None
  diffs = config_differences(saved, config)
  if diffs:
    shown = ", ".join(f"{k} ({flatten(saved).get(k, '<absent>')!r} -> {flatten(config).get(k, '<absent>')!r})"
                      for k in diffs[:6]) + (f" and {len(diffs) - 6} more" if len(diffs) > 6 else "")
    raise JaxdlError(f"workdir {workdir} holds a run with a different config: {shown}; "
                     f"resume with the same config or choose another --workdir")
  _check_extension(workdir, flatten(saved), flatten(config))
  return True


def _check_extension(workdir: pathlib.Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
  """A different ``train.steps`` is refused when the schedule spans it.

  A cosine (or warmup-cosine, step, linear) schedule is laid out over
  ``train.steps``: resuming with another total would re-stretch it mid-run,
  and the result would be neither the short run nor the long one.
  """
  schedule = current.get("optim.schedule", "constant")
  before, after = saved.get("train.steps"), current.get("train.steps")
  if before is not None and after is not None and before != after and schedule != "constant":
    raise JaxdlError(
        f"workdir {workdir} holds a run of train.steps={before}; train.steps={after} would re-stretch "
        f"its optim.schedule='{schedule}', which spans train.steps: resume with train.steps={before}, "
        f"or start the longer run in another --workdir (a 'constant' schedule can be extended)")


@contextlib.contextmanager
def lock(workdir: str | pathlib.Path) -> Iterator[None]:
  """Holds ``workdir/.lock`` while a run uses the workdir: a second process is refused.

  The lock is an ``flock`` on the file, so the kernel releases it when the
  process ends, however it ends: a crashed run never leaves it stuck. Only
  process 0 takes it.

  Raises:
    JaxdlError: another live process holds it (named by its pid and host).
  """
  from jax import process_index  # noqa: PLC0415 -- this module is imported by the CLI before JAX is needed

  if process_index() != 0:
    yield
    return
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
      raise JaxdlError(f"workdir {workdir} is in use by a live run ({holder}); wait for it to end "
                       f"or choose another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the flock
