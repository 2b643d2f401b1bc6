"""Elman (tanh) RNN over MNIST-1D as a sequence: the baseline the LSTM and GRU improve on.

    jaxdl run mnist1d_rnn

Result (2-core CPU, seed 0, jax 0.10.2): test accuracy 0.750 in 47 s. Gradients
through 40 tanh steps vanish (notebooks/sequence_models.ipynb plots them),
so it trails the gated cells by 20+ points.
"""

from _mnist1d_seq import recurrent_config


def get_config():
  return recurrent_config("rnn", learning_rate=1e-3, weight_decay=1e-4, dropout=0.0, shift=2)
