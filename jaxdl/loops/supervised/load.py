"""A finished (or running) supervised run, read back from its workdir to predict with.

    run = jaxdl.load_run("runs/digits_cnn")
    logits = run.predict(x)          # (N, num_classes), jitted
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
from jaxdl import models as models_lib
from jaxdl.checkpoint import Checkpointer, restore_params
from jaxdl.loops.supervised.experiment import DATA_FILE
from jaxdl.utils.errors import JaxdlError


@dataclasses.dataclass(frozen=True)
class Run:
  """A trained classifier: its model, restored variables and config.

  Attributes:
    model: the Flax module, built from ``config.model``.
    variables: ``{"params": ..., "batch_stats": ...}`` (batch statistics only
      for models with BatchNorm), from the newest intact checkpoint.
    config: the run's resolved config.
    num_classes: the width of the logits.
    input_shape: the shape of one example.
    step: the checkpoint's step.
  """

  model: nn.Module
  variables: dict
  config: ml_collections.ConfigDict
  num_classes: int
  input_shape: tuple[int, ...]
  step: int

  def predict(self, x: Any, *, batch_size: int = 1024) -> np.ndarray:
    """Logits (N, num_classes) in evaluation mode (no dropout, running BatchNorm statistics)."""
    x = np.asarray(x, np.float32)
    if x.shape[1:] != self.input_shape:
      raise JaxdlError(f"inputs of shape {x.shape[1:]} per example, but the run was trained on "
                       f"{self.input_shape}")
    return np.concatenate([np.asarray(self._apply(self.variables, x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)] or [np.zeros((0, self.num_classes))])

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
  else:
    ds = data_lib.load_dataset(config.data.name, config.data.path or None, num_classes=config.data.num_classes)
    input_shape, num_classes = ds.input_shape, ds.num_classes
  model = models_lib.get_model(config.model.name, num_classes, **models_lib.options_from_config(config.model))
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                          jnp.zeros((1, *input_shape), jnp.float32))
  variables = {}
  for collection, tree in shapes.items():
    target = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), tree)
    variables[collection], _ = restore_params(workdir / "checkpoints", target, collection=collection)
  step = Checkpointer(workdir / "checkpoints", log=lambda _: None).steps()[-1]
  return Run(model=model, variables=variables, config=config, num_classes=num_classes,
             input_shape=tuple(input_shape), step=step)
