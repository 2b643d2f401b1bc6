"""Model families: exact parameter counts, shapes, dtypes, BN, dropout, errors."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.models import CNN, MLP, TCN, ResNet, ResNet1, ResNet18, ResNet50
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count

jax.config.update('jax_numpy_rank_promotion', 'raise')

RNGS = {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)}
SIGNALS = (2, 40, 1)  # (B, L, C): MNIST-1D
IMAGES = (2, 8, 8, 1)  # (B, H, W, C): scikit-learn digits


def _normal(shape, seed=0):
  # NumPy, not jax.random: on CPU each new shape would compile a sampler.
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


def _shapes(model, shape):
  """Variables of ``model`` for inputs of ``shape``, abstractly (no compute)."""
  return jax.eval_shape(functools.partial(model.init, train=False), RNGS,
                        jnp.zeros(shape))


def _count(model, shape, collection='params'):
  return param_count(_shapes(model, shape)[collection])


def _init(model, x):
  return jax.jit(functools.partial(model.init, train=False))(RNGS, x)


# Parameter counts by hand. Conv: k * C_in * C_out (+ C_out bias, none before
# a BatchNorm); BatchNorm: 2 * C (scale, bias); Dense: D_in * D_out + D_out.
PARAM_COUNTS = [
    ('mlp-signals', MLP(10, hidden=(16, 8)), SIGNALS,
     (40 * 16 + 16) + (16 * 8 + 8) + (8 * 10 + 10)),
    ('mlp-images', MLP(10, hidden=(16, 8)), IMAGES,
     (64 * 16 + 16) + (16 * 8 + 8) + (8 * 10 + 10)),
    ('mlp-bn', MLP(10, hidden=(16, 8), use_batchnorm=True), SIGNALS,
     (40 * 16 + 2 * 16) + (16 * 8 + 2 * 8) + (8 * 10 + 10)),
    # Two max-pools of 2: 40 -> 10 samples, 8x8 -> 2x2 pixels before the head.
    ('cnn-signals', CNN(10, features=(4, 8), hidden=(16,)), SIGNALS,
     (3 * 1 * 4 + 4) + (3 * 4 * 8 + 8) + (10 * 8 * 16 + 16) + (16 * 10 + 10)),
    ('cnn-images', CNN(10, features=(4, 8), hidden=(16,)), IMAGES,
     (3 * 3 * 1 * 4 + 4) + (3 * 3 * 4 * 8 + 8) + (2 * 2 * 8 * 16 + 16) + (16 * 10 + 10)),
    ('cnn-bn', CNN(10, features=(4, 8), hidden=(), use_batchnorm=True), IMAGES,
     (3 * 3 * 1 * 4 + 2 * 4) + (3 * 3 * 4 * 8 + 2 * 8) + (2 * 2 * 8 * 10 + 10)),
    ('resnet1-images', ResNet1(10), IMAGES,
     (3 * 3 * 1 * 8 + 2 * 8) + 2 * (3 * 3 * 8 * 8 + 2 * 8) + (8 * 10 + 10)),
    ('resnet1-signals', ResNet1(10), SIGNALS,
     (3 * 1 * 8 + 2 * 8) + 2 * (3 * 8 * 8 + 2 * 8) + (8 * 10 + 10)),
    # Stage 2 doubles the width: its first block has a 1x1 projection + BN.
    ('resnet-projection', ResNet(10, stage_sizes=(1, 1), width=4), SIGNALS,
     (3 * 1 * 4 + 2 * 4) + 2 * (3 * 4 * 4 + 2 * 4)
     + (3 * 4 * 8 + 2 * 8) + (3 * 8 * 8 + 2 * 8) + (1 * 4 * 8 + 2 * 8)
     + (8 * 10 + 10)),
    ('resnet-bottleneck', ResNet(10, stage_sizes=(1,), width=4, block='bottleneck'),
     SIGNALS,
     (3 * 1 * 4 + 2 * 4)
     + (1 * 4 * 4 + 2 * 4) + (3 * 4 * 4 + 2 * 4) + (1 * 4 * 16 + 2 * 16)
     + (1 * 4 * 16 + 2 * 16) + (16 * 10 + 10)),
    # avg+max pooling concatenates 2 * 8 features for the head.
    ('tcn', TCN(10, channels=8, dilations=(1, 2)), SIGNALS,
     (3 * 1 * 8 + 2 * 8) + 2 * (2 * (3 * 8 * 8) + 2 * (2 * 8)) + (2 * 8 * 10 + 10)),
    ('tcn-avg-nobn', TCN(10, channels=8, dilations=(1, 2), use_batchnorm=False,
                         pooling='avg'), SIGNALS,
     (3 * 1 * 8 + 8) + 2 * 2 * (3 * 8 * 8 + 8) + (8 * 10 + 10)),
]


@pytest.mark.parametrize('model,shape,expected', [c[1:] for c in PARAM_COUNTS],
                         ids=[c[0] for c in PARAM_COUNTS])
def test_exact_parameter_counts(model, shape, expected):
  assert _count(model, shape) == expected


def _resnet_basic_params(in_channels, stage_sizes, width, num_classes, stem_kernel):
  """Parameters of a basic-block ResNet, counted stage by stage."""
  total = stem_kernel**2 * in_channels * width + 2 * width
  c_in = width
  for i, blocks in enumerate(stage_sizes):
    c = width * 2**i
    for j in range(blocks):
      total += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c
      if c_in != c:
        total += c_in * c + 2 * c  # 1x1 projection + BN
      c_in = c
  return total + c * num_classes + num_classes


def test_resnet18_and_resnet50_match_the_published_counts():
  # 11,173,962: the CIFAR-10 ResNet-18 (3x3 stem) of common PyTorch repos.
  cifar = _count(ResNet18(10), (1, 32, 32, 3))
  assert cifar == _resnet_basic_params(3, (2, 2, 2, 2), 64, 10, 3) == 11_173_962
  # torchvision's resnet18 / resnet50 with 1000 classes (7x7 stride-2 stem).
  imagenet = dict(stem_kernel=7, stem_stride=2, stem_pool=True)
  assert _count(ResNet18(1000, **imagenet), (1, 64, 64, 3)) == 11_689_512
  assert _count(ResNet50(1000, **imagenet), (1, 64, 64, 3)) == 25_557_032


def test_batch_stats_count():
  # Running mean and variance per BatchNorm channel.
  model = CNN(10, features=(4, 8), use_batchnorm=True)
  assert _count(model, IMAGES, 'batch_stats') == 2 * 4 + 2 * 8


SMALL_MODELS = [
    ('mlp', MLP(10, hidden=(16,), dropout=0.1, use_batchnorm=True), (SIGNALS, IMAGES)),
    ('cnn', CNN(10, features=(4, 8), hidden=(16,), dropout=0.1), (SIGNALS, IMAGES)),
    ('resnet1', ResNet1(10), (SIGNALS, IMAGES)),
    ('tcn', TCN(10, channels=8, dilations=(1, 2), dropout=0.1), (SIGNALS,)),
]


def _random_variables(model, shape):
  """Random parameters (and unit running variances) in ``model``'s tree.

  Cheaper than ``init``, whose truncated-normal sampling is a large graph to
  compile on CPU; what these tests check does not depend on the init.
  """
  variables = _shapes(model, shape)
  leaves, tree = jax.tree.flatten(variables['params'])
  params = tree.unflatten([0.3 * _normal(l.shape, i) for i, l in enumerate(leaves)])
  stats = jax.tree_util.tree_map_with_path(
      lambda path, l: jnp.full(l.shape, path[-1].key == 'var', l.dtype),
      variables.get('batch_stats', {}))
  return {'params': params, 'batch_stats': stats}


@pytest.mark.parametrize('model,shapes', [m[1:] for m in SMALL_MODELS],
                         ids=[m[0] for m in SMALL_MODELS])
def test_logits_are_float32_of_shape_batch_by_classes(model, shapes):
  @jax.jit
  def train_and_eval_logits(variables, x):
    train, _ = model.apply(variables, x, train=True, rngs=RNGS, mutable=['batch_stats'])
    return train, model.apply(variables, x, train=False)

  for shape in shapes:
    logits = train_and_eval_logits(_random_variables(model, shape), _normal(shape))
    chex.assert_shape(logits, (2, 10))  # each of the train and eval logits
    chex.assert_type(logits, jnp.float32)
    chex.assert_tree_all_finite(logits)


@pytest.mark.parametrize('model,shapes', [m[1:] for m in SMALL_MODELS],
                         ids=[m[0] for m in SMALL_MODELS])
def test_bfloat16_computes_in_bfloat16_and_returns_float32(model, shapes):
  model = model.clone(dtype=jnp.bfloat16)
  for shape in shapes:
    variables = _shapes(model, shape)
    assert {p.dtype for p in jax.tree.leaves(variables['params'])} == {jnp.dtype(jnp.float32)}
    logits, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, rngs=RNGS,
                                 capture_intermediates=True,
                                 mutable=['intermediates', 'batch_stats']),
        variables, jnp.zeros(shape))
    chex.assert_shape(logits, (2, 10))
    chex.assert_type(logits, jnp.float32)
    # Every layer's output (the model's own cast to float32 aside) is bf16.
    outputs = state['intermediates'].copy()
    del outputs['__call__']
    assert {y.dtype for y in jax.tree.leaves(outputs)} == {jnp.dtype(jnp.bfloat16)}


def test_batchnorm_updates_running_stats_with_momentum_0_9():
  model = MLP(10, hidden=(16,), use_batchnorm=True)
  x = _normal((8, 40, 1))
  variables = _init(model, x)
  stats = variables['batch_stats']['BatchNorm_0']
  np.testing.assert_array_equal(stats['mean'], np.zeros(16))
  np.testing.assert_array_equal(stats['var'], np.ones(16))
  _, updates = jax.jit(functools.partial(model.apply, train=True,
                                         mutable=['batch_stats']))(variables, x)
  h = x.reshape(8, 40) @ variables['params']['Dense_0']['kernel']  # (B, 16), no bias
  new = updates['batch_stats']['BatchNorm_0']
  np.testing.assert_allclose(new['mean'], 0.1 * h.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new['var'], 0.9 + 0.1 * h.var(0), rtol=1e-5, atol=1e-6)


def test_batchnorm_eval_uses_running_stats_and_is_deterministic():
  model = ResNet1(10)
  x = _normal(IMAGES)
  other = x.at[1:].set(_normal((1, *IMAGES[1:]), seed=1))  # same first example
  variables = _random_variables(model, IMAGES)

  @functools.partial(jax.jit, static_argnames='train')
  def logits(x, train):
    return model.apply(variables, x, train=train, mutable=['batch_stats'])[0]

  evaluation = logits(x, train=False)
  np.testing.assert_array_equal(logits(x, train=False), evaluation)
  # Running statistics make each example's logits independent of its batch...
  np.testing.assert_allclose(logits(other, train=False)[0], evaluation[0],
                             rtol=1e-5, atol=1e-5)
  # ...while batch statistics (train=True) do not.
  assert not np.allclose(logits(other, train=True)[0], logits(x, train=True)[0],
                         atol=1e-4)


def test_dropout_is_active_only_in_training_and_follows_the_rng():
  model = MLP(10, hidden=(64,), dropout=0.5)
  x = _normal((4, 40, 1))
  variables = _init(model, x)
  apply = jax.jit(model.apply, static_argnames='train')
  evaluation = apply(variables, x, train=False)  # needs no dropout rng
  np.testing.assert_array_equal(apply(variables, x, train=False), evaluation)
  rng = lambda seed: {'dropout': jax.random.PRNGKey(seed)}
  a = apply(variables, x, train=True, rngs=rng(1))
  np.testing.assert_array_equal(apply(variables, x, train=True, rngs=rng(1)), a)
  assert not np.allclose(apply(variables, x, train=True, rngs=rng(2)), a)
  assert not np.allclose(a, evaluation)


@pytest.mark.parametrize('model,shape,message', [
    (TCN(10), IMAGES,
     "model 'tcn' expects 1-D signals (B, L, C), got inputs of shape (8, 8, 1) per example"),
    (TCN(10), (2, 40),
     "model 'tcn' expects 1-D signals (B, L, C), got inputs of shape (40,) per example"),
    (CNN(10), (2, 784),
     "model 'cnn' expects 1-D signals (B, L, C) or images (B, H, W, C), got inputs "
     "of shape (784,) per example"),
    (ResNet1(10), (2, 4, 4, 4, 1),
     "model 'resnet' expects 1-D signals (B, L, C) or images (B, H, W, C), got "
     "inputs of shape (4, 4, 4, 1) per example"),
    (CNN(10, features=(4, 8, 16)), (2, 4, 1),
     "model 'cnn': inputs of spatial size (4,) shrink to zero through 3 max-pools of 2"),
    (ResNet1(10, stem_stride=2, stem_pool=True), (2, 2, 2, 1),
     "model 'resnet': inputs of spatial size (2, 2) shrink to zero through a stem "
     "of stride 2 and a max-pool of 2"),
    (MLP(10, activation='swish2'), SIGNALS, "unknown activation 'swish2'"),
    (ResNet1(10, block='wide'), SIGNALS,
     "unknown resnet block 'wide' (choices: basic, bottleneck)"),
    (TCN(10, pooling='max'), SIGNALS, "unknown tcn pooling 'max' (choices: avg, avgmax)"),
])
def test_bad_inputs_and_options_raise_jaxdl_error(model, shape, message):
  with pytest.raises(JaxdlError) as info:
    _shapes(model, shape)
  assert message in str(info.value) and '\n' not in str(info.value)


def test_tcn_learns_a_shifted_pattern_inside_lax_scan():
  # A bump at a random position; the class is its sign. Global pooling over
  # dilated residual features must find it anywhere, and the train step runs
  # inside lax.scan, the path 'auto' picks im2col for on CPU.
  rng = np.random.default_rng(0)
  n, length = 64, 40
  labels = rng.integers(0, 2, n)
  x = 0.1 * rng.standard_normal((n, length, 1), np.float32)
  pos = rng.integers(0, length - 5, n)
  for i in range(n):
    x[i, pos[i]:pos[i] + 5, 0] += np.where(labels[i] == 1, 1.0, -1.0)
  model = TCN(2, channels=8, dilations=(1, 2))
  variables = _init(model, jnp.asarray(x))
  tx = optax.adam(1e-2)

  def step(carry, _):
    params, batch_stats, opt_state = carry

    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': batch_stats},
                                    x, train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, updates['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  carry = (variables['params'], variables['batch_stats'],
           tx.init(variables['params']))
  (params, batch_stats, _), losses = jax.jit(
      lambda c: jax.lax.scan(step, c, length=40))(carry)
  assert losses[-1] < 0.2 * losses[0]
  logits = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=False)
  assert (np.argmax(logits, -1) == labels).mean() >= 0.95
