"""LSTM over MNIST-1D as a sequence: 40 steps of one sample each.

    jaxdl run mnist1d_lstm

Result (2-core CPU, seed 0, jax 0.10.2): test accuracy 0.973 in 159 s
(target >= 0.97).
"""

from _mnist1d_seq import recurrent_config


def get_config():
  return recurrent_config("lstm", learning_rate=3e-3, weight_decay=1e-2, dropout=0.1, shift=4)
