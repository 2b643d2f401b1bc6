"""Elman (tanh) RNN over MNIST-1D as a sequence: the baseline the LSTM and GRU improve on.

    jaxdl run mnist1d_rnn

Result (2-core CPU, seed 0, jax 0.10.2): test accuracy 0.750 in 47 s. Gradients
through 40 tanh steps vanish (notebooks/sequence_models.ipynb plots them),
so it trails the gated cells by 20+ points.
"""

from jaxdl.loops.supervised import default_config


def get_config():
  config = default_config()
  config.data.name = "mnist1d"
  config.model.name = "rnn"
  config.model.hidden = 128
  config.model.num_layers = 1
  config.model.bidirectional = False
  config.model.readout = "last"
  config.model.dropout = 0.0
  config.train.steps = 3000
  config.train.batch_size = 128
  config.train.eval_every = 500
  config.optim.name = "adamw"
  config.optim.learning_rate = 1e-3
  config.optim.weight_decay = 1e-4
  config.optim.schedule = "warmup_cosine"
  config.optim.warmup_steps = 100
  config.optim.clip_norm = 1.0
  config.augment.shift = 2
  return config
