"""GRU over MNIST-1D as a sequence: 40 steps of one sample each.

    jaxdl run mnist1d_gru

Result (2-core CPU, seed 0, jax 0.10.2): test accuracy 0.979 in 113 s
(target >= 0.97; the MNIST-1D paper's GRU reaches 0.91).
"""

from _mnist1d_seq import recurrent_config


def get_config():
  return recurrent_config("gru", learning_rate=3e-3, weight_decay=1e-4, dropout=0.0, shift=2)
