"""Sequence models: reference cells, masking, causality, attention maps, counts, traces."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models import (RNNClassifier, RNNLanguageModel, RecurrentCell, TransformerClassifier,
                          TransformerLanguageModel, attention_maps, get_model,
                          input_gradient_norms, rnn, sinusoidal_positions)
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count

jax.config.update('jax_numpy_rank_promotion', 'raise')


def _normal(shape, seed=0, scale=1.0):
  # NumPy, not jax.random: on CPU each new shape would compile a sampler.
  return scale * np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _random_params(model, x, seed=0, scale=0.5, **kwargs):
  """Random parameters in ``model``'s tree (larger than init, so every weight matters).

  Cheaper than ``init``, whose truncated-normal and orthogonal samplers are
  large graphs to compile on CPU.
  """
  shapes = jax.eval_shape(functools.partial(model.init, **kwargs), jax.random.PRNGKey(0), x)
  leaves, tree = jax.tree.flatten(shapes['params'])
  return {'params': tree.unflatten([jnp.asarray(_normal(l.shape, seed + i, scale))
                                    for i, l in enumerate(leaves)])}


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------- reference cells --
# Written from the textbook equations (PyTorch's gate order), in float64 NumPy.


def ref_tanh(x, h, c, wi, bi, wh, bh):
  del c, bh
  h = np.tanh(x @ wi + bi + h @ wh)
  return h, None


def ref_lstm(x, h, c, wi, bi, wh, bh):
  del bh
  z = x @ wi + bi + h @ wh
  n = h.shape[-1]
  i, f, g, o = (z[:, k * n:(k + 1) * n] for k in range(4))
  c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
  return _sigmoid(o) * np.tanh(c), c


def ref_gru(x, h, c, wi, bi, wh, bh):
  del c
  n = h.shape[-1]
  xi, hh = x @ wi + bi, h @ wh + bh
  r = _sigmoid(xi[:, :n] + hh[:, :n])
  z = _sigmoid(xi[:, n:2 * n] + hh[:, n:2 * n])
  cand = np.tanh(xi[:, 2 * n:] + r * hh[:, 2 * n:])
  return (1 - z) * cand + z * h, None


REFERENCES = {'tanh': ref_tanh, 'lstm': ref_lstm, 'gru': ref_gru}


def _layer_weights(params):
  cell = {k: np.asarray(v, np.float64) for k, v in params['cell'].items()}
  return (cell['input_kernel'], cell['bias'], cell['recurrent_kernel'],
          cell.get('recurrent_bias', 0.0))


@pytest.mark.parametrize('kind', ['tanh', 'lstm', 'gru'])
def test_one_cell_step_matches_the_hand_written_reference(kind):
  batch, c_in, hidden = 3, 5, 4
  gates = rnn.GATES[kind]
  wi, bi = _normal((c_in, gates * hidden), 1), _normal((gates * hidden,), 2)
  wh, bh = _normal((hidden, gates * hidden), 3), _normal((gates * hidden,), 4)
  x, h, c = _normal((batch, c_in), 5), _normal((batch, hidden), 6), _normal((batch, hidden), 7)
  params = {'input_kernel': wi, 'bias': bi, 'recurrent_kernel': wh}
  if kind == 'gru':
    params['recurrent_bias'] = bh
  cell = RecurrentCell(kind, hidden)
  carry = (c, h) if kind == 'lstm' else h
  new_carry, out = jax.jit(cell.apply)({'params': params}, carry, x)
  want_h, want_c = REFERENCES[kind](*(a.astype(np.float64) for a in (x, h, c, wi, bi, wh)),
                                    np.float64(bh))
  np.testing.assert_allclose(out, want_h, rtol=1e-5, atol=1e-5)
  if kind == 'lstm':
    np.testing.assert_allclose(new_carry[0], want_c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(new_carry[1], want_h, rtol=1e-5, atol=1e-5)
  else:
    np.testing.assert_allclose(new_carry, want_h, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kind', ['lstm', 'gru'])
def test_a_stacked_classifier_matches_the_reference_unrolled_over_time(kind):
  # Two layers over 6 steps from a zero state: the scan, the stacking and the
  # final-state readout against the reference cell in a Python loop.
  model = RNNClassifier(3, cell=kind, hidden=4, num_layers=2)
  x = _normal((2, 6, 5), 11)
  variables = _random_params(model, x, train=False)
  p = variables['params']
  seq = x.astype(np.float64)
  for layer in ('forward_0', 'forward_1'):
    weights = _layer_weights(p['encoder'][layer])
    h, c, outs = np.zeros((2, 4)), np.zeros((2, 4)), []
    for t in range(seq.shape[1]):
      h, c = REFERENCES[kind](seq[:, t], h, c, *weights)
      outs.append(h)
    seq = np.stack(outs, axis=1)
  want = h @ np.asarray(p['head']['kernel']) + np.asarray(p['head']['bias'])
  np.testing.assert_allclose(model.apply(variables, x, train=False), want, rtol=1e-4, atol=1e-4)


# Parameter counts by hand. One direction of one layer with C inputs and H
# units: input projection C*G*H + G*H, recurrent kernel H*G*H (+ G*H GRU bias).
def _rnn_layer(c, h, g, gru=False):
  return c * g * h + g * h + h * g * h + (g * h if gru else 0)


PARAM_COUNTS = [
    ('rnn', RNNClassifier(10, cell='tanh', hidden=8), _rnn_layer(1, 8, 1) + 8 * 10 + 10),
    ('lstm', RNNClassifier(10, cell='lstm', hidden=8), _rnn_layer(1, 8, 4) + 8 * 10 + 10),
    ('gru', RNNClassifier(10, cell='gru', hidden=8), _rnn_layer(1, 8, 3, True) + 8 * 10 + 10),
    ('gru-bi-2', RNNClassifier(10, cell='gru', hidden=8, num_layers=2, bidirectional=True),
     2 * _rnn_layer(1, 8, 3, True) + 2 * _rnn_layer(16, 8, 3, True) + 16 * 10 + 10),
    # Per block: LayerNorms 2 * 2D, qkv 3 * (D*D + D), out D*D + D, MLP
    # D*4D + 4D + 4D*D + D; then the final LayerNorm 2D.
    ('transformer', TransformerClassifier(10, width=8, num_layers=2, num_heads=2, max_len=40),
     (1 * 8 + 8) + 40 * 8 + 2 * (4 * 8 + 3 * (64 + 8) + (64 + 8) + (8 * 32 + 32 + 32 * 8 + 8))
     + 2 * 8 + (8 * 10 + 10)),
]


@pytest.mark.parametrize('model,expected', [c[1:] for c in PARAM_COUNTS],
                         ids=[c[0] for c in PARAM_COUNTS])
def test_exact_parameter_counts(model, expected):
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                          jnp.zeros((2, 40, 1)))
  assert param_count(shapes['params']) == expected


def test_language_model_parameter_counts():
  v, d, t = 11, 8, 16
  tied = TransformerLanguageModel(v, width=d, num_layers=1, num_heads=2, max_len=t)
  block = 4 * d + 3 * (d * d + d) + (d * d + d) + (d * 4 * d + 4 * d + 4 * d * d + d)
  tokens = jnp.zeros((2, t), jnp.int32)
  count = lambda m: param_count(jax.eval_shape(  # noqa: E731
      functools.partial(m.init, train=False), jax.random.PRNGKey(0), tokens)['params'])
  assert count(tied) == v * d + t * d + block + 2 * d
  assert count(tied.clone(tie_embeddings=False)) == count(tied) + d * v + v
  lstm = RNNLanguageModel(v, cell='lstm', hidden=d, embed_dim=5)
  assert count(lstm) == v * 5 + _rnn_layer(5, d, 4) + d * v + v


# ------------------------------------------------------------------ masking --

MASKED = [
    ('rnn-last', RNNClassifier(4, cell='tanh', hidden=6)),
    ('lstm-last-bi', RNNClassifier(4, cell='lstm', hidden=6, bidirectional=True)),
    ('gru-mean-2', RNNClassifier(4, cell='gru', hidden=6, num_layers=2, readout='mean')),
    ('gru-max-bi', RNNClassifier(4, cell='gru', hidden=6, bidirectional=True, readout='max')),
    ('transformer-mean', TransformerClassifier(4, width=8, num_heads=2, max_len=16)),
    ('transformer-cls-sin', TransformerClassifier(4, width=8, num_heads=2, pooling='cls',
                                                  positions='sinusoidal')),
]


@pytest.mark.parametrize('model', [m[1] for m in MASKED], ids=[m[0] for m in MASKED])
def test_padding_never_changes_the_result(model):
  lengths = np.array([12, 5, 1, 9])
  x = _normal((4, 16, 3), 1)
  valid = np.arange(16)[None, :, None] < lengths[:, None, None]
  variables = _random_params(model, x[:, :12], train=False)
  apply = jax.jit(functools.partial(model.apply, train=False))
  # Garbage of two sizes and lengths: padded to 12 steps and to 16.
  short = np.where(valid, x, _normal(x.shape, 2, scale=100.0))[:, :12]
  long = np.where(valid, x, _normal(x.shape, 3, scale=1e4))
  batched = apply(variables, short, lengths=jnp.asarray(lengths))
  np.testing.assert_allclose(apply(variables, long, lengths=jnp.asarray(lengths)), batched,
                             rtol=1e-4, atol=1e-5)
  # A sequence alone at its own length, with no padding at all.
  alone = apply(variables, x[1:2, :5])
  np.testing.assert_allclose(batched[1], alone[0], rtol=1e-4, atol=1e-5)
  # The full-length one needs no lengths either.
  np.testing.assert_allclose(batched[0], apply(variables, short)[0], rtol=1e-5, atol=1e-6)


def test_backward_direction_is_the_forward_layer_on_the_reversed_valid_part():
  layer = functools.partial(rnn.Recurrent, 'gru', 5)
  x = _normal((2, 7, 3), 3)
  lengths = jnp.array([7, 4])
  variables = _random_params(layer(), x)
  ys_b, h_b = jax.jit(layer(reverse=True).apply)(variables, x, lengths)
  forward = jax.jit(layer().apply)
  for i, n in enumerate([7, 4]):
    ys_f, h_f = forward(variables, x[i:i + 1, :n][:, ::-1])
    np.testing.assert_allclose(h_b[i], h_f[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ys_b[i, :n], ys_f[0, ::-1], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------- causality --

DECODERS = [
    ('transformer_lm', TransformerLanguageModel(13, width=16, num_layers=2, num_heads=2,
                                                max_len=10)),
    ('transformer_lm-sinusoidal', TransformerLanguageModel(13, width=16, num_layers=1,
                                                           num_heads=4, positions='sinusoidal',
                                                           tie_embeddings=False)),
    ('lstm_lm', RNNLanguageModel(13, cell='lstm', hidden=8, num_layers=2)),
]


@pytest.mark.parametrize('model', [m[1] for m in DECODERS], ids=[m[0] for m in DECODERS])
def test_decoder_shape_and_causality(model):
  tokens = np.random.default_rng(0).integers(0, 13, (3, 10)).astype(np.int32)
  variables = _random_params(model, jnp.asarray(tokens), train=False)
  apply = jax.jit(functools.partial(model.apply, train=False))
  logits = apply(variables, tokens)
  assert logits.shape == (3, 10, 13) and logits.dtype == jnp.float32
  for t in (0, 4, 9):
    changed = tokens.copy()
    changed[:, t] = (changed[:, t] + 1 + np.arange(3)) % 13
    other = apply(variables, changed)
    # Earlier positions never see the change, bit for bit.
    np.testing.assert_array_equal(other[:, :t], logits[:, :t])
    assert np.abs(np.asarray(other[:, t:] - logits[:, t:])).max(axis=-1).min() > 0


def test_language_models_reject_float_inputs():
  model = TransformerLanguageModel(5, width=8, num_heads=2, max_len=4)
  with pytest.raises(JaxdlError, match=r"transformer_lm' expects integer tokens \(B, T\)"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((2, 4, 1)), train=False)


# ---------------------------------------------------------------- attention --


def test_attention_maps_are_distributions_causal_and_blind_to_padding():
  lm = TransformerLanguageModel(13, width=16, num_layers=2, num_heads=4, max_len=8)
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, 13, (2, 8)), jnp.int32)
  maps = jax.jit(functools.partial(attention_maps, lm))(
      _random_params(lm, tokens, train=False), tokens)
  assert [m.shape for m in maps] == [(2, 4, 8, 8)] * 2
  for m in maps:
    np.testing.assert_allclose(m.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.triu(np.asarray(m), k=1), 0.0)  # no weight on the future

  clf = TransformerClassifier(3, width=8, num_layers=1, num_heads=2, max_len=6)
  x = _normal((2, 6, 1), 4)
  maps = jax.jit(functools.partial(attention_maps, clf))(
      _random_params(clf, x, train=False), x, lengths=jnp.array([6, 2]))
  assert maps[0].shape == (2, 2, 6, 6)
  np.testing.assert_array_equal(maps[0][1, :, :, 2:], 0.0)  # padded keys get no weight


def test_sinusoidal_positions():
  codes = np.asarray(sinusoidal_positions(50, 16))
  assert codes.shape == (50, 16)
  np.testing.assert_allclose(codes[0], [0.0] * 8 + [1.0] * 8, atol=1e-7)
  np.testing.assert_allclose(codes[:, 0], np.sin(np.arange(50)), atol=1e-5)  # frequency 1
  assert len({tuple(np.round(r, 5)) for r in codes}) == 50  # every position distinct


# --------------------------------------------------------- compile behaviour --


def test_the_cell_is_traced_a_fixed_number_of_times_whatever_the_length(monkeypatch):
  calls = []
  original = rnn.RecurrentCell.__call__

  def counting(self, carry, xw):
    calls.append(xw.shape)
    return original(self, carry, xw)

  monkeypatch.setattr(rnn.RecurrentCell, '__call__', counting)
  model = RNNClassifier(2, cell='gru', hidden=4, num_layers=2, bidirectional=True)
  traces = []
  for steps in (8, 512):
    x = jnp.zeros((2, steps, 1))
    variables = jax.eval_shape(functools.partial(model.init, train=False),
                               jax.random.PRNGKey(0), x)
    calls.clear()
    jax.jit(functools.partial(model.apply, train=False)).lower(variables, x)
    traces.append(len(calls))
  # A scan traces its body a fixed number of times per layer and direction
  # (4 here), never once per step.
  assert traces[0] == traces[1] <= 4 * 2


def test_input_gradient_norms_vanish_through_tanh_but_not_through_an_open_lstm_cell():
  x = jnp.asarray(_normal((8, 60, 1), 5))
  labels = jnp.zeros(8, jnp.int32)
  ratio = {}
  # An LSTM whose forget gates start wide open (sigmoid(5) = 0.993) passes the
  # gradient along its additive cell path; the tanh RNN multiplies it by a
  # contracting Jacobian at every step.
  for cell, forget_bias in (('tanh', 1.0), ('lstm', 5.0)):
    model = RNNClassifier(2, cell=cell, hidden=16, forget_bias=forget_bias)
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.PRNGKey(0), x)
    norms = np.asarray(jax.jit(functools.partial(input_gradient_norms, model.apply))(
        variables, x, labels))
    assert norms.shape == (60,) and np.isfinite(norms).all()
    ratio[cell] = norms[0] / norms[-1]  # the first step's gradient against the last's
  assert ratio['tanh'] < 1e-4 and ratio['lstm'] > 1e-2, ratio
  bias = variables['params']['encoder']['forward_0']['cell']['bias']
  np.testing.assert_array_equal(bias, [0] * 16 + [5] * 16 + [0] * 32)  # gates i, f, g, o


# ------------------------------------------------------------------- errors --


@pytest.mark.parametrize('name,options,shape,words', [
    ('gru', {'readout': 'first'}, (2, 5, 1), ["gru readout 'first'", 'last, mean, max']),
    ('lstm', {'cell': 'rnn'}, (2, 5, 1), ["unknown cell 'rnn'", 'tanh, lstm, gru']),
    ('gru', {}, (2, 5), ["'gru' expects 1-D signals (B, L, C) or images (B, H, W, C)"]),
    ('transformer', {'width': 10, 'num_heads': 4}, (2, 5, 1), ['width 10', 'num_heads=4']),
    ('transformer', {'max_len': 4}, (2, 5, 1), ['max_len=4', 'length 5']),
    ('transformer', {'patch_size': 0}, (2, 5, 1), ['patch_size=0', '>= 1']),
    ('transformer', {'positions': 'rotary'}, (2, 5, 1), ["positions 'rotary'"]),
])
def test_bad_options_are_one_line_errors_naming_them(name, options, shape, words):
  model = get_model(name, 3, **options)
  with pytest.raises(JaxdlError) as info:
    jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                   jnp.zeros(shape))
  message = str(info.value)
  assert '\n' not in message
  for word in words:
    assert word in message, (word, message)
