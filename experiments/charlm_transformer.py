"""Character-level Transformer language model on Python's own standard library.

    jaxdl run charlm_transformer
    jaxdl sample runs/charlm_transformer --prompt "def " --length 300

A causal decoder (two pre-LayerNorm blocks of width 128, learned positions,
tied embeddings) over windows of 64 characters of the source of 40 stdlib
modules (the corpus and its hash are in metrics.json).

Result (2-core CPU, seed 0, jax 0.10.2): validation 1.937 bits per
character against 3.448 for an add-one bigram model and 4.398 for a unigram
model on the same split (44% below the bigram; target >= 40%), in 238 s
(1.938 in 188 s on 2026-12-08, with its projections on rows).

On your own text (jaxdl run charlm_transformer --set data.name=text --set
data.path=FILE) the step count, dropout and weight decay are sized to it
('auto'), and the best checkpoint by validation bpc is kept: 45.0%, 41.2%
and 42.9% below the bigram on three English texts of 205-642 KB
(benchmarks/charlm_own_text.py).
"""

from _charlm import charlm_config

from jaxdl.configs import auto


def get_config():
  config = charlm_config("transformer_lm", warmup_steps=100, eval_batch_size=256)
  config.model.width = 128
  config.model.num_layers = 2
  config.model.num_heads = 4
  config.model.dropout = auto()  # 0 on this corpus, more on a smaller text
  config.model.positions = "learned"
  return config
