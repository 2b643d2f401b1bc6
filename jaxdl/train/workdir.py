"""One run per workdir: fresh start, exact resume, or a one-line refusal.

A workdir holds one run. Running the same command again resumes it from its
latest intact checkpoint. Changing anything that alters the result (model,
data, seed, optimizer, augmentation) is refused rather than silently mixing
two runs; changing only how long it trains or how often it logs is allowed,
and a longer run only where the learning-rate schedule does not span
``train.steps``, or where ``optim.extend_from`` says how it goes on (see
:func:`_check_extension`). While a run trains, :func:`lock` keeps a second
process out.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

from jaxdl.configs import flatten
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.io import write_atomic

# Keys that may differ on resume: they change when things happen or where,
# never what a step computes. (train.num_devices changes float rounding only.)
# train.steps and optim.extend_* are checked together, by _check_extension.
HARMLESS = ("train.steps", "train.log_every", "train.eval_every", "train.eval_batch_size",
            "train.num_devices", "train.distributed", "train.nan_policy", "checkpoint.",
            "optim.extend_from", "optim.extend_mode", "train.log_layer_stats",
            "train.compile_cache", "train.distributed_timeout_s",
            "train.sharding")  # a layout: checkpoints restore across them (jaxdl.train.sharding)
# Keys added with a default that is not "off" but does what runs before them
# did: a saved run that predates such a key resumes as before while the key
# holds this value (see config_differences).
EARLIER_DEFAULTS = {"train.task": "classification", "train.huber_delta": 1.0, "augment.num_masks": 1,
                    "train.dtype": "float32", "train.accumulate_steps": 1}
# The lock file of a live run; it is not part of the run (an empty workdir
# holding only a stale lock is still empty).
LOCK_FILE = ".lock"
# What a run trained on when that is arrays (a jaxdl.Dataset): written by record_dataset.
DATA_FILE = "data.json"


def _turns_nothing_on(value: Any) -> bool:
  return value in (False, 0, "", None) or (isinstance(value, (list, tuple)) and tuple(value) in ((), ("*",)))


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """Dotted keys whose values differ and matter, sorted.

  A key only the saved config has is not one: the current config holds every
  key its loop reads, so the run cannot depend on it (a run started before
  the loops' schemas dropped the keys they never read resumes as before).
  Nor is a key the saved run predates whose value turns nothing on (false,
  0, empty, or the match-everything pattern ``('*',)``, or its
  ``EARLIER_DEFAULTS`` value): a run started before a loop gained an option
  resumes as before, and one that sets it is refused.
  """
  a, b = flatten(saved), flatten(current)
  keys = {k for k in b if a.get(k, "<absent>") != b[k]
          and not (k not in a and (_turns_nothing_on(b[k]) or EARLIER_DEFAULTS.get(k, ()) == b[k]))}
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


def _layout(config: dict[str, Any]) -> tuple[int, int, str]:
  """(train.steps, optim.extend_from, optim.extend_mode): how a flat config lays its schedule out."""
  first = config.get("optim.extend_from", 0) or 0
  return config.get("train.steps"), first, config.get("optim.extend_mode", "constant") if first else ""


def _check_extension(workdir: pathlib.Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
  """A different ``train.steps`` is refused when it would change the schedule of the steps already taken.

  A cosine (or warmup-cosine, step, linear) schedule is laid out over
  ``train.steps``: resuming with another total would re-stretch it mid-run,
  and the result would be neither the short run nor the long one. Allowed:
  the same layout; a run of N steps extended with ``optim.extend_from=N``
  (its schedule kept up to N, then ``optim.extend_mode``'s segment); and an
  extension whose segment is 'constant', run longer again.
  """
  if current.get("optim.schedule", "constant") == "constant":
    return
  (before, first_before, mode_before), (after, first, mode) = _layout(saved), _layout(current)
  if before is None or after is None:
    return
  if (first_before, mode_before) == (first, mode):
    if before == after or mode == "constant":  # a constant tail is the same at any length
      return
  elif first_before == 0 and first == before:  # extending the run it holds
    return
  schedule = current["optim.schedule"]
  if first_before:
    raise JaxdlError(
        f"workdir {workdir} holds a {first_before}-step run extended to train.steps={before} "
        f"(optim.extend_mode={mode_before}); train.steps={after}, optim.extend_from={first} and "
        f"optim.extend_mode={mode or 'constant'} would change its schedule: resume with train.steps={before}, "
        f"optim.extend_from={first_before} and optim.extend_mode={mode_before}, or choose another --workdir")
  if first:
    raise JaxdlError(f"workdir {workdir} holds a run of train.steps={before}: optim.extend_from={first} must be "
                     f"that run's train.steps={before}")
  how = (f", extend it with --set optim.extend_from={before} (then optim.extend_mode=constant goes on at the "
         f"final rate, restart lays the schedule out afresh over the new steps)"
         if "optim.extend_from" in current else "")
  raise JaxdlError(
      f"workdir {workdir} holds a run of train.steps={before}; train.steps={after} would re-stretch its "
      f"optim.schedule='{schedule}', which spans train.steps: resume with train.steps={before}{how}, or "
      f"start the longer run in another --workdir")


def record_inputs(workdir: pathlib.Path, filename: str, record: dict[str, Any], *, resuming: bool,
                  digest_of: Callable[[dict], Any], refusal: Callable[[dict], str]) -> None:
  """Writes what a run trains on (``record``) to ``workdir/filename``, or on resume checks it.

  A run's config names its data, but data passed in from Python (arrays,
  a text) is only known by its hash: this file keeps that hash, so a resume
  with other inputs is refused instead of mixing two runs. Only process 0
  writes.

  Args:
    workdir: the run's directory.
    filename: the record's file name (``data.json``, ``vocab.json``).
    record: JSON-able facts about the inputs, their SHA-256 among them.
    resuming: whether the run resumes an earlier one.
    digest_of: the SHA-256 in a record (this one or the saved one).
    refusal: the one-line message for a saved record whose digest differs.

  Raises:
    JaxdlError: on resume, the saved record's digest is not this one's.
  """
  from jax import process_index  # noqa: PLC0415 -- see lock()

  path = workdir / filename
  if resuming and path.is_file():
    saved = json.loads(path.read_text(encoding="utf-8"))
    if digest_of(saved) != digest_of(record):
      raise JaxdlError(refusal(saved))
  elif process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1) + "\n")


def record_dataset(workdir: pathlib.Path, dataset: Any, *, resuming: bool) -> None:
  """:func:`record_inputs` for a ``jaxdl.Dataset``: ``data.json`` with its SHA-256, shapes and sizes."""
  ds = dataset
  record = {"name": ds.name, "sha256": ds.sha256, "input_shape": list(ds.input_shape),
            "num_classes": ds.num_classes, "num_train": ds.num_train, "num_test": ds.num_test}
  if ds.vocab_size:  # token ids: the model's embedding has this many rows
    record["vocab_size"] = ds.vocab_size
  record_inputs(
      workdir, DATA_FILE, record, resuming=resuming, digest_of=lambda r: r.get("sha256"),
      refusal=lambda saved: (
          f"the data of the run in {workdir} ({saved.get('name')}, sha256 {str(saved.get('sha256'))[:12]}...) "
          f"is not this data ({ds.name}, sha256 {ds.sha256[:12]}...): resume with the same data or choose "
          f"another --workdir"))


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
