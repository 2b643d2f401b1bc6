"""On-device augmentation: exact geometry, probabilities, mixup algebra, tracing."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data import make_augment
from jaxdl.utils.errors import JaxdlError

jax.config.update("jax_numpy_rank_promotion", "raise")

KEY = jax.random.PRNGKey(0)


def _one_hot(n, k=16):
  return jax.nn.one_hot(jnp.arange(n) % k, k)


def _zero_fill_shift(image, offsets):
  """Reference: moves ``image`` (spatial..., C) by ``offsets``, zero fill, in NumPy."""
  out = np.zeros_like(image)
  src, dst = [], []
  for size, d in zip(image.shape[:-1], offsets):
    src.append(slice(max(0, -d), size - max(0, d)))
    dst.append(slice(max(0, d), size - max(0, -d)))
  out[tuple(dst)] = image[tuple(src)]
  return out


def test_all_off_is_identity_with_no_random_ops():
  augment = make_augment()
  x, y = jnp.ones((4, 8, 8, 1)), _one_hot(4)
  x_out, y_out = augment(KEY, x, y)
  assert x_out is x and y_out is y
  jaxpr = jax.make_jaxpr(augment)(KEY, x, y)
  assert not jaxpr.eqns  # nothing traced at all
  assert augment(KEY, x, None)[1] is None


@pytest.mark.parametrize("spatial", [(9, 11), (13,)])
def test_shift_moves_a_hot_pixel_within_the_window_and_hits_every_offset(spatial):
  shift, batch = 2, 600
  augment = make_augment(shift=shift)
  center = tuple(s // 2 for s in spatial)
  x = np.zeros((batch, *spatial, 1), np.float32)
  x[(slice(None), *center, 0)] = 1.0
  x_out, _ = augment(jax.random.PRNGKey(1), jnp.asarray(x), _one_hot(batch))
  x_out = np.asarray(x_out)
  assert x_out.shape == x.shape and x_out.dtype == x.dtype
  # All mass stays in one pixel (the window lies inside the image).
  np.testing.assert_array_equal(x_out.reshape(batch, -1).sum(1), 1.0)
  positions = np.argwhere(x_out[..., 0] == 1.0)[:, 1:]  # (B, S)
  offsets = positions - np.asarray(center)
  assert np.abs(offsets).max() <= shift
  seen = {tuple(o) for o in offsets}
  assert seen == set(itertools.product(range(-shift, shift + 1), repeat=len(spatial)))
  # Independent per example and per axis: not all examples moved alike.
  if len(spatial) == 2:
    assert np.corrcoef(offsets.T)[0, 1] < 0.2


@pytest.mark.parametrize("spatial", [(8, 8), (20,)])
def test_shift_translates_content_exactly_with_zero_fill(spatial):
  # Channel 1 is a tracer pixel that reveals each example's offset; channel 0
  # must then be exactly the zero-filled translation of the input by it.
  shift, batch = 3, 64
  rng = np.random.default_rng(0)
  center = tuple(s // 2 for s in spatial)
  x = np.zeros((batch, *spatial, 2), np.float32)
  x[..., 0] = rng.uniform(0.5, 1.5, (batch, *spatial))  # no zeros: fill is visible
  x[(slice(None), *center, 1)] = 1.0
  x_out = np.asarray(make_augment(shift=shift)(jax.random.PRNGKey(2), jnp.asarray(x), None)[0])
  for i in range(batch):
    offset = np.argwhere(x_out[i, ..., 1] == 1.0)[0] - np.asarray(center)
    np.testing.assert_array_equal(x_out[i, ..., :1], _zero_fill_shift(x[i, ..., :1], offset))


def test_shift_larger_than_the_image_still_keeps_shape():
  x = jnp.ones((32, 3, 3, 1))
  x_out, _ = make_augment(shift=5)(KEY, x, None)
  assert x_out.shape == x.shape
  assert float(x_out.min()) == 0.0 and float(x_out.max()) == 1.0


@pytest.mark.parametrize("shape", [(2000, 4, 6, 2), (2000, 10, 3)])
def test_flip_mirrors_last_spatial_axis_about_half_the_time(shape):
  augment = make_augment(flip=True)
  x = jax.random.normal(jax.random.PRNGKey(3), shape)
  key = jax.random.PRNGKey(4)
  x_out, _ = augment(key, x, None)
  mirrored = jnp.flip(x, axis=-2)  # W for images, L for signals
  axes = tuple(range(1, x.ndim))
  kept = np.asarray(jnp.all(x_out == x, axis=axes))
  flipped = np.asarray(jnp.all(x_out == mirrored, axis=axes))
  assert np.all(kept ^ flipped)  # every example is exactly one of the two
  assert abs(flipped.mean() - 0.5) < 0.05  # 2000 draws: 0.05 is about 4.5 sigma
  # An involution per example: the same key flips the same examples back.
  np.testing.assert_array_equal(augment(key, x_out, None)[0], x)


def test_flip_and_shift_need_spatial_axes():
  with pytest.raises(JaxdlError, match=r"augment.flip needs spatial axes.*\(4, 6\)"):
    make_augment(flip=True)(KEY, jnp.ones((4, 6)), None)
  with pytest.raises(JaxdlError, match="augment.shift"):
    make_augment(shift=1)(KEY, jnp.ones((4, 6)), None)


def test_mixup_is_one_convex_combination_with_a_permutation():
  batch = 16
  augment = make_augment(mixup=0.4)
  # (16, 8, 8, 1) and 16 classes here and below: shared eager compilations.
  x = jax.random.normal(jax.random.PRNGKey(5), (batch, 8, 8, 1))
  y = jnp.eye(batch)  # one class per example reveals the pairing
  lams = []
  for seed in range(3):
    x_out, y_out = map(np.asarray, augment(jax.random.PRNGKey(seed), x, y))
    assert y_out.shape == y.shape and y_out.dtype == y.dtype
    np.testing.assert_allclose(y_out.sum(1), 1.0, atol=1e-6)  # rows on the simplex
    assert y_out.min() >= 0
    lam = None
    partners = []
    for i in range(batch):
      partner = i
      if y_out[i, i] < 1 - 1e-6:  # paired with another example
        partner = int(np.argmax(np.where(np.arange(batch) == i, -1, y_out[i])))
        row_lam = y_out[i, i]
        lam = row_lam if lam is None else lam
        assert abs(row_lam - lam) < 1e-6  # one lam for the whole batch
        np.testing.assert_allclose(y_out[i, partner], 1 - lam, atol=1e-6)
      partners.append(partner)
      expected = y_out[i, i] * np.asarray(x[i]) + (1 - y_out[i, i]) * np.asarray(x[partner])
      np.testing.assert_allclose(x_out[i], expected, rtol=1e-5, atol=1e-5)
    assert sorted(partners) == list(range(batch))  # a permutation
    assert lam is not None and 0 <= lam <= 1
    lams.append(lam)
  assert len(set(np.round(lams, 6))) == len(lams)  # a new lam per key


def test_mixup_soft_targets_stay_on_the_simplex():
  y = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(6), (16, 16)))
  _, y_out = make_augment(mixup=1.0)(KEY, jnp.zeros((16, 8, 8, 1)), y)
  np.testing.assert_allclose(np.asarray(y_out).sum(1), 1.0, atol=1e-5)
  assert float(y_out.min()) >= 0
  with pytest.raises(JaxdlError, match="augment.mixup needs soft targets"):
    make_augment(mixup=1.0)(KEY, jnp.zeros((16, 8, 8, 1)), None)


def test_noise_has_the_requested_std():
  x = jnp.full((16, 8, 8, 1), 2.0)
  x_out, _ = make_augment(noise=0.3)(KEY, x, None)
  delta = np.asarray(x_out) - 2.0
  assert abs(delta.mean()) < 0.03  # 1024 draws: standard error 0.009
  assert abs(delta.std() - 0.3) < 0.02  # standard error of the std: 0.0066
  assert np.all(delta.reshape(16, -1).std(1) > 0.15)  # every example gets noise


def test_scale_is_per_example_within_range():
  x = jnp.ones((500, 12, 1))
  x_out = np.asarray(make_augment(scale=0.2)(KEY, x, None)[0])
  factors = x_out[:, 0, 0]
  np.testing.assert_array_equal(x_out, np.broadcast_to(factors[:, None, None], x_out.shape))
  assert factors.min() >= 0.8 - 1e-6 and factors.max() <= 1.2 + 1e-6
  assert factors.min() < 0.85 and factors.max() > 1.15  # uses the range


ALL_ON = dict(shift=2, flip=True, noise=0.1, mixup=0.2, scale=0.1)


@pytest.mark.parametrize("shape, dtype, typed_key", [
    ((16, 8, 8, 1), jnp.float32, False),
    ((16, 8, 8, 1), jnp.float32, True),
    ((16, 40, 1), jnp.float32, False),
    ((16, 40, 1), jnp.bfloat16, False),
])
def test_everything_on_keeps_shapes_and_dtypes(shape, dtype, typed_key):
  # Shapes match the jit test's, so eager op compilations are shared (CPU time).
  x, y = jnp.ones(shape, dtype), _one_hot(16).astype(dtype)
  key = jax.random.key(7) if typed_key else jax.random.PRNGKey(7)
  x_out, y_out = make_augment(**ALL_ON)(key, x, y)
  assert x_out.shape == x.shape and x_out.dtype == dtype
  assert y_out.shape == y.shape and y_out.dtype == dtype
  assert bool(jnp.all(jnp.isfinite(x_out)))
  assert not bool(jnp.all(x_out == x))


def test_vector_batches_work_without_spatial_options():
  x_out, y_out = make_augment(noise=0.1, scale=0.1)(KEY, jnp.ones((8, 6)), _one_hot(8))
  assert x_out.shape == (8, 6) and y_out.shape == (8, 16)


class JitTracesOnceAndMatchesEagerTest(chex.TestCase):
  """Jitted, augment traces once across keys; jitted and eager agree with plain jax.jit."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_traces_once_across_keys_and_matches_eager(self):
    chex.clear_trace_counter()  # the two variants share one trace counter
    augment = make_augment(**ALL_ON)
    jitted = jax.jit(chex.assert_max_traces(augment, n=1))
    x = jax.random.uniform(jax.random.PRNGKey(8), (16, 8, 8, 1))
    y = _one_hot(16)
    outputs = [jitted(jax.random.PRNGKey(seed), x, y)[0] for seed in range(5)]  # one trace
    assert not np.allclose(outputs[0], outputs[1])  # new key, new augmentation
    # Op by op in the eager variant; the tolerance is relative to its output.
    chex.assert_trees_all_close(outputs[4], self.variant(augment)(jax.random.PRNGKey(4), x, y)[0],
                                rtol=1e-5, atol=1e-6)
    # Deterministic in the key.
    chex.assert_trees_all_equal(jitted(jax.random.PRNGKey(4), x, y)[0], outputs[4])


@pytest.mark.parametrize("kwargs, needle", [
    ({"shift": -1}, "augment.shift"),
    ({"shift": 1.5}, "augment.shift"),
    ({"noise": -0.1}, "augment.noise"),
    ({"mixup": float("nan")}, "augment.mixup"),
    ({"scale": 1.0}, "augment.scale"),
])
def test_bad_options_are_user_errors(kwargs, needle):
  with pytest.raises(JaxdlError, match=needle):
    make_augment(**kwargs)


def test_float_only_options_reject_integer_inputs():
  with pytest.raises(JaxdlError, match="augment.noise needs floating-point"):
    make_augment(noise=0.1)(KEY, jnp.ones((2, 4, 4, 1), jnp.uint8), None)
  x = jnp.arange(2 * 5 * 1, dtype=jnp.uint8).reshape(2, 5, 1)
  x_out, _ = make_augment(shift=1, flip=True)(KEY, x, None)  # geometry works on any dtype
  assert x_out.dtype == jnp.uint8
