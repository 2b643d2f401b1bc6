"""A trained recommend run read back for analysis: its model, chosen parameters and ratings; item neighbours.

    run = load_run("runs/movielens_mf")
    nearest_items(run, 50)  # [(item id, cosine), ...] of the items closest to item 50 (Star Wars in ML-100K)
"""

import dataclasses
import json
import os
import pathlib

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from jaxdl.checkpoint import Checkpointer
from jaxdl.data.ratings import Ratings
from jaxdl.loops.recommend.experiment import RecommendTask
from jaxdl.models.recsys import cosine_neighbours
from jaxdl.utils.errors import JaxdlError


@dataclasses.dataclass(frozen=True)
class RecommenderRun:
  """A trained recommender.

  Attributes:
    model: the ``jaxdl.models.recsys.Blend``.
    params: the parameters the run reports (the best epoch's by validation
      RMSE), on the host.
    ratings: the ratings it was trained and tested on.
    matrix: the training ratings (I, U) for models that read them, else None.
    config: the run's resolved config.
    step: the checkpoint's step.
  """

  model: nn.Module
  params: dict
  ratings: Ratings
  matrix: np.ndarray | None
  config: ml_collections.ConfigDict
  step: int

  def item_vectors(self) -> np.ndarray:
    """One vector per item (I, D) (a blend's: each member's at unit length, side by side)."""
    return np.asarray(self.model.apply({"params": self.params}, self.matrix, method="item_vectors"))


def load_run(workdir: str | os.PathLike, *, data: Ratings | None = None) -> RecommenderRun:
  """Reads the recommend run in ``workdir``, with the ratings of its ``data.path`` (or ``data``, as trained on).

  Raises:
    JaxdlError: not a workdir of a recommend run, ratings that are not the
      run's, or no intact checkpoint.
  """
  workdir = pathlib.Path(workdir)
  if not (workdir / "config.json").is_file():
    raise JaxdlError(f"{workdir}: no config.json; expected the workdir of a run (jaxdl run PRESET --workdir DIR)")
  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  if config.get("loop") != "recommend":
    raise JaxdlError(f"{workdir} holds a '{config.get('loop')}' run; this load_run reads recommend runs")
  if data is None and not config.data.path:
    raise JaxdlError(f"the run in {workdir} trained on ratings passed in from Python: pass them again as data=")
  task = RecommendTask(config, data=data)
  task.on_start(workdir, resuming=True)  # refuses ratings other than the run's
  restored = Checkpointer(workdir / "checkpoints", log=lambda _: None).restore_latest(jax.device_get(task.state))
  if restored is None:
    raise JaxdlError(f"no intact checkpoint in {workdir / 'checkpoints'}")
  state, step = restored
  matrix = None if task.matrix is None else np.asarray(jax.device_get(task.matrix))
  return RecommenderRun(model=task.model, params=task.selected_params(state), ratings=task.ratings, matrix=matrix,
                        config=task.config, step=step)


def nearest_items(run: RecommenderRun, item, k: int = 10) -> list[tuple[object, float]]:
  """The ``k`` items whose vectors are closest to raw item id ``item``'s by cosine: [(item id, cosine), ...]."""
  idx, cos = cosine_neighbours(run.item_vectors(), run.ratings.item_index(item), k)
  ids = run.ratings.item_ids
  return [(ids[i].item(), float(c)) for i, c in zip(np.asarray(idx), np.asarray(cos))]
