"""The teacher of a distillation: a finished supervised run, checked against the student's data.

The teacher's variables are placed on the student's devices (replicated)
once; :func:`jaxdl.loops.distill.loss.teacher_loss_fn` closes over them.
"""

import dataclasses
import json
import pathlib

import flax.linen as nn
import jax
import numpy as np

from jaxdl import data as data_lib
from jaxdl.checkpoint import Checkpointer
from jaxdl.loops import supervised
from jaxdl.loops.distill.config import OWN
from jaxdl.train import parallel
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A trained classifier ready to teach.

  Attributes:
    run: the supervised run (``jaxdl.loops.supervised.Run``), variables on the host.
    workdir: where it was read from.
    variables: its variables replicated over the student's devices.
    params: its parameter count.
    sha256: the digest of its parameters (which teacher a student learnt from).
  """

  run: supervised.Run
  workdir: pathlib.Path
  variables: dict
  params: int
  sha256: str

  @property
  def model(self) -> nn.Module:
    return self.run.model


def check_teacher_dir(workdir: pathlib.Path) -> None:
  """A one-line error unless ``workdir`` holds a supervised run with a checkpoint."""
  where = f"{OWN}.teacher_workdir={workdir}"
  if not (workdir / "config.json").is_file():
    raise JaxdlError(f"{where}: no config.json there; expected the workdir of a trained supervised run "
                     f"(jaxdl run PRESET --workdir DIR)")
  try:
    loop = json.loads((workdir / "config.json").read_text()).get("loop", "supervised")
  except ValueError as e:
    raise JaxdlError(f"{where}: config.json is unreadable ({e})") from None
  if loop != "supervised":
    raise JaxdlError(f"{where} holds a '{loop}' run; a teacher is a supervised classifier run")
  if not (workdir / "checkpoints").is_dir() or not Checkpointer(workdir / "checkpoints", log=lambda _: None).steps():
    raise JaxdlError(f"{where}: no checkpoint there (train the teacher to its end first)")


def load_teacher(workdir: str | pathlib.Path, dataset: data_lib.Dataset, mesh) -> Teacher:
  """The supervised run in ``workdir`` as a teacher for a student on ``dataset``.

  Raises:
    JaxdlError: no run or no checkpoint there, not a supervised run, or a
      teacher whose classes or input shape differ from ``dataset``'s.
  """
  workdir = pathlib.Path(workdir)
  check_teacher_dir(workdir)
  try:
    run = supervised.load_run(workdir)
  except JaxdlError as e:
    raise JaxdlError(f"{OWN}.teacher_workdir={workdir}: {e}") from None
  if run.num_classes != dataset.num_classes:
    raise JaxdlError(f"{OWN}.teacher_workdir={workdir}: the teacher has {run.num_classes} classes but the "
                     f"student's data '{dataset.name}' has {dataset.num_classes}")
  if tuple(run.input_shape) != tuple(dataset.input_shape):
    raise JaxdlError(f"{OWN}.teacher_workdir={workdir}: the teacher takes inputs of shape {run.input_shape} "
                     f"but the student's data '{dataset.name}' has {dataset.input_shape}")
  host = jax.tree_util.tree_map(np.asarray, run.variables)
  return Teacher(run=run, workdir=workdir, variables=parallel.put_replicated(host, mesh),
                 params=param_count(host["params"]), sha256=tree_sha256(host["params"]))
