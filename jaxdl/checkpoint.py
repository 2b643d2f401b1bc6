"""Orbax checkpoints that survive anything: exact resume, integrity, fallback.

A checkpoint is one Orbax step directory holding two items:

- ``state``: every array of the training state (params, optimizer state,
  batch statistics, step, PRNG key, counters) as a flat dict keyed by dotted
  path (``params.Dense_0.kernel``), written asynchronously;
- ``integrity``: JSON with each array's SHA-256, shape and dtype.

Orbax notices missing or truncated files, but restores overwritten bytes
silently, so every restore recomputes the checksums. A damaged checkpoint is
reported in one line, moved aside to ``checkpoints_damaged/`` (never
deleted), and the next older one is tried.

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=3)
    state = ckpt.restore_latest(state) or state     # resume if anything is there
    ckpt.save(step, state)                          # returns at once; written in the background
    ckpt.close()                                    # waits for the last write
"""

import fnmatch
import hashlib
import logging
import os
import pathlib
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax
import jax
import numpy as np
from flax import traverse_util

from jaxdl.utils.errors import JaxdlError

SEP = "."  # path separator in checkpoint keys: params.Dense_0.kernel
_REQUIRED_FILES = ("_CHECKPOINT_METADATA", "state/_METADATA", "state/manifest.ocdbt")


class CheckpointDamaged(Exception):
  """A checkpoint that cannot be trusted; the message says what is wrong."""


def _ocp():
  import orbax.checkpoint as ocp  # heavy import, deferred until checkpoints are used
  return ocp


def _quiet_orbax():
  # Orbax logs every save at INFO through absl; a training run's console is
  # for the progress bar and one-line notices.
  logging.getLogger("absl").setLevel(logging.WARNING)


# ------------------------------------------------------------ flat pytrees --


def flatten_state(state: Any) -> dict[str, Any]:
  """``{"params.Dense_0.kernel": array, ...}`` for a state pytree or dataclass.

  Empty subtrees (optimizer states without arrays) hold no arrays and are left
  out; ``unflatten_into`` puts them back from the target.
  """
  return traverse_util.flatten_dict(flax.serialization.to_state_dict(state), sep=SEP)


def unflatten_into(target: Any, flat: Mapping[str, Any]) -> Any:
  """The inverse of ``flatten_state``, shaped like ``target``."""
  state_dict = flax.serialization.to_state_dict(target)
  template = traverse_util.flatten_dict(state_dict, sep=SEP, keep_empty_nodes=True)
  filled = {k: (flat[k] if k in flat else v) for k, v in template.items()}
  return flax.serialization.from_state_dict(target, traverse_util.unflatten_dict(filled, sep=SEP))


def to_host(state: Any) -> dict[str, np.ndarray]:
  """The state's arrays as host numpy arrays, flat (one device-to-host copy)."""
  flat = jax.device_get(flatten_state(state))
  return {k: np.asarray(v) for k, v in flat.items()}


def array_digest(array: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def manifest(flat: Mapping[str, np.ndarray]) -> dict[str, dict]:
  """Each array's SHA-256, shape and dtype: what restore checks against."""
  return {k: {"sha256": array_digest(v), "shape": list(v.shape), "dtype": str(v.dtype)}
          for k, v in sorted(flat.items())}


def structure_diff(saved: Mapping[str, dict], target: Mapping[str, np.ndarray], limit: int = 6) -> list[str]:
  """Human-readable differences between a saved manifest and a target state."""
  diffs = []
  for key in sorted(set(saved) | set(target)):
    if key not in target:
      diffs.append(f"{key} (only in checkpoint)")
    elif key not in saved:
      diffs.append(f"{key} (not in checkpoint)")
    elif tuple(saved[key]["shape"]) != tuple(np.shape(target[key])):
      diffs.append(f"{key} (checkpoint {tuple(saved[key]['shape'])}, model {tuple(np.shape(target[key]))})")
    elif saved[key]["dtype"] != str(np.asarray(target[key]).dtype):
      diffs.append(f"{key} (checkpoint {saved[key]['dtype']}, model {np.asarray(target[key]).dtype})")
  if len(diffs) > limit:
    diffs = diffs[:limit] + [f"and {len(diffs) - limit} more"]
  return diffs


def _save_args(state: Any) -> Any:
  """Orbax's arguments for one save: the state's arrays (copied to the host now) and their checksums."""
  ocp = _ocp()
  flat = to_host(state)
  return ocp.args.Composite(state=ocp.args.StandardSave(flat), integrity=ocp.args.JsonSave(manifest(flat)))


# ------------------------------------------------------------ checkpointer --


class Checkpointer:
  """Saves and restores a training state under one directory.

  Args:
    directory: where the step directories go (created on the first save).
    max_to_keep: how many recent checkpoints to keep.
    async_save: write in a background thread (the device-to-host copy and the
      checksums are taken synchronously, so later steps cannot change what is
      written).
    best_metric: if set (e.g. ``"test/accuracy"``), also keep the best
      checkpoint by this metric under ``<directory>_best``.
    best_mode: ``"max"`` or ``"min"`` for ``best_metric``.
    log: where one-line notices go.
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3, async_save: bool = True,
               best_metric: str = "", best_mode: str = "max", log: Callable[[str], None] = print):
    if max_to_keep < 1:
      raise JaxdlError(f"checkpoint.max_to_keep={max_to_keep} must be >= 1")
    if best_mode not in ("max", "min"):
      raise JaxdlError(f"checkpoint.best_mode='{best_mode}' must be 'max' or 'min'")
    _quiet_orbax()
    self.directory = pathlib.Path(directory).absolute()
    self.damaged_directory = self.directory.with_name(self.directory.name + "_damaged")
    self.max_to_keep = max_to_keep
    self.async_save = async_save
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.log = log
    self._manager = None
    self._best = None
    self.saves = 0
    self.blocking_seconds = 0.0  # time training waited on saves (the overhead)

  # -- listing

  def steps(self) -> list[int]:
    """Steps with a (possibly damaged) checkpoint directory, oldest first.

    Listed from the directory itself rather than from Orbax, so that a step
    whose metadata was deleted is still seen, and reported, not skipped.
    """
    if not self.directory.is_dir():
      return []
    return sorted(int(p.name) for p in self.directory.iterdir() if p.is_dir() and p.name.isdigit())

  def _step_dir(self, step: int) -> pathlib.Path:
    return self.directory / str(step)

  # -- saving

  def _make_manager(self, directory: pathlib.Path, **extra):
    ocp = _ocp()
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=self.async_save, create=True, cleanup_tmp_directories=True, **extra)
    return ocp.CheckpointManager(directory, options=options)

  @property
  def manager(self):
    if self._manager is None:
      self._manager = self._make_manager(self.directory, max_to_keep=self.max_to_keep)
    return self._manager

  def save(self, step: int, state: Any, *, metrics: Mapping[str, float] | None = None) -> None:
    """Starts writing the state as checkpoint ``step`` and returns.

    With ``best_metric`` set and present in ``metrics``, the state is also
    offered to the best-checkpoint directory.
    """
    t = time.perf_counter()
    args = _save_args(state)
    self.manager.save(int(step), args=args, force=True)
    self._offer_best(step, args, metrics)
    self.saves += 1
    self.blocking_seconds += time.perf_counter() - t

  @property
  def best_directory(self) -> pathlib.Path:
    """Where ``best_metric``'s best checkpoint is kept: ``<directory>_best``."""
    return self.directory.with_name(self.directory.name + "_best")

  def _make_best_manager(self):
    return self._make_manager(self.best_directory, max_to_keep=1, best_fn=lambda m: m[self.best_metric],
                              best_mode=self.best_mode)

  def _best_manager(self):
    if self._best is None:
      self._best = self._make_best_manager()
    return self._best

  def _offer_best(self, step: int, args: Any, metrics: Mapping[str, float] | None) -> None:
    if not (self.best_metric and metrics and self.best_metric in metrics):
      return
    best = self._best_manager()
    # A resumed run evaluates again the steps after its checkpoint: one the
    # killed run had already offered is kept as it was written.
    if int(step) not in best.all_steps():
      best.save(int(step), args=args, metrics={self.best_metric: float(metrics[self.best_metric])}, force=True)

  def offer_best(self, step: int, state: Any, metrics: Mapping[str, float]) -> None:
    """Offers the state to the best-checkpoint directory only (an evaluation between checkpoints)."""
    if self.best_metric and self.best_metric in metrics:
      t = time.perf_counter()
      self._offer_best(step, _save_args(state), metrics)
      self.blocking_seconds += time.perf_counter() - t

  def best(self) -> tuple[int, float] | None:
    """``(step, metric)`` of the kept best checkpoint, or None when there is none."""
    if not (self.best_metric and self.best_directory.is_dir()):
      return None
    self.wait()
    manager = self._make_best_manager()  # read from disk: the saves of every earlier process too
    try:
      step = manager.best_step()
      return None if step is None else (step, float(manager.metrics(step)[self.best_metric]))
    finally:
      manager.close()

  def wait(self) -> None:
    """Blocks until every started save is on disk."""
    t = time.perf_counter()
    for manager in (self._manager, self._best):
      if manager is not None:
        manager.wait_until_finished()
    self.blocking_seconds += time.perf_counter() - t

  def close(self) -> None:
    self.wait()
    for manager in (self._manager, self._best):
      if manager is not None:
        manager.close()
    self._manager = self._best = None

  # -- restoring

  def read_manifest(self, step: int) -> dict[str, dict]:
    path = self._step_dir(step)
    for name in _REQUIRED_FILES:
      if not (path / name).exists():
        raise CheckpointDamaged(f"missing metadata file {name}")
    try:
      ocp = _ocp()
      restored = ocp.Checkpointer(ocp.CompositeCheckpointHandler()).restore(
          path, args=ocp.args.Composite(integrity=ocp.args.JsonRestore()))
      saved = dict(restored.integrity)
    except Exception as e:  # Orbax raises many types for a broken directory
      raise CheckpointDamaged(f"unreadable checksums ({_first_line(e)})") from e
    if not saved:
      raise CheckpointDamaged("empty checksum list")
    return saved

  def restore_flat(self, step: int, target: Mapping[str, np.ndarray], *, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Restores and verifies the arrays ``keys`` (default: all of ``target``).

    Raises:
      CheckpointDamaged: unreadable, missing or corrupted data.
      JaxdlError: the checkpoint is intact but its structure differs from
        ``target`` (a different model): the message lists the paths.
    """
    saved = self.read_manifest(step)
    keys = sorted(target) if keys is None else sorted(keys)
    wanted = {k: target[k] for k in keys}
    diffs = structure_diff({k: saved[k] for k in keys if k in saved}, wanted)
    if diffs:
      raise JaxdlError(f"checkpoint at step {step} in {self.directory} does not fit this model: "
                       + "; ".join(diffs))
    ocp = _ocp()
    abstract = {k: np.zeros(saved[k]["shape"], saved[k]["dtype"]) for k in saved}
    try:
      restored = ocp.Checkpointer(ocp.CompositeCheckpointHandler()).restore(
          self._step_dir(step), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
      arrays = {k: np.asarray(v) for k, v in dict(restored.state).items()}
    except Exception as e:
      raise CheckpointDamaged(f"unreadable arrays ({_first_line(e)})") from e
    for key in keys:
      if key not in arrays:
        raise CheckpointDamaged(f"array {key} is missing")
      if array_digest(arrays[key]) != saved[key]["sha256"]:
        raise CheckpointDamaged(f"array {key} fails its SHA-256 checksum")
    return {k: arrays[k] for k in keys}

  def restore(self, step: int, target_state: Any) -> Any:
    """The state saved at ``step``, shaped like ``target_state`` (host arrays)."""
    flat = self.restore_flat(step, to_host(target_state))
    return unflatten_into(target_state, flat)

  def quarantine(self, step: int, reason: str) -> pathlib.Path:
    """Moves a damaged checkpoint aside (never deletes it); returns where.

    On several processes, every one finds the same damage (they read the
    same files) and skips the step, but only process 0 moves it: two moves
    of one directory would race.
    """
    self.damaged_directory.mkdir(parents=True, exist_ok=True)
    dest = self.damaged_directory / str(step)
    n = 1
    while dest.exists():
      dest = self.damaged_directory / f"{step}.{n}"
      n += 1
    if jax.process_index() == 0:
      shutil.move(str(self._step_dir(step)), dest)
      (dest.parent / f"{dest.name}.reason.txt").write_text(reason + "\n")
    if self._manager is not None:  # its cached step list is stale now
      self._manager.close()
      self._manager = None
    return dest

  def restore_latest(self, target_state: Any) -> tuple[Any, int] | None:
    """Restores the newest intact checkpoint, falling back past damaged ones.

    Returns:
      ``(state, step)``, or None when there is no intact checkpoint.
    """
    for step in reversed(self.steps()):
      try:
        return self.restore(step, target_state), step
      except CheckpointDamaged as e:
        dest = self.quarantine(step, str(e))
        self.log(f"jaxdl: checkpoint at step {step} is damaged: {e}; moved to {dest}, "
                 f"trying an older one")
    return None


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:200] if text else type(e).__name__


# ------------------------------------------------------------ fine-tuning --


def restore_params(directory: str | os.PathLike, target_params: Any, *, include: Iterable[str] = ("*",),
                   exclude: Iterable[str] = (), step: int | None = None,
                   collection: str = "params", strict: bool = True) -> tuple[Any, list[str]]:
  """Loads chosen parameters from a checkpoint into ``target_params``.

  For transfer learning: restore a pretrained body into a model with a new
  head, e.g. ``include=("*",), exclude=("Dense_2.*",)``. Patterns are
  ``fnmatch`` globs over dotted paths relative to ``params``
  (``Conv_0.kernel``). Every matched path must exist in both with the same
  shape; others keep their values from ``target_params``.

  Args:
    directory: a run's ``checkpoints`` directory.
    target_params: the new model's params (their structure and shapes).
    include, exclude: glob patterns selecting the paths to restore.
    step: which checkpoint; default the newest intact one.
    collection: the variables collection to restore (``batch_stats`` for
      BatchNorm statistics).
    strict: every pattern must match a path of ``target_params`` (a pattern
      that matches nothing is a typo, or a layer the model does not have);
      False for a second collection chosen by the first one's patterns.

  Returns:
    (the merged params, the list of restored paths).

  Raises:
    JaxdlError: no checkpoint, a pattern that matches nothing, or a chosen
      path that the checkpoint lacks or holds with another shape (each named).
  """
  ckpt = Checkpointer(directory, log=lambda _: None)
  steps = ckpt.steps() if step is None else [step]
  if not steps:
    inside = pathlib.Path(directory) / "checkpoints"
    hint = f" (for a run's workdir, pass {inside})" if inside.is_dir() else ""
    raise JaxdlError(f"no checkpoints in {directory}{hint}")
  flat_target = to_host(target_params)  # keys relative to params: Conv_0.kernel
  include, exclude = tuple(include), tuple(exclude)
  for kind, patterns in (("include", include), ("exclude", exclude)):
    unmatched = [p for p in patterns if strict and not any(fnmatch.fnmatchcase(k, p) for k in flat_target)]
    if unmatched:
      paths = sorted(flat_target)
      raise JaxdlError(f"{kind} pattern '{unmatched[0]}' matches no path of the model's {collection} "
                       f"(its paths: {', '.join(paths[:8])}{', ...' if len(paths) > 8 else ''})")
  chosen = sorted(k for k in flat_target
                  if any(fnmatch.fnmatchcase(k, p) for p in include)
                  and not any(fnmatch.fnmatchcase(k, p) for p in exclude))
  prefix = collection + SEP
  last_error = None
  for s in reversed(steps):
    try:
      saved = ckpt.read_manifest(s)
      missing = [k for k in chosen if prefix + k not in saved]
      if missing:
        raise JaxdlError(f"checkpoint at step {s} has no parameters {', '.join(missing[:6])}"
                         + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
                         + " (exclude them, e.g. a new head)")
      arrays = ckpt.restore_flat(s, {prefix + k: flat_target[k] for k in chosen})
    except CheckpointDamaged as e:
      last_error = e
      continue
    merged = {**flat_target, **{k[len(prefix):]: v for k, v in arrays.items()}}
    return unflatten_into(target_params, merged), chosen
  raise JaxdlError(f"no intact checkpoint in {directory} ({last_error})")
