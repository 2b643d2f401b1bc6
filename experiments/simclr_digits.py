"""SimCLR contrastive pretraining of a small CNN on 8x8 digits without labels, then linear probes.

    jaxdl run simclr_digits

Result (2-core CPU, shared; seeds 0, 1, 2): linear probe with 10 labels per class 0.942, 0.944,
0.964, against 0.825, 0.822, 0.844 on a randomly initialised encoder (+11.7 to +12.2 points, target
+10) and 0.853 on raw pixels (+8.9 to +11.1, target +5); with every label 0.989, 0.992, 0.989
(pixels 0.969); 55-89 s per run including compile and the probes.
"""

from jaxdl.loops.simclr import default_config


def get_config():
  config = default_config()
  config.data.name = "digits"
  config.model.name = "cnn"
  config.model.features = (32, 64)
  config.model.hidden = (128,)
  config.model.use_batchnorm = True
  config.train.steps = 600
  config.train.batch_size = 256
  config.train.eval_every = 100
  config.train.log_every = 25
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.optim.schedule = "warmup_cosine"
  config.optim.warmup_steps = 50
  config.simclr.temperature = 0.5
  # With the default warp, brightness and noise. Over seeds 0-2, cutout raised the lowest
  # margin over the random encoder (10 labels per class) from 10.0 to 11.7 points.
  config.augment.cutout = 3
  return config
