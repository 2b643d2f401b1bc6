"""The family base of the character-level language-model presets (charlm_*).

Windows of 64 characters of the source of 40 Python standard-library
modules, the last tenth by position held out; 2500 steps of 32 windows with
AdamW, a warmed-up cosine schedule and clipping at norm 1.
"""

from jaxdl.loops.lm import default_config


def charlm_config(model: str, *, warmup_steps: int, eval_batch_size: int):
  """The shared config for language model ``model``; its own options are set by the preset."""
  config = default_config()
  config.data.name = "pystdlib"
  config.data.seq_len = 64  # characters per training window
  config.data.val_fraction = 0.1  # the last tenth of the text, by position
  config.model.name = model
  config.train.steps = 2500
  config.train.batch_size = 32
  config.train.eval_every = 500
  config.train.log_every = 50
  config.train.eval_batch_size = eval_batch_size
  config.optim.name = "adamw"
  config.optim.learning_rate = 3e-3
  config.optim.weight_decay = 0.01
  config.optim.schedule = "warmup_cosine"
  config.optim.warmup_steps = warmup_steps
  config.optim.clip_norm = 1.0
  return config
