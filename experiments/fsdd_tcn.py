"""Dilated residual 1-D CNN (TCN) over spoken digits (FSDD), masked to each recording's length.

    pip install 'jaxdl[speech]'
    jaxdl run fsdd_tcn

Result (2-core CPU shared with other jobs, jax 0.10.2): test accuracy 0.9967,
1.0000, 0.9967 for seeds 0, 1, 2 (2, 0, 2 errors in 600; target >= 0.995), in
258-281 s: the best spoken-digit preset, by one error in 1800 over fsdd_gru.
"""

from _fsdd import fsdd_config


def get_config():
  config = fsdd_config("tcn", weight_decay=1e-4)
  config.model.channels = 64
  config.model.kernel_size = 3
  config.model.dilations = (1, 2, 4, 8)
  config.model.dropout = 0.1
  config.model.use_batchnorm = True
  return config
