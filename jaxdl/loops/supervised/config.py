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

  config.checkpoint = configs.checkpoint_section()
  config.optim = configs.optim_section(extendable=True)

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
