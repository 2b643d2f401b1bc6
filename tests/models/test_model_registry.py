"""The model registry: names, options, errors, and every model on both inputs."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import jaxdl.models as models
from jaxdl.models import MODELS, get_model, model_options, register_model
from jaxdl.models import registry
from jaxdl.utils.errors import JaxdlError

jax.config.update('jax_numpy_rank_promotion', 'raise')

# Registry names -> the per-example input shapes the model takes. TOKENS:
# a language model, integer tokens (T,) in, next-token logits (T, V) out.
SIGNAL, IMAGE, TOKENS = (40, 1), (8, 8, 1), (40,)
REQUIRED = {'mlp': (SIGNAL, IMAGE), 'cnn': (SIGNAL, IMAGE),
            'resnet': (SIGNAL, IMAGE), 'resnet1': (SIGNAL, IMAGE),
            'resnet18': (SIGNAL, IMAGE), 'tcn': (SIGNAL,),
            'rnn': (SIGNAL, IMAGE), 'lstm': (SIGNAL, IMAGE), 'gru': (SIGNAL, IMAGE),
            'transformer': (SIGNAL, IMAGE), 'rnn_lm': (TOKENS,), 'lstm_lm': (TOKENS,),
            'gru_lm': (TOKENS,), 'transformer_lm': (TOKENS,)}


def test_required_names_are_registered_with_one_line_descriptions():
  assert set(REQUIRED) <= set(MODELS)
  for name, description in MODELS.items():
    assert description and '\n' not in description, name


@pytest.mark.parametrize('name', sorted(MODELS))
def test_every_model_gives_float32_logits_on_signals_and_images(name):
  # Abstract evaluation (no compile): the shapes and dtypes every registered
  # model produces for MNIST-1D signals and 8x8 digits, where its rank allows.
  model = get_model(name, 10)
  for shape in REQUIRED.get(name, (SIGNAL, IMAGE)):
    tokens = shape is TOKENS
    x = jnp.zeros((4, *shape), jnp.int32 if tokens else jnp.float32)
    variables = jax.eval_shape(functools.partial(model.init, train=False),
                               jax.random.PRNGKey(0), x)
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
    want = (4, 40, 10) if tokens else (4, 10)
    chex.assert_shape(logits, want, custom_message=f'{name} on {shape}')
    chex.assert_type(logits, jnp.float32, custom_message=f'{name} on {shape}')


def test_get_model_builds_the_class_with_options_over_variant_defaults():
  model = get_model('resnet18', 7, width=16)
  assert isinstance(model, models.ResNet)
  assert (model.num_classes, model.width, model.stage_sizes) == (7, 16, (2, 2, 2, 2))
  assert get_model('mlp', 3, hidden=(5,)) == models.MLP(3, hidden=(5,))
  assert get_model('tcn', 10) == models.TCN(10)


def test_options_are_the_dataclass_fields():
  assert model_options('mlp') == ('hidden', 'activation', 'dropout', 'kernel_init',
                                  'use_batchnorm', 'residual', 'dtype', 'param_dtype')
  assert 'stage_sizes' in model_options('resnet1')  # through the partial


def test_unknown_name_lists_the_registered_names():
  with pytest.raises(JaxdlError) as info:
    get_model('vgg', 10)
  message = str(info.value)
  assert message.startswith("unknown model 'vgg' (choices: mlp, cnn, resnet, ")
  assert all(name in message for name in MODELS)


def test_unknown_option_names_the_model_and_lists_its_options():
  with pytest.raises(JaxdlError, match=(
      r"^model 'mlp' has no option 'features' \(options: hidden, activation, "
      r"dropout, kernel_init, use_batchnorm, residual, dtype, param_dtype\)$")):
    get_model('mlp', 10, features=(8,))
  with pytest.raises(JaxdlError, match=r"^model 'resnet18' has no option 'name' "):
    get_model('resnet18', 10, name='x')


def test_register_model_adds_a_family_and_refuses_duplicates(monkeypatch):
  monkeypatch.setattr(registry, '_CONSTRUCTORS', dict(registry._CONSTRUCTORS))
  monkeypatch.setattr(registry, 'MODELS', dict(registry.MODELS))

  class Linear(nn.Module):
    num_classes: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x, *, train):
      return nn.Dense(self.num_classes, use_bias=self.use_bias)(x.reshape(x.shape[0], -1))

  register_model('linear', Linear, 'a linear classifier')
  assert registry.MODELS['linear'] == 'a linear classifier'
  assert get_model('linear', 4, use_bias=False) == Linear(4, use_bias=False)
  register_model('linear', Linear, 'again')  # the same constructor again: a rerun notebook cell
  assert registry.MODELS['linear'] == 'again'

  class Other(Linear):
    pass

  with pytest.raises(JaxdlError, match="model 'linear' is already registered to another constructor"):
    register_model('linear', Other, 'taken')


def test_num_classes_is_passed_by_keyword(monkeypatch):
  monkeypatch.setattr(registry, '_CONSTRUCTORS', dict(registry._CONSTRUCTORS))
  monkeypatch.setattr(registry, 'MODELS', dict(registry.MODELS))

  class HiddenFirst(nn.Module):
    hidden: int = 3
    num_classes: int = 0

    @nn.compact
    def __call__(self, x, *, train):
      return nn.Dense(self.num_classes)(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))

  register_model('hidden_first', HiddenFirst, 'num_classes is not the first field')
  model = get_model('hidden_first', 10, hidden=5)
  assert model.num_classes == 10 and model.hidden == 5
