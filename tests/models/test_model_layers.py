"""Conv (its three implementations), pooling and small helpers against Flax/XLA."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models import (ACTIVATIONS, Conv, avg_pool, get_activation,
                          global_avg_pool, global_max_pool, max_pool)
from jaxdl.models.conv import (WINOGRAD_MIN_IN_FEATURES, WINOGRAD_MIN_OUT_POSITIONS, WINOGRAD_MIN_OUT_SIZE,
                               resolve_conv_impl)
from jaxdl.models.layers import on_rows
from jaxdl.utils.errors import JaxdlError

jax.config.update('jax_numpy_rank_promotion', 'raise')

KEY = jax.random.PRNGKey(0)


def _normal(shape, seed=0):
  # NumPy, not jax.random: on CPU each new shape would compile a sampler.
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


# (input shape, kernel_size, padding, strides, dilation): every combination of
# 1-D/2-D, SAME/VALID(/CAUSAL), strides 1/2 and dilation 1/2. Odd and uneven
# sizes exercise the asymmetric SAME padding and strided remainders.
CONV_CASES = [
    (shape, ks, padding, s, d)
    for shape, ks, paddings in [((3, 11, 2), (3,), ('SAME', 'VALID', 'CAUSAL')),
                                ((2, 9, 10, 3), (3, 2), ('SAME', 'VALID'))]
    for padding, s, d in itertools.product(paddings, (1, 2), (1, 2))
]


def _random_params(module, x):
  """Standard-normal parameters in ``module``'s tree (no init computation)."""
  shapes = jax.eval_shape(module.init, KEY, x)
  leaves, tree = jax.tree.flatten(shapes)
  return tree.unflatten([_normal(l.shape, seed) for seed, l in enumerate(leaves)])


def _conv_id(case):
  shape, _, padding, s, d = case
  return f'{len(shape) - 2}d-{padding}-s{s}-d{d}'


def _both_impls(case, features):
  """(x, {impl: Conv}, params) for one case: the same layer as 'xla' and 'im2col', random parameters."""
  shape, ks, padding, s, d = case
  x = _normal(shape)
  convs = {impl: Conv(features, ks, strides=s, padding=padding, kernel_dilation=d, impl=impl)
           for impl in ('xla', 'im2col')}
  # Random (not initial) parameters: biases start at zero, and a random one
  # checks that it is added per channel.
  return x, convs, _random_params(convs['xla'], x)


@pytest.mark.parametrize('case', CONV_CASES, ids=_conv_id)
def test_im2col_matches_xla_values_and_gradients(case):
  x, convs, params = _both_impls(case, 5)
  cotangent = _normal(jax.eval_shape(convs['xla'].apply, params, x).shape,
                      seed=2)

  def loss(impl, p, x):
    return jnp.sum(convs[impl].apply(p, x) * cotangent)

  # One jit per case: eager mode would compile every slice op on its own.
  @jax.jit
  def values_and_grads(params, x):
    return {impl: (convs[impl].apply(params, x),
                   jax.grad(loss, argnums=(1, 2))(impl, params, x))
            for impl in convs}

  out = values_and_grads(params, x)
  for ours, ref in zip(jax.tree.leaves(out['im2col']), jax.tree.leaves(out['xla'])):
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)


# A few cases suffice: im2col == xla is checked on every case above.
@pytest.mark.parametrize('case', [CONV_CASES[i] for i in (3, 9, 15, 16)], ids=_conv_id)
@pytest.mark.parametrize('impl', ['xla', 'im2col'])
def test_conv_is_interchangeable_with_flax_conv(case, impl):
  shape, ks, padding, s, d = case
  x = _normal(shape)
  ours = Conv(5, ks, strides=s, padding=padding, kernel_dilation=d, impl=impl)
  flax_conv = nn.Conv(5, ks, strides=s, padding=padding, kernel_dilation=d)
  # Same tree, names and shapes: 'kernel' (*kernel_size, C_in, F), 'bias' (F,).
  assert (jax.tree.map(jnp.shape, jax.eval_shape(ours.init, KEY, x))
          == jax.tree.map(jnp.shape, jax.eval_shape(flax_conv.init, KEY, x))
          == {'params': {'kernel': (*ks, shape[-1], 5), 'bias': (5,)}})
  flax_params = _random_params(flax_conv, x)
  np.testing.assert_allclose(jax.jit(ours.apply)(flax_params, x),
                             jax.jit(flax_conv.apply)(flax_params, x),
                             atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('impl', ['xla', 'im2col'])
@pytest.mark.parametrize('dilation', [1, 3])
def test_causal_conv_never_sees_the_future(impl, dilation):
  conv = Conv(4, (3,), padding='CAUSAL', kernel_dilation=dilation, impl=impl)
  x = _normal((2, 20, 3))
  params = _random_params(conv, x)
  apply = jax.jit(conv.apply)
  y = apply(params, x)
  assert y.shape == (2, 20, 4)  # causal padding keeps the length
  for t in (0, 7, 19):
    changed = x.at[:, t:].set(_normal((2, 20 - t, 3), seed=100 + t))
    y2 = apply(params, changed)
    np.testing.assert_array_equal(y2[:, :t], y[:, :t])
    assert not np.allclose(y2[:, t], y[:, t])  # ... but the present is seen


# im2col's backward pass is hand-written (a custom_vjp): second order (a
# gradient penalty's gradient, as the GAN's R1 term takes) goes through it.
@pytest.mark.parametrize('case', [CONV_CASES[i] for i in (1, 13)], ids=_conv_id)
def test_im2col_second_order_gradients_match_xla(case):
  x, convs, params = _both_impls(case, 4)

  def penalty(impl, p, x):  # ||d sum(tanh(conv(x))) / dx||^2
    input_grad = jax.grad(lambda x: jnp.sum(jnp.tanh(convs[impl].apply(p, x))))(x)
    return jnp.sum(input_grad ** 2)

  @jax.jit
  def grads(params, x):
    return {impl: jax.grad(penalty, argnums=(1, 2))(impl, params, x) for impl in convs}

  out = grads(params, x)
  for ours, ref in zip(jax.tree.leaves(out['im2col']), jax.tree.leaves(out['xla'])):
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)


def test_forward_mode_needs_the_xla_impl():
  x = _normal((2, 6, 6, 3))
  convs = {impl: Conv(4, (3, 3), impl=impl) for impl in ('xla', 'im2col', 'winograd')}
  params = _random_params(convs['xla'], x)
  tangent = _normal(x.shape, seed=1)
  _, jvp = jax.jvp(lambda x: convs['xla'].apply(params, x), (x,), (tangent,))
  # Linear in x (plus a bias): the tangent is the convolution of the tangent.
  np.testing.assert_allclose(jvp, convs['xla'].apply(params, tangent)
                             - convs['xla'].apply(params, jnp.zeros_like(x)), atol=1e-4)
  for impl in ('im2col', 'winograd'):
    with pytest.raises(TypeError, match='forward-mode'):
      jax.jvp(lambda x: convs[impl].apply(params, x), (x,), (tangent,))


def test_conv_without_bias_and_in_bfloat16():
  conv = Conv(3, (2, 2), use_bias=False, dtype=jnp.bfloat16, impl='im2col')
  x = jnp.ones((1, 4, 4, 2))
  params = jax.jit(conv.init)(KEY, x)
  assert jax.tree.map(jnp.shape, params) == {'params': {'kernel': (2, 2, 2, 3)}}
  assert params['params']['kernel'].dtype == jnp.float32  # param_dtype
  assert jax.jit(conv.apply)(params, x).dtype == jnp.bfloat16


def test_conv_errors_name_the_problem():
  x2d = jnp.ones((1, 5, 5, 1))
  with pytest.raises(JaxdlError, match=r"padding 'CAUSAL' is for 1-D kernels"):
    jax.eval_shape(Conv(2, (3, 3), padding='CAUSAL').init, KEY, x2d)
  with pytest.raises(JaxdlError, match=r"unknown conv padding 'FULL'"):
    jax.eval_shape(Conv(2, (3, 3), padding='FULL').init, KEY, x2d)
  with pytest.raises(JaxdlError, match=r"unknown conv impl 'cudnn' \(choices: auto, xla, im2col, winograd\)"):
    jax.eval_shape(Conv(2, (3, 3), impl='cudnn').init, KEY, x2d)
  with pytest.raises(JaxdlError, match=r'kernel_size \(3,\) expects inputs'):
    jax.eval_shape(Conv(2, (3,)).init, KEY, x2d)
  with pytest.raises(JaxdlError, match=r'does not fit inputs of spatial size \(5, 5\)'):
    jax.eval_shape(Conv(2, (7, 7), padding='VALID').init, KEY, x2d)


def test_auto_impl_is_im2col_or_winograd_on_cpu_and_native_elsewhere():
  size = (WINOGRAD_MIN_OUT_SIZE, WINOGRAD_MIN_OUT_SIZE + 3)
  batch = -(-WINOGRAD_MIN_OUT_POSITIONS // (size[0] * size[1]))  # just enough positions
  fits = dict(kernel_size=(3, 3), strides=(1, 1), dilation=(1, 1), in_features=WINOGRAD_MIN_IN_FEATURES,
              out_sizes=size, batch=batch)
  assert resolve_conv_impl('auto', backend='cpu', **fits) == 'winograd'
  # Each condition on its own sends 'auto' back to im2col on the CPU.
  for change in [dict(in_features=WINOGRAD_MIN_IN_FEATURES - 1),
                 dict(out_sizes=(WINOGRAD_MIN_OUT_SIZE - 1, 20)), dict(batch=batch - 1),
                 dict(strides=(2, 2)), dict(dilation=(1, 2)),
                 dict(kernel_size=(5, 5)), dict(kernel_size=(3,), strides=(1,), dilation=(1,), out_sizes=(40,))]:
    assert resolve_conv_impl('auto', backend='cpu', **{**fits, **change}) == 'im2col', change
  assert resolve_conv_impl('auto', backend='cpu') == 'im2col'  # a caller that cannot run Winograd
  assert resolve_conv_impl('auto', backend='gpu', **fits) == 'xla'
  assert resolve_conv_impl('auto', backend='tpu') == 'xla'
  assert resolve_conv_impl('xla', backend='cpu', **fits) == 'xla'
  assert resolve_conv_impl('im2col', backend='tpu', **fits) == 'im2col'
  # An explicit 'winograd' needs only the kernel to fit (any channels, size or backend) ...
  assert resolve_conv_impl('winograd', backend='gpu', **{**fits, 'in_features': 1, 'out_sizes': (1, 1)}) == 'winograd'
  # ... and is im2col for the convolutions it cannot compute.
  assert resolve_conv_impl('winograd', backend='cpu', **{**fits, 'strides': (1, 2)}) == 'im2col'


# Winograd's cases: odd and even output sizes (odd ones pad the last tile),
# SAME and VALID, channels below and above 'auto's threshold.
WINOGRAD_CASES = [((2, 9, 10, 3), 'SAME'), ((2, 9, 10, 3), 'VALID'), ((3, 6, 7, 16), 'SAME'), ((1, 3, 3, 2), 'SAME')]


@pytest.mark.parametrize('shape,padding', WINOGRAD_CASES)
def test_winograd_matches_xla_values_and_gradients(shape, padding):
  x = _normal(shape)
  convs = {impl: Conv(5, (3, 3), padding=padding, impl=impl) for impl in ('xla', 'winograd')}
  params = _random_params(convs['xla'], x)
  cotangent = _normal(jax.eval_shape(convs['xla'].apply, params, x).shape, seed=2)

  @jax.jit
  def values_and_grads(params, x):
    return {impl: (conv.apply(params, x),
                   jax.grad(lambda p, x: jnp.sum(conv.apply(p, x) * cotangent), argnums=(0, 1))(params, x))
            for impl, conv in convs.items()}

  out = values_and_grads(params, x)
  for ours, ref in zip(jax.tree.leaves(out['winograd']), jax.tree.leaves(out['xla'])):
    assert np.abs(ref).max() > 1
    # The transforms add and halve: float32 rounding, relative to the values' scale.
    np.testing.assert_allclose(ours, ref, atol=2e-6 * np.abs(ref).max(), rtol=0)


def test_winograd_second_order_gradients_match_xla():
  x = _normal((2, 6, 6, 3))
  convs = {impl: Conv(4, (3, 3), impl=impl) for impl in ('xla', 'winograd')}
  params = _random_params(convs['xla'], x)

  def penalty(conv, p, x):  # ||d sum(tanh(conv(x))) / dx||^2, as a gradient penalty takes it
    input_grad = jax.grad(lambda x: jnp.sum(jnp.tanh(conv.apply(p, x))))(x)
    return jnp.sum(input_grad ** 2)

  out = jax.jit(lambda p, x: {impl: jax.grad(penalty, argnums=(1, 2))(conv, p, x)
                              for impl, conv in convs.items()})(params, x)
  for ours, ref in zip(jax.tree.leaves(out['winograd']), jax.tree.leaves(out['xla'])):
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max(), rtol=0)


def test_winograd_runs_where_it_fits_and_im2col_elsewhere():
  x = _normal((WINOGRAD_MIN_OUT_POSITIONS // 64, 8, 8, WINOGRAD_MIN_IN_FEATURES))
  run = lambda conv, x: jax.jit(conv.apply)(_random_params(conv, x), x)
  # 'auto' on the CPU picks Winograd for a layer this size: the same bits.
  np.testing.assert_array_equal(run(Conv(4, (3, 3), impl='auto'), x), run(Conv(4, (3, 3), impl='winograd'), x))
  # ... and im2col below the channel or batch threshold; a model-wide 'winograd' is im2col at stride 2.
  for small in (x[..., :2], x[:-1]):
    np.testing.assert_array_equal(run(Conv(4, (3, 3), impl='auto'), small), run(Conv(4, (3, 3), impl='im2col'), small))
  np.testing.assert_array_equal(run(Conv(4, (3, 3), strides=2, impl='winograd'), x),
                                run(Conv(4, (3, 3), strides=2, impl='im2col'), x))
  # Winograd and im2col round differently, so they are distinguishable at all.
  assert not np.array_equal(run(Conv(4, (3, 3), impl='winograd'), x), run(Conv(4, (3, 3), impl='im2col'), x))


def test_winograd_in_bfloat16():
  x = _normal((2, 8, 8, 4))
  params = _random_params(Conv(3, (3, 3)), x)
  ref = jax.jit(Conv(3, (3, 3), impl='xla').apply)(params, x)
  conv = Conv(3, (3, 3), impl='winograd', dtype=jnp.bfloat16)
  y = jax.jit(conv.apply)(params, x)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), ref, atol=0.05 * np.abs(ref).max())
  grad = jax.jit(jax.grad(lambda p: jnp.sum(conv.apply(p, x).astype(jnp.float32))))(params)
  assert grad['params']['kernel'].dtype == jnp.float32  # param_dtype: the gradient of float32 params


# (input shape, window): 1-D and 2-D, with remainders that VALID drops.
POOL_CASES = [((2, 41, 3), 2), ((2, 40, 1), (4,)), ((2, 9, 10, 3), (2, 3)),
              ((3, 8, 8, 2), 2)]


def _flax_window(x, window):
  nd = x.ndim - 2
  return (window,) * nd if isinstance(window, int) else tuple(window)


@pytest.mark.parametrize('shape,window', POOL_CASES)
def test_max_pool_matches_flax_values_and_gradient(shape, window):
  # Continuous random inputs have no ties, so the gradient is unambiguous.
  x = _normal(shape)
  w = _flax_window(x, window)

  def flax_pool(x):
    return nn.max_pool(x, w, strides=w, padding='VALID')

  cotangent = _normal(jax.eval_shape(flax_pool, x).shape, seed=1)

  @jax.jit
  def values_and_grads(x):
    return [(pool(x), jax.grad(lambda x: jnp.sum(pool(x) * cotangent))(x))
            for pool in (lambda x: max_pool(x, window), flax_pool)]

  (ours, our_grad), (ref, ref_grad) = values_and_grads(x)
  np.testing.assert_array_equal(ours, ref)
  np.testing.assert_array_equal(our_grad, ref_grad)


@pytest.mark.parametrize('shape,window', POOL_CASES)
def test_avg_pool_matches_flax(shape, window):
  x = _normal(shape)
  w = _flax_window(x, window)
  np.testing.assert_allclose(avg_pool(x, window),
                             nn.avg_pool(x, w, strides=w, padding='VALID'),
                             rtol=1e-6, atol=1e-6)


def test_max_pool_gradient_after_batch_norm_inside_jit_matches_flax(monkeypatch):
  # XLA recomputes batch norm and relu inside each backward fusion that
  # reads them; a tie mask against the forward pass's max once matched no
  # position of some windows here (a zero count: NaN gradients). This is
  # the digits_cnn model on 28x28 images, where that happened.
  from jaxdl.models import cnn as cnn_lib
  model = cnn_lib.CNN(num_classes=10, features=(64, 128), hidden=(256,), use_batchnorm=True)
  x, y = _normal((16, 28, 28, 1)), jnp.arange(16) % 10
  variables = model.init(KEY, x[:1], train=False)

  def grads():
    @jax.jit
    def grad(params):
      def loss(params):
        logits, _ = model.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
      return jax.grad(loss)(params)
    return grad(variables['params'])

  ours = grads()
  monkeypatch.setattr(cnn_lib, 'max_pool', lambda x, w: nn.max_pool(x, (w, w), strides=(w, w), padding='VALID'))
  ref = grads()
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    assert np.isfinite(np.asarray(a)).all()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_max_pool_splits_the_gradient_between_tied_maxima():
  x = jnp.array([1.0, 1.0, 0.0, 2.0]).reshape(1, 4, 1)
  grad = jax.grad(lambda x: jnp.sum(max_pool(x, 2)))(x)
  np.testing.assert_array_equal(grad.ravel(), [0.5, 0.5, 0.0, 1.0])


def test_pool_errors_name_the_window_and_size():
  with pytest.raises(JaxdlError, match=(
      r'max_pool window \(4, 4\) is larger than the spatial size \(3, 8\)')):
    max_pool(jnp.ones((1, 3, 8, 1)), 4)
  with pytest.raises(JaxdlError, match=(
      r'avg_pool window \(2, 2, 2\) has 3 entries for 1 spatial axes')):
    avg_pool(jnp.ones((1, 8, 1)), (2, 2, 2))


def test_on_rows_is_the_layer_on_the_full_input():
  # A model that runs its projection through on_rows has the same parameters
  # (names and shapes) as one that does not, and the same outputs within
  # float rounding.
  class Projection(nn.Module):
    rows: bool

    @nn.compact
    def __call__(self, x):  # (B, T, heads, Dh) -> (B, T, 7)
      layer = nn.DenseGeneral(7, axis=(-2, -1), name='out')
      return on_rows(layer, x, 2) if self.rows else layer(x)

  x = _normal((3, 5, 4, 6))
  params = Projection(rows=False).init(KEY, x)
  assert (jax.tree.map(jnp.shape, Projection(rows=True).init(KEY, x))
          == jax.tree.map(jnp.shape, params))
  out = Projection(rows=True).apply(params, x)
  assert out.shape == (3, 5, 7)
  np.testing.assert_allclose(out, Projection(rows=False).apply(params, x), rtol=1e-5, atol=1e-6)


def test_global_pools_reduce_all_spatial_axes():
  x = _normal((2, 3, 4, 5))  # (B, H, W, C)
  np.testing.assert_allclose(global_avg_pool(x), x.mean(axis=(1, 2)), rtol=1e-6)
  np.testing.assert_array_equal(global_max_pool(x), x.max(axis=(1, 2)))
  assert global_avg_pool(x[:, 0]).shape == (2, 5)  # 1-D signals (B, L, C)


def test_activations_by_name():
  x = jnp.linspace(-2.0, 2.0, 9)
  np.testing.assert_array_equal(get_activation('relu')(x), jnp.maximum(x, 0))
  np.testing.assert_array_equal(get_activation('tanh')(x), jnp.tanh(x))
  assert {'relu', 'gelu', 'tanh', 'sigmoid'} <= set(ACTIVATIONS)
  with pytest.raises(JaxdlError, match=r"unknown activation 'swish2' \(choices: relu, gelu"):
    get_activation('swish2')

