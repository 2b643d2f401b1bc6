"""The language-model loop's config schema: every key it reads, and its checks.

``train.eval_every=0`` evaluates once per epoch (one pass over the training
windows). The ``model`` section is open: a language model's own options,
checked against its fields when it is built.
"""

import ml_collections

from jaxdl import configs
from jaxdl.train.fit import validate_schedule
from jaxdl.utils.errors import JaxdlError


def default_config() -> ml_collections.ConfigDict:
  """The defaults of every language-model preset (a character-level LM on ``data.name``)."""
  config = ml_collections.ConfigDict()
  config.loop = "lm"

  config.train = configs.train_section()
  config.train.eval_every = 0  # steps between validation passes; 0: once per epoch
  config.train.eval_batch_size = 1000  # validation windows per batch

  config.checkpoint = configs.checkpoint_section()
  config.optim = configs.optim_section(extendable=True)

  config.data = ml_collections.ConfigDict()
  config.data.name = "pystdlib"  # or "text" with data.path
  config.data.path = ""  # a UTF-8 text file for data.name=text
  config.data.seq_len = 64  # characters per training window
  config.data.val_fraction = 0.1  # the last part of the text, by position

  config.model = ml_collections.ConfigDict()
  config.model.name = "transformer_lm"
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line errors for keys this loop does not read and values no run can use."""
  configs.check_keys(config, default_config(), open_sections=("model",))
  validate_schedule(config, ("steps", "batch_size", "eval_batch_size", "log_every"))
  if config.data.seq_len < 1:
    raise JaxdlError(f"data.seq_len={config.data.seq_len} must be >= 1")
  if not 0 < config.data.val_fraction < 1:
    raise JaxdlError(f"data.val_fraction={config.data.val_fraction} must be in (0, 1)")
