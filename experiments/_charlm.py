"""The family base of the character-level language-model presets (charlm_*).

Windows of 64 characters of the source of 40 Python standard-library
modules, the last tenth by position held out; batches of 32 windows with
AdamW, a warmed-up cosine schedule and clipping at norm 1, validated every
250 steps, the best checkpoint by validation bpc kept. The step count and
weight decay are 'auto': sized to the training text (2500 steps and 0.01 on
this corpus; fewer steps and more decay on a smaller text of your own, see
jaxdl.loops.lm.config.derive).
"""

from jaxdl.configs import auto
from jaxdl.loops.lm import default_config


def charlm_config(model: str, *, warmup_steps: int, eval_batch_size: int):
  """The shared config for language model ``model``; its own options are set by the preset."""
  config = default_config()
  config.data.name = "pystdlib"
  config.data.seq_len = 64  # characters per training window
  config.data.val_fraction = 0.1  # the last tenth of the text, by position
  config.model.name = model
  config.train.steps = auto()  # 2500 on this corpus
  config.train.batch_size = 32
  config.train.eval_every = 250
  config.train.log_every = 50
  config.train.eval_batch_size = eval_batch_size
  config.optim.name = "adamw"
  config.optim.learning_rate = 3e-3
  config.optim.weight_decay = auto()  # 0.01 on this corpus
  config.optim.schedule = "warmup_cosine"
  config.optim.warmup_steps = warmup_steps
  config.optim.clip_norm = 1.0
  return config
