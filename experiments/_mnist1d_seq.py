"""The family base of the recurrent MNIST-1D presets (mnist1d_rnn, _lstm, _gru).

MNIST-1D read as a sequence of 40 steps of one sample each, classified from
the last hidden state of one 128-unit layer; AdamW with a warmed-up cosine
schedule and clipping at norm 1, which every cell needed to train stably.
"""

from jaxdl.loops.supervised import default_config


def recurrent_config(cell: str, *, learning_rate: float, weight_decay: float, dropout: float,
                     shift: int):
  """The shared config, with the choices that differ per cell."""
  config = default_config()
  config.data.name = "mnist1d"
  config.model.name = cell
  config.model.hidden = 128
  config.model.num_layers = 1
  config.model.bidirectional = False
  config.model.readout = "last"
  config.model.dropout = dropout
  config.train.steps = 3000
  config.train.batch_size = 128
  config.train.eval_every = 500
  config.optim.name = "adamw"
  config.optim.learning_rate = learning_rate
  config.optim.weight_decay = weight_decay
  config.optim.schedule = "warmup_cosine"
  config.optim.warmup_steps = 100
  config.optim.clip_norm = 1.0
  config.augment.shift = shift
  return config
