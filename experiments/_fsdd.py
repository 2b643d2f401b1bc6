"""The family base of the spoken-digit presets (fsdd_gru, fsdd_tcn).

FSDD's 13 MFCCs per frame, cropped to 48 frames: the recordings run 6 to 92
frames (median 17) and only 8 of 3000 are longer, so cropping halves the
steps every batch runs for the loss of a few trailing frames. AdamW with a
warmed-up cosine schedule and clipping at norm 1; SpecAugment-style masks
(Park et al., 2019) of up to 4 frames and 2 coefficients, and shifts of up
to 2 frames, each within a recording's own length.
"""

from jaxdl.loops.supervised import default_config


def fsdd_config(model: str, *, weight_decay: float):
  """The shared config, with the choices that differ per model."""
  config = default_config()
  config.data.name = "fsdd"
  config.data.max_length = 48
  config.model.name = model
  config.train.steps = 2000  # 53 epochs of 37 steps
  config.train.batch_size = 64
  config.train.eval_every = 500
  config.optim.name = "adamw"
  config.optim.learning_rate = 3e-3
  config.optim.weight_decay = weight_decay
  config.optim.schedule = "warmup_cosine"
  config.optim.warmup_steps = 100
  config.optim.clip_norm = 1.0
  config.augment.shift = 2
  config.augment.time_mask = 4
  config.augment.freq_mask = 2
  return config
