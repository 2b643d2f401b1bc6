"""1-D CNN on MNIST-1D (Greydanus, 2020).

    jaxdl run mnist1d_cnn

Result (2-core CPU, seed 0): test accuracy 0.989 in 68 s (target >= 0.96; the
MNIST-1D paper's CNN reaches 0.94).
"""

from jaxdl.loops.supervised import default_config


def get_config():
  config = default_config()
  config.data.name = "mnist1d"
  config.model.name = "cnn"
  config.model.features = (32, 64, 64)
  config.model.kernel_size = 5
  config.model.pool = 2
  config.model.hidden = (128,)
  config.model.dropout = 0.2
  config.model.use_batchnorm = True
  config.model.conv_impl = "auto"
  config.train.steps = 3000
  config.train.batch_size = 128
  config.train.eval_every = 500
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.optim.schedule = "cosine"
  config.augment.shift = 2
  return config
