"""CNN with batch norm and shift augmentation on scikit-learn's 8x8 digits (the default job).

    jaxdl run digits_cnn

Result (2-core CPU): test accuracy 1.000, 1.000, 0.997 for seeds 0, 1, 2 (mean
0.9991, target >= 0.995), about 42 s per run including compile (AMD EPYC host,
2026-12-07).
"""

from jaxdl.loops.supervised import default_config


def get_config():
  config = default_config()
  config.data.name = "digits"
  config.model.name = "cnn"
  config.model.features = (64, 128)
  config.model.kernel_size = 3
  config.model.pool = 2
  config.model.hidden = (256,)
  config.model.dropout = 0.3
  config.model.use_batchnorm = True
  config.model.conv_impl = "auto"
  config.train.steps = 3000
  config.train.batch_size = 128
  config.train.eval_every = 300
  config.train.label_smoothing = 0.1
  config.optim.name = "adamw"
  config.optim.learning_rate = 3e-3
  config.optim.weight_decay = 5e-4
  config.optim.schedule = "warmup_cosine"
  config.optim.warmup_steps = 100
  config.augment.shift = 1
  return config
