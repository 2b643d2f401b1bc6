"""A finished (or running) supervised run, read back from its workdir to predict with.

    run = jaxdl.load_run("runs/digits_cnn")
    logits = run.predict(x)          # (N, num_classes), jitted
    run = jaxdl.load_run("runs/diabetes_mlp")
    y = run.predict(x)               # a regression's predictions (N,) or (N, K), in the targets' units
"""

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import data as data_lib
from jaxdl.checkpoint import Checkpointer, restore_params
from jaxdl.loops.supervised.experiment import DATA_FILE, SCALING_FILE, make_model
from jaxdl.train import precision
from jaxdl.utils.errors import JaxdlError


@dataclasses.dataclass(frozen=True)
class Run:
  """A trained classifier (or regression): its model, restored variables and config.

  Attributes:
    model: the Flax module, built from ``config.model``.
    variables: ``{"params": ..., "batch_stats": ...}`` (batch statistics only
      for models with BatchNorm), from the newest intact checkpoint.
    config: the run's resolved config.
    num_classes: the width of the logits (a regression's: K, its outputs).
    input_shape: the shape of one example.
    step: the checkpoint's step.
    task: ``classification`` or ``regression`` (``train.task``).
    scaling: the standardisations the run trained under (``inputs``,
      ``targets``; see ``scaling.json``), which ``predict`` applies.
    target_shape: a regression's targets per example, () or (K,).
    vocab_size: the vocabulary of a run on token ids (0 for float inputs).
  """

  model: nn.Module
  variables: dict
  config: ml_collections.ConfigDict
  num_classes: int
  input_shape: tuple[int, ...]
  step: int
  task: str = "classification"
  scaling: dict = dataclasses.field(default_factory=dict)
  target_shape: tuple[int, ...] = ()
  vocab_size: int = 0

  def predict(self, x: Any, *, batch_size: int = 1024, lengths: Any = None) -> np.ndarray:
    """Outputs in evaluation mode (no dropout, running BatchNorm statistics).

    A classifier's are logits (N, num_classes); a regression's are its
    predictions in the targets' units, (N,) or (N, K) as ``y_train`` was.
    ``lengths`` (N,) are the valid steps of padded sequences.
    """
    x = self.prepare(x)
    if lengths is not None and np.shape(lengths) != x.shape[:1]:
      raise JaxdlError(f"lengths of shape {np.shape(lengths)}, but x holds {len(x)} examples")

    def extra(i):  # the lengths of the batch from example i
      return {} if lengths is None else {"lengths": np.asarray(lengths, np.int32)[i:i + batch_size]}

    out = np.concatenate([np.asarray(self._apply(self.variables, x[i:i + batch_size], **extra(i)))
                          for i in range(0, len(x), batch_size)] or [np.zeros((0, self.num_classes), np.float32)])
    if self.task != "regression":
      return out
    return self.scaling["targets"].invert(out).reshape(len(x), *self.target_shape)

  def prepare(self, x: Any) -> np.ndarray:
    """Inputs as the model takes them: float32, standardised if the run's inputs were (``data.normalize=feature``)."""
    x = np.asarray(x, np.int32 if self.vocab_size else np.float32)  # token ids stay integers
    if x.shape[1:] != self.input_shape:
      raise JaxdlError(f"inputs of shape {x.shape[1:]} per example, but the run was trained on "
                       f"{self.input_shape}")
    return self.scaling["inputs"].apply(x) if "inputs" in self.scaling else x

  @functools.cached_property
  def _apply(self):
    return jax.jit(functools.partial(self.model.apply, train=False))


def load_run(workdir: str | os.PathLike) -> Run:
  """Reads the supervised run in ``workdir``: its model and the variables of its newest intact checkpoint.

  Raises:
    JaxdlError: not a workdir of a supervised run, or no intact checkpoint.
  """
  workdir = pathlib.Path(workdir)
  if not (workdir / "config.json").is_file() or not (workdir / "checkpoints").is_dir():
    what = "no such directory" if not workdir.is_dir() else "no config.json or checkpoints/"
    raise JaxdlError(f"{workdir}: {what}; expected the workdir of a run (jaxdl run PRESET --workdir DIR)")
  try:
    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  except ValueError as e:
    raise JaxdlError(f"{workdir / 'config.json'} is unreadable ({e})") from None
  if config.get("loop", "supervised") != "supervised":
    raise JaxdlError(f"{workdir} holds a '{config.get('loop')}' run; load_run reads supervised runs "
                     f"(language models: jaxdl.loops.lm.load_run)")
  if (workdir / DATA_FILE).is_file():  # written by every run since the data record was added
    record = json.loads((workdir / DATA_FILE).read_text())
    input_shape, num_classes = tuple(record["input_shape"]), int(record["num_classes"])
    vocab_size = int(record.get("vocab_size", 0))
  else:
    ds = data_lib.load_dataset(config.data.name, config.data.path or None, num_classes=config.data.num_classes)
    input_shape, num_classes, vocab_size = ds.input_shape, ds.num_classes, ds.vocab_size
  model = make_model(precision.model_section(config), num_classes, vocab_size=vocab_size)  # as it trained
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                          jnp.zeros((1, *input_shape), jnp.int32 if vocab_size else jnp.float32))
  variables = {}
  for collection, tree in shapes.items():
    target = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), tree)
    variables[collection], _ = restore_params(workdir / "checkpoints", target, collection=collection)
  step = Checkpointer(workdir / "checkpoints", log=lambda _: None).steps()[-1]
  scaling, target_shape = _read_scaling(workdir)
  return Run(model=model, variables=variables, config=config, num_classes=num_classes,
             input_shape=tuple(input_shape), step=step, task=config.train.get("task", "classification"),
             scaling=scaling, target_shape=target_shape, vocab_size=vocab_size)


def _read_scaling(workdir: pathlib.Path) -> tuple[dict, tuple[int, ...]]:
  """The standardisations in ``scaling.json`` (none without it) and a regression's target shape."""
  path = workdir / SCALING_FILE
  if not path.is_file():
    return {}, ()
  try:
    record = json.loads(path.read_text())
  except ValueError as e:
    raise JaxdlError(f"{path} is unreadable ({e})") from None
  scaling = {name: data_lib.Standardizer.from_json(record[name], f"{path}, '{name}'")
             for name in ("inputs", "targets") if name in record}
  return scaling, tuple(record.get("target_shape", ()))
