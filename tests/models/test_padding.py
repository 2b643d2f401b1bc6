"""Padding never changes a result: the same sequences padded to T and to T + k, for every sequence family."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models import TokenEmbedding, get_model, takes_lengths, zero_padding
from jaxdl.utils.errors import JaxdlError

B, T, C, K = 5, 10, 3, 8  # K even: patches of 2 steps still tile T + K and T + K / 2
LENGTHS = np.array([10, 6, 1, 3, 8], np.int32)

# family -> options (small, every code path that masks: bidirectional and
# pooled readouts, BatchNorm, patches that straddle a sequence's end).
FAMILIES = {
    "rnn": dict(hidden=6, readout="max"),
    "lstm": dict(hidden=6, bidirectional=True, num_layers=2),
    "gru": dict(hidden=6, bidirectional=True, readout="mean"),
    "transformer": dict(width=8, num_layers=2, num_heads=2, max_len=32),
    "transformer_patches": dict(width=8, num_layers=1, num_heads=2, max_len=16, patch_size=2, pooling="cls"),
    "tcn": dict(channels=8, dilations=(1, 2, 4), use_batchnorm=True, pooling="avgmax"),
    "tcn_avg": dict(channels=8, dilations=(1, 3), use_batchnorm=False, pooling="avg"),
}


def _model(family):
  return get_model(family.split("_")[0], 4, **FAMILIES[family])


def _inputs():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(B, T, C)).astype(np.float32)
  # Padding of another length, and junk in it: neither may reach a result.
  x = np.where(np.arange(T)[None, :, None] < LENGTHS[:, None, None], x, 100 * rng.normal(size=x.shape))
  junk = 100 * rng.normal(size=(B, K, C)).astype(np.float32)
  return x.astype(np.float32), np.concatenate([x, junk[:, :K // 2]], axis=1).astype(np.float32), \
      np.concatenate([x, junk], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def inputs():
  return _inputs()


def _variables(model, x, seed=0):
  """Random parameters (and BatchNorm statistics) in ``model``'s tree.

  Cheaper than ``init``, whose samplers are large graphs to compile on CPU;
  larger than init's, so every weight matters.
  """
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0), x)
  rng = np.random.default_rng(seed)
  variables = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype), shapes)
  if "batch_stats" in variables:  # running statistics: a variance must be positive
    variables["batch_stats"] = jax.tree.map(jnp.abs, variables["batch_stats"])
  return variables


@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_and_batch_statistics_ignore_the_padding(family, inputs):
  short, _, longest = inputs
  model = _model(family)
  variables = _variables(model, short)
  apply = jax.jit(functools.partial(model.apply, lengths=LENGTHS, mutable=["batch_stats"]),
                  static_argnames="train")
  # Training mode matters where BatchNorm takes its statistics from the batch.
  for train in (False, True) if "batch_stats" in variables else (False,):
    reference, stats = apply(variables, short, train=train)
    logits, other = apply(variables, longest, train=train)
    np.testing.assert_allclose(logits, reference, rtol=1e-5, atol=1e-5)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), other, stats)
    if not train:
      evaluated = reference
  # An example alone and unpadded gives the logits it has in the padded batch
  # (length 6: whole patches of 2 steps).
  alone = jax.jit(functools.partial(model.apply, train=False))(variables, short[1:2, :LENGTHS[1]])
  np.testing.assert_allclose(alone[0], evaluated[1], rtol=1e-4, atol=1e-5)


def test_token_ids_go_through_an_embedding_and_padding_stays_invisible():
  rng = np.random.default_rng(1)
  ids = rng.integers(0, 20, (B, T)).astype(np.int32)
  padded = np.concatenate([ids, rng.integers(0, 20, (B, K)).astype(np.int32)], axis=1)
  model = TokenEmbedding(_model("gru"), vocab_size=20, features=4)
  variables = _variables(model, ids)
  assert variables["params"]["embed"]["embedding"].shape == (20, 4)
  np.testing.assert_allclose(model.apply(variables, padded, train=False, lengths=LENGTHS),
                             model.apply(variables, ids, train=False, lengths=LENGTHS), rtol=1e-5, atol=1e-5)
  with pytest.raises(JaxdlError, match="integer ids"):
    model.apply(variables, ids.astype(np.float32), train=False)


@pytest.mark.parametrize("name, options", [("mlp", dict(hidden=(8,))), ("cnn", dict(features=(4,), hidden=())),
                                           ("resnet", dict(stage_sizes=(1,), width=4))])
def test_models_that_read_a_signal_whole_see_zeros_at_padded_steps(name, options, inputs):
  # Their shapes follow T, so T and T + k are different models; what the
  # file holds at the padded steps must still never matter.
  short, _, _ = inputs
  model = get_model(name, 4, **options)
  assert takes_lengths(model)
  variables = _variables(model, short)
  zeroed = np.asarray(zero_padding(jnp.asarray(short), LENGTHS))
  assert not zeroed[2, 1:].any() and np.array_equal(zeroed[0], short[0])
  np.testing.assert_allclose(model.apply(variables, short, train=False, lengths=LENGTHS),
                             model.apply(variables, zeroed, train=False), rtol=1e-6, atol=1e-6)
