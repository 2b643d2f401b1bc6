"""Models by name, for configs and the command line.

A family adds itself with one ``register_model`` call at the bottom of this
file; research code can register its own modules the same way.
"""

from collections.abc import Callable, Mapping
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdl.models import cnn, mlp, resnet, rnn, tcn, transformer
from jaxdl.utils.errors import JaxdlError

# name -> one-line description, in registration order (what `jaxdl list` shows).
MODELS: dict[str, str] = {}
_CONSTRUCTORS: dict[str, Callable[..., nn.Module]] = {}

# Dataclass fields of every Linen module that are not model options.
_NOT_OPTIONS = frozenset({'parent', 'name', 'num_classes'})


def register_model(name: str, constructor: Callable[..., nn.Module],
                   description: str) -> None:
  """Makes ``get_model(name, num_classes, **options)`` build ``constructor``.

  Args:
    name: registry name (lower case by convention).
    constructor: a Linen module class, or a ``functools.partial`` of one
      (a named variant) with a ``num_classes`` field; called as
      ``constructor(num_classes=num_classes, **options)``.
    description: one line for listings.

  Registering the same constructor under its name again (a notebook cell run
  twice) only updates the description.

  Raises:
    JaxdlError: ``name`` is taken by another constructor.
  """
  if name in _CONSTRUCTORS and _CONSTRUCTORS[name] != constructor:
    raise JaxdlError(f'model {name!r} is already registered to another constructor '
                     f'({_CONSTRUCTORS[name]!r}); choose another name')
  _CONSTRUCTORS[name] = constructor
  MODELS[name] = description


def model_options(name: str) -> tuple[str, ...]:
  """Names of the options ``get_model(name, ...)`` accepts."""
  return constructor_options(_lookup(name))


def constructor_options(constructor: Callable[..., nn.Module],
                        not_options: frozenset[str] = _NOT_OPTIONS) -> tuple[str, ...]:
  """The dataclass fields of a module class (or a partial of one) that are options: not ``not_options``."""
  while isinstance(constructor, functools.partial):
    constructor = constructor.func
  return tuple(f.name for f in dataclasses.fields(constructor)
               if f.init and f.name not in not_options)


def option_defaults(name: str) -> dict[str, Any]:
  """Each option of model ``name`` with its default, as a config holds it (dtypes by name).

  Options without a default, or whose default a config cannot hold (a
  function, say), are left out.
  """
  return constructor_defaults(_lookup(name))


def constructor_defaults(constructor: Callable[..., nn.Module],
                         not_options: frozenset[str] = _NOT_OPTIONS) -> dict[str, Any]:
  """:func:`option_defaults` of a module class (or a partial of one) with options besides ``not_options``."""
  fixed = {}
  while isinstance(constructor, functools.partial):
    fixed = {**constructor.keywords, **fixed}
    constructor = constructor.func
  defaults = {}
  for f in dataclasses.fields(constructor):
    if not f.init or f.name in not_options:
      continue
    value = fixed.get(f.name, f.default)
    if f.name in ("dtype", "param_dtype") and value is not dataclasses.MISSING:
      value = jnp.dtype(value).name
    if isinstance(value, (bool, int, float, str)) or (
        isinstance(value, tuple) and all(isinstance(v, (bool, int, float, str)) for v in value)):
      defaults[f.name] = value
  return defaults


def get_model(name: str, num_classes: int, /, **options: Any) -> nn.Module:
  """Builds the model called ``name``.

  Args:
    name: a key of ``MODELS``.
    num_classes: number of logits.
    **options: fields of the model class (override a variant's defaults).

  Returns:
    An unbound Linen module: ``model.apply(variables, x, train=...)`` gives
    float32 logits of shape (B, num_classes).

  Raises:
    JaxdlError: unknown name, or an option the model does not have.
  """
  constructor = _lookup(name)
  allowed = model_options(name)
  for key in options:
    if key not in allowed:
      raise JaxdlError(
          f"model {name!r} has no option {key!r} (options: {', '.join(allowed)})")
  dropout = options.get("dropout")
  if isinstance(dropout, (int, float)) and not 0 <= dropout < 1:
    raise JaxdlError(f"model.dropout={dropout} must be in [0, 1) (the share of units dropped)")
  # By keyword: a module whose first field is not num_classes is still built right.
  return constructor(num_classes=num_classes, **options)


def constructor_of(name: str) -> Callable[..., nn.Module]:
  """The constructor registered as ``name`` (a one-line error for an unknown name)."""
  return _lookup(name)


def _lookup(name: str) -> Callable[..., nn.Module]:
  try:
    return _CONSTRUCTORS[name]
  except (KeyError, TypeError):
    raise JaxdlError(
        f"unknown model {name!r} (choices: {', '.join(_CONSTRUCTORS)})") from None


def options_from_config(model_config: Mapping[str, Any]) -> dict[str, Any]:
  """A config's ``model`` section without its name, as ``get_model`` options.

  Dtype names (``dtype``, ``param_dtype``) become dtypes and lists become tuples.
  """
  options = {k: v for k, v in model_config.items() if k != "name"}
  for key in ("dtype", "param_dtype"):
    if isinstance(options.get(key), str):
      try:
        options[key] = jnp.dtype(options[key])
      except TypeError:
        raise JaxdlError(f"model.{key}='{options[key]}' is not a dtype") from None
  return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


register_model('mlp', mlp.MLP, 'multilayer perceptron over flattened inputs')
register_model('cnn', cnn.CNN, 'conv-act-pool blocks and a dense head (1-D or 2-D)')
register_model('resnet', resnet.ResNet, 'residual network, configurable stages (1-D or 2-D)')
register_model('resnet1', resnet.ResNet1, 'tiny ResNet (one stage of one block, width 8) for tests')
register_model('resnet18', resnet.ResNet18, 'ResNet-18: basic blocks (2, 2, 2, 2), width 64')
register_model('resnet34', resnet.ResNet34, 'ResNet-34: basic blocks (3, 4, 6, 3), width 64')
register_model('resnet50', resnet.ResNet50, 'ResNet-50: bottleneck blocks (3, 4, 6, 3), width 64')
register_model('tcn', tcn.TCN, 'dilated residual 1-D conv net for signals (MNIST-1D)')
register_model('rnn', rnn.SimpleRNN, 'Elman (tanh) RNN sequence classifier; stacked, bidirectional, masked')
register_model('lstm', rnn.LSTM, 'LSTM sequence classifier; stacked, bidirectional, masked')
register_model('gru', rnn.GRU, 'GRU sequence classifier; stacked, bidirectional, masked')
register_model('transformer', transformer.TransformerClassifier,
               'pre-LayerNorm Transformer encoder over a sequence, pooled, classified')
register_model('rnn_lm', rnn.SimpleRNNLanguageModel, 'tanh RNN next-token language model (B, T) -> (B, T, V)')
register_model('lstm_lm', rnn.LSTMLanguageModel, 'LSTM next-token language model (B, T) -> (B, T, V)')
register_model('gru_lm', rnn.GRULanguageModel, 'GRU next-token language model (B, T) -> (B, T, V)')
register_model('transformer_lm', transformer.TransformerLanguageModel,
               'causal Transformer decoder language model (B, T) -> (B, T, V)')

