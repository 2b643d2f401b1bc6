"""The supervised loop's config schema: every key it reads, and its checks.

``train.eval_every=0`` evaluates once per epoch here. The ``model`` section
is open: it holds the chosen model's own options, checked against the
model's fields when it is built.
"""

import ml_collections

from jaxdl import configs
from jaxdl.train.fit import validate_schedule
from jaxdl.utils.errors import JaxdlError


def default_config() -> ml_collections.ConfigDict:
  """The defaults of every supervised preset (a classifier on ``data.name``)."""
  config = ml_collections.ConfigDict()
  config.loop = "supervised"  # which training loop runs the preset

  config.train = configs.train_section()
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

  config.augment = ml_collections.ConfigDict()
  config.augment.shift = 0
  config.augment.flip = False
  config.augment.noise = 0.0
  config.augment.scale = 0.0
  config.augment.mixup = 0.0

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line errors for keys this loop does not read and values no run can use."""
  configs.check_keys(config, default_config(), open_sections=("model",))
  t = config.train
  validate_schedule(config, ("steps", "batch_size", "eval_batch_size", "log_every"))
  if not 0 <= t.label_smoothing < 1:
    raise JaxdlError(f"train.label_smoothing={t.label_smoothing} must be in [0, 1)")
  a = config.augment
  if a.shift < 0 or a.noise < 0 or a.mixup < 0 or not 0 <= a.scale < 1:
    raise JaxdlError("augment.shift, noise and mixup must be >= 0 and augment.scale in [0, 1)")
  init = config.get("init")
  if init is not None and not init.workdir and (tuple(init.include) != ("*",) or tuple(init.exclude)):
    raise JaxdlError(f"init.include={tuple(init.include)} and init.exclude={tuple(init.exclude)} choose what to "
                     f"copy from init.workdir, which is empty: set init.workdir to a trained run's workdir")


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
  own = [name for name in schema if name not in default_config()]
  validate(supervised_part(config, *own))
