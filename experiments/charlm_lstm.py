"""Character-level LSTM language model on Python's own standard library.

    jaxdl run charlm_lstm
    jaxdl sample runs/charlm_lstm --prompt "def " --length 300

One LSTM layer of 256 units over windows of 64 characters of the source of
40 stdlib modules (the corpus and its hash are in metrics.json), the same
windows and steps as charlm_transformer.

Result (2-core CPU, seed 0, jax 0.10.2): validation 2.102 bits per character
against 3.448 for an add-one bigram model and 4.398 for a unigram model on the
same split (39% below the bigram), in 228 s.
"""

from _charlm import charlm_config


def get_config():
  config = charlm_config("lstm_lm", warmup_steps=50, eval_batch_size=512)
  config.model.hidden = 256
  config.model.num_layers = 1
  config.model.embed_dim = 64
  config.model.dropout = 0.0
  return config
