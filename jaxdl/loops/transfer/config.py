"""The transfer study's config: the supervised schema plus a ``transfer`` section.

The supervised sections describe the two runs on the target task, the
fine-tuned one and the one from scratch, which share every setting (the same
budget: ``train.steps``, ``train.batch_size``, ``optim.*``). Pretraining uses
them too, but for ``transfer.pretrain_steps`` and ``transfer.pretrain_batch_size``.
The study sets the per-run keys itself, so they are not keys of its own:
``init.*`` (the fine-tuned run starts from the pretrained one) and
``optim.frozen`` / ``optim.lr_multipliers`` (``transfer.backbone_lr_multiplier``).
"""

import fnmatch
import math

import jax
import ml_collections
import numpy as np

from jaxdl import models as models_lib
from jaxdl import optim as optim_lib
from jaxdl.loops import supervised
from jaxdl.utils.errors import JaxdlError

OWN = "transfer"  # the study's own section, which its supervised runs do not get


def default_config() -> ml_collections.ConfigDict:
  """The supervised defaults under ``loop='transfer'``, plus ``transfer.*``."""
  transfer = ml_collections.ConfigDict()
  transfer.source_classes = (0, 1, 2, 3, 4)  # pretrained on, with every training label
  transfer.target_classes = (5, 6, 7, 8, 9)  # fine-tuned on, and tested on (their test examples)
  transfer.labels_per_class = 10  # training labels per target class, for fine-tuning and from scratch
  transfer.subset_seed = 0  # which labelled examples (jaxdl.data.labels_per_class)
  transfer.pretrain_steps = 500
  transfer.pretrain_batch_size = 128
  transfer.head = ()  # globs of the new head's params (not restored); (): the model's last layer
  # The restored backbone's learning rate as a multiple of the head's (optim.learning_rate):
  # 1 fine-tunes everything alike, 0 freezes the backbone (only the head trains).
  transfer.backbone_lr_multiplier = 1.0
  config = supervised.study_schema("transfer", **{OWN: transfer})
  del config.init  # the study sets each run's: the fine-tuned one starts from the pretrained one
  del config.optim.frozen  # set from transfer.backbone_lr_multiplier for the fine-tuned run
  del config.optim.lr_multipliers
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """The study's keys, the supervised part and the ``transfer`` values; one-line errors."""
  supervised.validate_study(config, default_config())
  tr = config[OWN]
  for key in ("source_classes", "target_classes"):
    if isinstance(tr[key], str) or not tr[key]:
      raise JaxdlError(f"{OWN}.{key}={tr[key]!r} must be a non-empty tuple of labels")
  for key in ("labels_per_class", "pretrain_steps", "pretrain_batch_size"):
    if tr[key] < 1:
      raise JaxdlError(f"{OWN}.{key}={tr[key]} must be >= 1")
  m = tr.backbone_lr_multiplier
  if not (math.isfinite(m) and m >= 0):
    raise JaxdlError(f"{OWN}.backbone_lr_multiplier={m} must be >= 0 (0 freezes the backbone)")
  if isinstance(tr.head, str):
    raise JaxdlError(f"{OWN}.head={tr.head!r} must be a tuple of glob patterns, e.g. ('Dense_1.*',)")


def target_model_paths(config: ml_collections.ConfigDict, sample_x: np.ndarray) -> list[str]:
  """The dotted param paths of the target model, in the order its layers are created.

  Initialised eagerly (not under ``jit``, whose outputs sort their keys), so
  that the last path belongs to the layer that makes the logits.
  """
  model = models_lib.get_model(config.model.name, len(config[OWN].target_classes),
                               **models_lib.options_from_config(config.model))
  params = model.init(jax.random.PRNGKey(0), sample_x[:1], train=False)["params"]

  def walk(tree, prefix):
    for key, value in tree.items():
      yield from walk(value, f"{prefix}{key}.") if hasattr(value, "items") else [f"{prefix}{key}"]

  return list(walk(params, ""))


def head_patterns(config: ml_collections.ConfigDict, paths: list[str]) -> tuple[str, ...]:
  """``transfer.head``, checked against ``paths``; or the last layer's params (``("Dense_1.*",)``)."""
  head = tuple(config[OWN].head)
  if head:
    optim_lib.check_patterns(head, paths, f"{OWN}.head")
    return head
  return (paths[-1].split(".")[0] + ".*",)


def run_config(config: ml_collections.ConfigDict, *, steps: int | None = None, batch_size: int | None = None,
               eval_every: int | None = None, init_workdir: str = "", exclude: tuple[str, ...] = (),
               frozen: tuple[str, ...] = (), lr_multipliers: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """One supervised run's config: the study's supervised part with the keys the study sets."""
  sub = supervised.supervised_part(config, OWN)
  sub.data.num_classes = 0  # the run gets its classes in memory, fewer than data.name has
  if steps is not None:
    sub.train.steps = steps
  if batch_size is not None:
    sub.train.batch_size = batch_size
  if eval_every is not None:
    sub.train.eval_every = eval_every
  sub.optim.frozen, sub.optim.lr_multipliers = tuple(frozen), tuple(lr_multipliers)
  sub.init = ml_collections.ConfigDict(
      {"workdir": init_workdir, "include": ("*",), "exclude": tuple(exclude) if init_workdir else ()})
  supervised.validate(sub)
  return sub


def backbone_options(config: ml_collections.ConfigDict, paths: list[str],
                     head: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
  """The fine-tuned run's ``optim.frozen`` and ``optim.lr_multipliers`` for ``transfer.backbone_lr_multiplier``."""
  m = float(config[OWN].backbone_lr_multiplier)
  if m == 1.0:
    return {}
  if m == 0.0:
    return {"frozen": tuple(p for p in paths if not any(fnmatch.fnmatchcase(p, h) for h in head))}
  # The first pattern a path matches gives its factor: the head's first.
  return {"lr_multipliers": (*(f"{h}=1.0" for h in head), f"*={m}")}
