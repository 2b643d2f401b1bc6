"""The language-model loop's config schema: every key it reads, and its checks.

``train.eval_every=0`` evaluates once per epoch (one pass over the training
windows). The ``model`` section is open: a language model's own options,
checked against its fields when it is built.

Every run keeps its best checkpoint by validation bits per character
(``checkpoint.keep_best="test/bpc"``); ``jaxdl sample`` and ``load_run`` read it.

A preset may leave ``train.steps``, ``model.dropout`` and
``optim.weight_decay`` at ``'auto'`` (:data:`AUTO_KEYS`): :func:`derive` then
sizes them to the training text, so one preset holds up on texts of a few
hundred kilobytes as on its own megabyte. A number set with ``--set`` wins.
"""

import math
from typing import Any

import ml_collections

from jaxdl import configs
from jaxdl.train import accumulate, precision, sharding
from jaxdl.train.fit import validate_schedule
from jaxdl.utils.errors import JaxdlError

AUTO = configs.AUTO
# The keys that may be 'auto', in the order they are reported.
AUTO_KEYS = ("train.steps", "model.dropout", "optim.weight_decay")

# The derivation (see derive). A text of REFERENCE_CHARS_PER_PARAM training
# characters per parameter or more (the stdlib corpus has 2.46 for
# charlm_transformer) gets the presets' unregularised settings, so their
# results there stay as they were; each halving below it adds
# DROPOUT_PER_HALVING of dropout and doubles the weight decay, up to the
# caps. Chosen by hand, checked on the texts of benchmarks/charlm_own_text.py.
REFERENCE_CHARS_PER_PARAM = 2.0
DROPOUT_PER_HALVING, MAX_DROPOUT = 0.1, 0.3
BASE_WEIGHT_DECAY, MAX_WEIGHT_DECAY = 0.01, 0.1
# Muennighoff et al. (2023, "Scaling Data-Constrained Language Models") fit
# the worth of R repeats of a text as R* (1 - exp(-R / R*)) fresh copies,
# R* = 15.4: 32 passes give 87% of all that repeating a text can. So a
# small text trains for AUTO_EPOCHS passes over its windows, and no text for
# more than AUTO_MAX_STEPS steps (the charlm presets' budget, about 4 minutes
# on 2 CPU cores, reached from about 180 KB of text).
AUTO_EPOCHS, AUTO_MAX_STEPS = 32, 2500
# Below this many training characters per parameter (where dropout reaches
# MAX_DROPOUT) the run warns that the text is too small for the model.
WARN_CHARS_PER_PARAM = REFERENCE_CHARS_PER_PARAM / 2 ** (MAX_DROPOUT / DROPOUT_PER_HALVING)


def default_config() -> ml_collections.ConfigDict:
  """The defaults of every language-model preset (a character-level LM on ``data.name``)."""
  config = ml_collections.ConfigDict()
  config.loop = "lm"

  config.train = configs.train_section()
  config.train.eval_every = 0  # steps between validation passes; 0: once per epoch
  config.train.eval_batch_size = 1000  # validation windows per batch

  config.checkpoint = configs.checkpoint_section()
  config.checkpoint.keep_best = "test/bpc"  # checkpoints_best/: what sampling and load_run read
  config.checkpoint.best_mode = "min"
  config.optim = configs.optim_section(extendable=True)

  config.data = ml_collections.ConfigDict()
  config.data.name = "pystdlib"  # or "text" with data.path
  config.data.path = ""  # a UTF-8 text file for data.name=text
  config.data.seq_len = 64  # characters per training window
  config.data.val_fraction = 0.1  # the last part of the text, by position

  config.model = ml_collections.ConfigDict()
  config.model.name = "transformer_lm"
  return config


def is_auto(config: ml_collections.ConfigDict, key: str) -> bool:
  """Whether the dotted ``key`` is left at ``'auto'``."""
  return configs.flatten(config).get(key) == AUTO


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line errors for keys this loop does not read and values no run can use."""
  configs.check_keys(config, default_config(), open_sections=("model",))
  sharding.check_sharding(config)
  flat = configs.flatten(config)
  for key in AUTO_KEYS:
    value = flat.get(key, 0.0)
    if value != AUTO and (isinstance(value, bool) or not isinstance(value, (int, float))):
      raise JaxdlError(f"{key}={value!r} must be a number or '{AUTO}'")
  if is_auto(config, "train.steps") and config.optim.extend_from:
    raise JaxdlError(f"optim.extend_from={config.optim.extend_from} extends a run of a known length: set "
                     f"train.steps to a number, not '{AUTO}' (metrics.json's derived train.steps)")
  positive = ("steps", "batch_size", "eval_batch_size", "log_every")
  validate_schedule(config, tuple(k for k in positive if not is_auto(config, f"train.{k}")))
  precision.compute_dtype(config)
  if not is_auto(config, "train.batch_size"):
    accumulate.check_accumulate(config.train.accumulate_steps, config.train.batch_size, 1)
  if config.data.seq_len < 1:
    raise JaxdlError(f"data.seq_len={config.data.seq_len} must be >= 1")
  if not 0 < config.data.val_fraction < 1:
    raise JaxdlError(f"data.val_fraction={config.data.val_fraction} must be in (0, 1)")


def derive(config: ml_collections.ConfigDict, *, train_chars: int, num_params: int,
           steps_per_epoch: int) -> dict[str, float | int]:
  """The values of the keys that ``config`` leaves at ``'auto'``, from the training text's size.

  With ``r = train_chars / num_params`` and ``h = max(0, log2(R / r))`` the
  halvings below ``R = REFERENCE_CHARS_PER_PARAM``:

  - ``train.steps``: ``AUTO_EPOCHS`` passes over the training windows, at
    most ``AUTO_MAX_STEPS``;
  - ``model.dropout``: ``DROPOUT_PER_HALVING * h``, at most ``MAX_DROPOUT``;
  - ``optim.weight_decay``: ``BASE_WEIGHT_DECAY * 2**h``, at most
    ``MAX_WEIGHT_DECAY``.

  Args:
    config: the run's config.
    train_chars: the training split's length in characters.
    num_params: the model's parameter count.
    steps_per_epoch: steps in one pass over the training windows.

  Returns:
    ``{dotted key: value}`` for the keys at ``'auto'`` only.
  """
  halvings = max(0.0, math.log2(REFERENCE_CHARS_PER_PARAM * num_params / train_chars))
  rules = {
      "train.steps": lambda: min(AUTO_MAX_STEPS, AUTO_EPOCHS * steps_per_epoch),
      # Rounded so that the value logged and recorded is the value used.
      "model.dropout": lambda: round(min(MAX_DROPOUT, DROPOUT_PER_HALVING * halvings), 3),
      "optim.weight_decay": lambda: round(min(MAX_WEIGHT_DECAY, BASE_WEIGHT_DECAY * 2 ** halvings), 4),
  }
  return {key: rules[key]() for key in AUTO_KEYS if is_auto(config, key)}


def with_values(config: ml_collections.ConfigDict, values: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of ``config`` with the dotted keys of ``values`` set (the derived settings filled in)."""
  tree = config.to_dict()
  for key, value in values.items():
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
      node = node[part]
    node[leaf] = value  # in a plain dict: 'auto' (a str) may become a number
  return ml_collections.ConfigDict(tree)
