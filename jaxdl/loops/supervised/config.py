"""The supervised loop's config schema: every key it reads, and its checks.

``train.eval_every=0`` evaluates once per epoch here. The ``model`` section
is open: it holds the chosen model's own options, checked against the
model's fields when it is built. ``train.task`` is ``classification``
(integer labels, cross-entropy) or ``regression`` (real-valued targets,
standardised with the training split's statistics, ``train.loss`` mse or
huber, test rmse / mae / r2 in the targets' units).
"""

import ml_collections

from jaxdl import configs
from jaxdl.loops.supervised.step import REGRESSION_LOSSES
from jaxdl.train import accumulate, parallel, precision, sharding
from jaxdl.train.fit import validate_schedule
from jaxdl.utils.errors import JaxdlError


def default_config() -> ml_collections.ConfigDict:
  """The defaults of every supervised preset (a classifier on ``data.name``)."""
  config = ml_collections.ConfigDict()
  config.loop = "supervised"  # which training loop runs the preset

  config.train = configs.train_section()
  config.train.task = "classification"  # or "regression": real-valued targets y (N,) or (N, K)
  config.train.loss = ""  # '': the task's own (cross-entropy; mse); a regression's: 'mse' or 'huber'
  config.train.huber_delta = 1.0  # where Huber turns linear, in std devs of the training targets
  config.train.eval_every = 0  # steps between test-set evaluations; 0: once per epoch
  config.train.eval_batch_size = 1000
  config.train.label_smoothing = 0.0
  config.train.log_layer_stats = False  # also log each layer's grad norm and output stats (jaxdl.diagnostics)

  config.checkpoint = configs.checkpoint_section()
  config.optim = configs.optim_section(extendable=True, per_path=True)

  # Transfer learning: a fresh run starts from another run's parameters. Those
  # whose dotted paths (Conv_0.kernel) match a glob of include and none of
  # exclude, with their layers' BatchNorm statistics, are copied from the
  # newest checkpoint of init.workdir; the rest (a new head) keep their fresh
  # initialisation. A resumed run restores its own checkpoint instead.
  config.init = ml_collections.ConfigDict()
  config.init.workdir = ""  # a trained run's workdir; '': start from the initialisation
  config.init.include = ("*",)
  config.init.exclude = ()  # e.g. ('Dense_1.*',): the old head

  config.data = ml_collections.ConfigDict()
  config.data.name = "digits"
  config.data.path = ""  # a file or directory for npz / idx / cifar10
  config.data.num_classes = 0  # 0: inferred from the training labels
  config.data.max_length = 0  # sequences: crop or zero-pad every example to this many steps; 0: as stored
  config.data.normalize = ""  # 'sequence': each sequence's features to mean 0, std 1 over its steps; '': as loaded
  # ('feature': each feature (x - mean) / std with the training split's statistics, for tables)
  # Where the training set lives: 'replicated' (a whole copy on every device), 'sharded' (its rows split
  # over the devices, each process placing only its own; the last N % devices rows dropped; another
  # batch order), or '': sharded on several processes, replicated on one.
  config.data.placement = ""

  config.augment = ml_collections.ConfigDict()
  config.augment.shift = 0
  config.augment.flip = False
  config.augment.noise = 0.0
  config.augment.scale = 0.0
  config.augment.mixup = 0.0
  # SpecAugment (Park et al., 2019) for sequences (B, T, C): the widest time
  # mask (steps) and frequency mask (channels), 0: off, and how many of each.
  config.augment.time_mask = 0
  config.augment.freq_mask = 0
  config.augment.num_masks = 1

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  return config


# data.normalize: '' leaves the inputs as loaded; 'sequence' standardises each
# float sequence over its own valid steps (per-utterance normalisation).
# 'feature' standardises each feature with the training split's mean and std
# (kept in scaling.json, which load_run's predict applies).
NORMALIZATIONS = ("", "sequence", "feature")


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line errors for keys this loop does not read and values no run can use."""
  configs.check_keys(config, default_config(), open_sections=("model",))
  sharding.check_sharding(config)
  t = config.train
  validate_schedule(config, ("steps", "batch_size", "eval_batch_size", "log_every"))
  precision.compute_dtype(config)
  accumulate.check_accumulate(t.accumulate_steps, t.batch_size, 1)  # per device: when the mesh is known
  if not 0 <= t.label_smoothing < 1:
    raise JaxdlError(f"train.label_smoothing={t.label_smoothing} must be in [0, 1)")
  _check_task(config)
  if config.data.normalize not in NORMALIZATIONS:
    raise JaxdlError(f"data.normalize='{config.data.normalize}' must be one of "
                     f"{', '.join(repr(n) for n in NORMALIZATIONS)}")
  parallel.check_placement(config.data.placement)
  a = config.augment
  if a.shift < 0 or a.noise < 0 or a.mixup < 0 or not 0 <= a.scale < 1:
    raise JaxdlError("augment.shift, noise and mixup must be >= 0 and augment.scale in [0, 1)")
  init = config.get("init")
  if init is not None and not init.workdir and (tuple(init.include) != ("*",) or tuple(init.exclude)):
    raise JaxdlError(f"init.include={tuple(init.include)} and init.exclude={tuple(init.exclude)} choose what to "
                     f"copy from init.workdir, which is empty: set init.workdir to a trained run's workdir")


# The test metrics each task reports, and which way is better (checkpoint.keep_best, best_mode).
TEST_METRICS = {"classification": {"loss": "min", "accuracy": "max"},
                "regression": {"loss": "min", "rmse": "min", "mae": "min", "r2": "max"}}


def _check_task(config: ml_collections.ConfigDict) -> None:
  """``train.task`` and what only one task reads: the loss, label smoothing, the class count, the best metric."""
  t, task = config.train, config.train.get("task", "classification")
  if task not in TEST_METRICS:
    raise JaxdlError(f"train.task='{task}' must be one of {', '.join(TEST_METRICS)}")
  if task == "regression":
    if (t.loss or "mse") not in REGRESSION_LOSSES:
      raise JaxdlError(f"train.loss='{t.loss}' is not a regression loss: choose {' or '.join(REGRESSION_LOSSES)}")
    if t.label_smoothing:
      raise JaxdlError(f"train.label_smoothing={t.label_smoothing} smooths class labels; a regression has none: "
                       f"set it to 0")
    if config.data.num_classes:
      raise JaxdlError(f"data.num_classes={config.data.num_classes} is for classification; a regression's output "
                       f"width is the columns of y_train: set it to 0")
  elif t.loss not in ("", "cross_entropy"):
    raise JaxdlError(f"train.loss='{t.loss}' is a regression loss; a classification's is cross_entropy "
                     f"(or set train.task=regression)")
  if t.huber_delta <= 0 or (t.huber_delta != 1.0 and t.loss != "huber"):
    raise JaxdlError(f"train.huber_delta={t.huber_delta} must be > 0 and is read only with train.loss=huber")
  metric, mode = config.checkpoint.keep_best, config.checkpoint.best_mode
  name = metric.split("/", 1)[-1]
  if metric.startswith("test/") and name not in TEST_METRICS[task]:
    raise JaxdlError(f"checkpoint.keep_best='{metric}': a {task} run reports "
                     f"{', '.join('test/' + m for m in TEST_METRICS[task])}")
  if metric.startswith("test/") and mode != TEST_METRICS[task][name]:
    raise JaxdlError(f"checkpoint.keep_best='{metric}' is better when {'higher' if mode == 'min' else 'lower'}: "
                     f"set checkpoint.best_mode={TEST_METRICS[task][name]}")


# --------------------------------------------- loops built of supervised runs --
# A study (transfer, distillation, gradient flow, ...) is a loop of its own that
# trains one or more supervised runs. Its config is the supervised schema under
# its own loop name, plus sections only it reads; each supervised run it makes
# gets the rest (``supervised_part``), so every key is still checked once.


def study_schema(loop: str, **sections: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The supervised schema under the name ``loop``, with that loop's own ``sections`` added."""
  config = default_config()
  config.loop = loop
  for name, section in sections.items():
    if name in config:
      raise ValueError(f"section '{name}' is already a supervised section")
    config[name] = section
  return config


def supervised_part(config: ml_collections.ConfigDict, *own: str) -> ml_collections.ConfigDict:
  """A copy of a study's ``config`` without its ``own`` sections and with ``loop='supervised'``.

  It is what the supervised runs of the study read (and ``validate`` checks).
  """
  part = ml_collections.ConfigDict({k: v for k, v in config.to_dict().items() if k not in own})
  part.loop = "supervised"
  return part


def validate_study(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict) -> None:
  """A study's own check: its keys against ``schema``, then the supervised part against the supervised schema."""
  configs.check_keys(config, schema, open_sections=("model",))
  if config.train.get("task", "classification") != "classification":
    raise JaxdlError(f"train.task={config.train.task}: the '{config.loop}' study measures classifiers "
                     f"(test accuracy); leave train.task=classification")
  own = [name for name in schema if name not in default_config()]
  validate(supervised_part(config, *own))
