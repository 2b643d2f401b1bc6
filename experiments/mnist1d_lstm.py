"""LSTM over MNIST-1D as a sequence: 40 steps of one sample each.

    jaxdl run mnist1d_lstm

Result (2-core CPU, seed 0, jax 0.10.2): test accuracy 0.973 in 159 s
(target >= 0.97).
"""

from jaxdl.loops.supervised import default_config


def get_config():
  config = default_config()
  config.data.name = "mnist1d"
  config.model.name = "lstm"
  config.model.hidden = 128
  config.model.num_layers = 1
  config.model.bidirectional = False
  config.model.readout = "last"
  config.model.dropout = 0.1
  config.train.steps = 3000
  config.train.batch_size = 128
  config.train.eval_every = 500
  config.optim.name = "adamw"
  config.optim.learning_rate = 3e-3
  config.optim.weight_decay = 1e-2
  config.optim.schedule = "warmup_cosine"
  config.optim.warmup_steps = 100
  config.optim.clip_norm = 1.0
  config.augment.shift = 4
  return config
