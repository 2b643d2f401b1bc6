"""Where metrics go: ``metrics.jsonl``, TensorBoard event files, the console.

Only process 0 writes; other hosts get a writer that does nothing, so loops
never branch on the process index themselves.
"""

import dataclasses
import json
import math
import os
import pathlib
import sys
from collections.abc import Mapping

import jax
import numpy as np

from jaxdl.utils.io import write_atomic


def _plain(value):
  """A JSON-able Python scalar (NaN and inf become strings JSON can hold)."""
  value = np.asarray(value).item() if hasattr(value, "shape") or isinstance(value, np.generic) else value
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


@dataclasses.dataclass(frozen=True)
class StepUnit:
  """What the progress bar and TensorBoard count: ``per_step`` of ``name`` per loop step.

  A loop's step (what checkpoints, ``train.log_every``, ``train.eval_every``
  and ``checkpoint.every_steps`` count) is not always the unit its user sets:
  a DQN step is an iteration of ``env.num_envs`` environment steps per seed,
  while ``train.env_steps`` counts environment steps. Such a loop shows
  ``StepUnit("env_steps", num_envs)``: the bar and TensorBoard's step axis
  count environment steps, and each ``metrics.jsonl`` record carries the
  count under ``name`` beside its ``step``.
  """

  name: str = "steps"
  per_step: int = 1

  @property
  def is_steps(self) -> bool:
    """True for the default, the loop's own steps (nothing is added to records)."""
    return self == StepUnit()


def write_json(path: str | os.PathLike, obj: Mapping) -> None:
  """Writes a flat dict as JSON, atomically."""
  write_atomic(path, json.dumps({k: _plain(v) for k, v in obj.items()}, indent=2, sort_keys=True) + "\n")


class MetricWriter:
  """Appends scalar metrics to ``metrics.jsonl`` and TensorBoard, keeps a history.

  Args:
    workdir: the run's directory (created if needed).
    tensorboard: also write TensorBoard event files under ``workdir/tb``.
    resume_step: the step a resumed run restarts from: earlier records are
      kept (and loaded into ``history``), later ones, written after that
      checkpoint by the interrupted run, are dropped so each step appears
      once. 0 starts a fresh log.
    unit: what TensorBoard's step axis counts (:class:`StepUnit`); records
      keep the loop's ``step`` and, for another unit, add its count.
  """

  def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True, resume_step: int = 0,
               unit: StepUnit = StepUnit()):
    self.active = jax.process_index() == 0
    self.workdir = pathlib.Path(workdir)
    self.unit = unit
    self.history: list[dict] = []
    self._tb = None
    self._jsonl = None
    if not self.active:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    path = self.workdir / "metrics.jsonl"
    if resume_step and path.exists():
      for line in path.read_text(encoding="utf-8").splitlines():
        try:
          record = json.loads(line)
        except ValueError:  # a line cut short by a kill
          continue
        if record.get("step", 0) <= resume_step:
          self.history.append(record)
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in self.history))
    self._jsonl = open(path, "a", encoding="utf-8")
    if tensorboard:
      # purge_step hides events an interrupted run wrote after its checkpoint.
      self._tb = _summary_writer()(str(self.workdir / "tb"), flush_secs=30,
                                   purge_step=resume_step * unit.per_step + 1 if resume_step else None)

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    """Records scalars (keys like ``train/loss``) at loop step ``step``."""
    scalars = {k: _plain(v) for k, v in metrics.items()}
    counted = int(step) * self.unit.per_step
    record = {"step": int(step), **({} if self.unit.is_steps else {self.unit.name: counted}), **scalars}
    self.history.append(record)
    if not self.active:
      return
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for key, value in scalars.items():
        if isinstance(value, (int, float)):
          self._tb.add_scalar(key, value, counted)

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def _summary_writer():
  """tensorboardX's ``SummaryWriter``, imported without importing torch.

  tensorboardX imports torch whenever it is installed, only to accept its
  tensors: 2.5 s added to every run on a machine with ``jaxdl[bench]``.
  jaxdl logs Python floats, so unless the process has imported torch
  already, torch is hidden for the length of that import (a ``None`` in
  ``sys.modules`` makes ``import torch`` fail) and visible again after it.
  """
  if "torch" not in sys.modules and "tensorboardX" not in sys.modules:
    sys.modules["torch"] = None
    try:
      import tensorboardX  # noqa: F401 -- the import that would have pulled torch in
    finally:
      del sys.modules["torch"]
  from tensorboardX import SummaryWriter
  return SummaryWriter


def progress_bar(total: int, *, initial: int = 0, desc: str = "train", unit: str = "step"):
  """A tqdm bar on stderr (notebook-aware), silent on hosts other than 0."""
  from tqdm.auto import tqdm

  return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
              disable=jax.process_index() != 0, file=sys.stderr, mininterval=0.5)


def console(message: str) -> None:
  """One line to stdout from host 0."""
  if jax.process_index() == 0:
    print(message, flush=True)
