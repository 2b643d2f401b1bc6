"""Recurrent networks: tanh RNN, LSTM and GRU, for sequence classification and language models.

A layer is ``nn.RNN`` (``nn.scan`` over time) around :class:`RecurrentCell`,
whose body is traced once whatever the sequence length, so a sequence of
4000 steps compiles as fast as one of 40 (``benchmarks/rnn_compile.py``).

Each step computes ``x_t @ W_i + h @ W_h`` inside the scan. Projecting the
inputs of all steps at once before the scan (one large matmul, as cuDNN does)
lost on XLA's CPU backend at every shape measured: 17.1 against 12.5 ms per
GRU train step at MNIST-1D's shapes (B 128, T 40, C 1, H 64), 35.9 against
31.3 at C 64, H 256 and 42.2 against 38.8 at C = H = 256 (B 32;
``benchmarks/rnn_compile.py``). The projected sequence, G * H wide, is a much
larger scan input, and gradient output, than the C-wide inputs. With the
projection inside, the layers run at the speed of Flax's own cells.

Gate layouts follow PyTorch's and cuDNN's (LSTM: i, f, g, o; GRU: r, z, n,
with the reset gate applied to ``W_hn h + b_hn``), so weights can be compared
with a reference implementation gate by gate.

Padded variable-length batches: pass ``lengths`` (B,) and padding never
changes a result. The forward direction's final state is taken at each
sequence's last valid step; the backward direction reverses only the valid
part of each sequence; pooled readouts ignore padded steps.
"""

from collections.abc import Callable
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdl.models.initializers import get_initializer
from jaxdl.models.layers import as_sequence, dropout, length_mask, masked_pool, on_rows
from jaxdl.utils.errors import JaxdlError

Dtype = Any

# Cell kind -> number of gates G: the width of the input projection is G * H.
GATES: dict[str, int] = {'tanh': 1, 'lstm': 4, 'gru': 3}
CELLS: tuple[str, ...] = tuple(GATES)
READOUTS: tuple[str, ...] = ('last', 'mean', 'max')


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
  if value not in choices:
    raise JaxdlError(f"unknown {what} {value!r} (choices: {', '.join(choices)})")


def _per_gate(init: Callable[..., jax.Array], gates: int) -> Callable[..., jax.Array]:
  """Initialises an (H, G * H) recurrent kernel one (H, H) gate block at a time.

  An orthogonal (H, 4H) matrix would only have orthonormal rows; per block,
  every gate's recurrent map starts norm-preserving (Saxe et al., 2014).
  """

  def init_fn(key, shape, dtype=jnp.float32):
    rows, cols = shape
    keys = jax.random.split(key, gates)
    return jnp.concatenate([init(k, (rows, cols // gates), dtype) for k in keys], axis=1)

  return init_fn


def _gate_bias(kind: str, features: int, forget_bias: float) -> Callable[..., jax.Array]:
  """Zero biases, except the LSTM forget gate's, which starts at ``forget_bias``.

  A forget gate open at init (sigmoid(1) = 0.73) lets the cell state and its
  gradient pass through many steps before training has shaped the gate
  (Gers et al., 2000; Jozefowicz et al., 2015).
  """

  def init_fn(key, shape, dtype=jnp.float32):
    del key
    bias = jnp.zeros(shape, dtype)
    if kind == 'lstm':
      bias = bias.at[features:2 * features].set(forget_bias)  # gate order i, f, g, o
    return bias

  return init_fn


class RecurrentCell(nn.RNNCellBase):
  """One step of a tanh RNN, LSTM or GRU.

    tanh: h' = tanh(x W_i + b + h W_h)
    lstm: i, f, g, o = split(x W_i + b + h W_h); c' = s(f) c + s(i) tanh(g);
          h' = s(o) tanh(c')
    gru:  r, z, n from xw = x W_i + b and hw = h W_h + b_h;
          r = s(xw_r + hw_r); z = s(xw_z + hw_z); n = tanh(xw_n + r hw_n);
          h' = (1 - z) n + z h

  The carry is ``(c, h)`` for the LSTM and ``h`` otherwise.

  Attributes:
    kind: 'tanh', 'lstm' or 'gru'.
    features: H, the state width.
    forget_bias: initial LSTM forget-gate bias.
    kernel_init: initializer name for ``W_i`` (C, G * H).
    recurrent_init: initializer name for each (H, H) gate block of ``W_h``.
    dtype: computation dtype.
    param_dtype: parameter dtype.
  """

  kind: str
  features: int
  forget_bias: float = 1.0
  kernel_init: str = 'lecun'
  recurrent_init: str = 'orthogonal'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, x: jax.Array):
    """(carry, x_t (B, C)) -> (new carry, h (B, H))."""
    _check_choice(self.kind, CELLS, 'cell')
    h_size, gates = self.features, GATES[self.kind]
    width = gates * h_size
    w_i = self.param('input_kernel', get_initializer(self.kernel_init), (x.shape[-1], width),
                     self.param_dtype)
    b = self.param('bias', _gate_bias(self.kind, h_size, self.forget_bias), (width,),
                   self.param_dtype)
    w_h = self.param('recurrent_kernel', _per_gate(get_initializer(self.recurrent_init), gates),
                     (h_size, width), self.param_dtype)
    h = carry[1] if self.kind == 'lstm' else carry  # (B, H)
    x, h, w_i, b, w_h = nn.dtypes.promote_dtype(x, h, w_i, b, w_h, dtype=self.dtype)
    row = (1,) * (x.ndim - 1) + (-1,)  # biases broadcast over the batch axes
    xw = jnp.dot(x, w_i) + b.reshape(row)  # (B, G * H)
    hw = jnp.dot(h, w_h)  # (B, G * H)
    if self.kind == 'tanh':
      h = jnp.tanh(xw + hw)
      return h, h
    if self.kind == 'lstm':
      i, f, g, o = jnp.split(xw + hw, 4, axis=-1)
      c = nn.sigmoid(f) * carry[0].astype(self.dtype) + nn.sigmoid(i) * jnp.tanh(g)
      h = nn.sigmoid(o) * jnp.tanh(c)
      return (c, h), h
    # GRU: the hidden side has its own bias, so the reset gate can scale
    # W_hn h + b_hn as a whole (PyTorch's and cuDNN's variant).
    b_h = self.param('recurrent_bias', nn.initializers.zeros_init(), (width,), self.param_dtype)
    hw = hw + b_h.astype(self.dtype).reshape(row)
    xr, xz, xn = jnp.split(xw, 3, axis=-1)
    hr, hz, hn = jnp.split(hw, 3, axis=-1)
    r = nn.sigmoid(xr + hr)
    z = nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h = (1.0 - z) * n + z * h
    return h, h

  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
    del rng  # zero initial state
    h = jnp.zeros((*input_shape[:-1], self.features), self.dtype)
    return (h, h) if self.kind == 'lstm' else h

  @property
  def num_feature_axes(self) -> int:
    return 1


class Recurrent(nn.Module):
  """One recurrent layer in one direction over (B, T, C).

  Attributes:
    kind: 'tanh', 'lstm' or 'gru'.
    features: H, the state width.
    reverse: run from the last valid step to the first (outputs stay in the
      original order).
    unroll: scan steps per loop iteration (see ``benchmarks/rnn_compile.py``).
    forget_bias: initial LSTM forget-gate bias.
    kernel_init: initializer name for the input kernel.
    recurrent_init: initializer name for the recurrent kernel's blocks.
    dtype: computation dtype.
    param_dtype: parameter dtype.
  """

  kind: str
  features: int
  reverse: bool = False
  unroll: int = 1
  forget_bias: float = 1.0
  kernel_init: str = 'lecun'
  recurrent_init: str = 'orthogonal'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, lengths: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Runs the layer.

    Args:
      x: inputs (B, T, C).
      lengths: valid steps per sequence (B,), each in [1, T]; None: all T.

    Returns:
      The outputs (B, T, H) (unspecified at padded steps) and the final state
      h (B, H), taken at the last valid step of the direction.
    """
    cell = RecurrentCell(self.kind, self.features, forget_bias=self.forget_bias,
                         kernel_init=self.kernel_init, recurrent_init=self.recurrent_init,
                         dtype=self.dtype, param_dtype=self.param_dtype, name='cell')
    carry, ys = nn.RNN(cell, return_carry=True, reverse=self.reverse, keep_order=True,
                       unroll=self.unroll)(x, seq_lengths=lengths)  # ys: (B, T, H)
    h = carry[1] if self.kind == 'lstm' else carry  # (B, H)
    return ys, h


class RNNEncoder(nn.Module):
  """Stacked (optionally bidirectional) recurrent layers.

  Attributes:
    cell: 'tanh', 'lstm' or 'gru'.
    hidden: H, the state width of every layer and direction.
    num_layers: stacked layers; each takes the previous one's outputs.
    bidirectional: a backward layer beside each forward one, outputs
      concatenated (2H).
    dropout: rate on each layer's outputs before the next layer, in training.
    unroll, forget_bias, kernel_init, recurrent_init, dtype, param_dtype: see
      ``Recurrent``.
  """

  cell: str = 'lstm'
  hidden: int = 64
  num_layers: int = 1
  bidirectional: bool = False
  dropout: float = 0.0
  unroll: int = 1
  forget_bias: float = 1.0
  kernel_init: str = 'lecun'
  recurrent_init: str = 'orthogonal'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, lengths: jax.Array | None = None, *,
               train: bool) -> tuple[jax.Array, jax.Array]:
    """Encodes (B, T, C) into outputs (B, T, D) and a final state (B, D).

    D is H, or 2H when bidirectional: the forward state at the last valid step
    beside the backward state at step 0.
    """
    _check_choice(self.cell, CELLS, 'cell')
    if self.num_layers < 1:
      raise JaxdlError(f'rnn num_layers={self.num_layers} must be >= 1')
    layer = functools.partial(
        Recurrent, self.cell, self.hidden, unroll=self.unroll, forget_bias=self.forget_bias,
        kernel_init=self.kernel_init, recurrent_init=self.recurrent_init, dtype=self.dtype,
        param_dtype=self.param_dtype)
    final = None
    for i in range(self.num_layers):
      if i:
        x = dropout(x, self.dropout, train)
      ys, final = layer(name=f'forward_{i}')(x, lengths)  # (B, T, H), (B, H)
      if self.bidirectional:
        ys_b, final_b = layer(reverse=True, name=f'backward_{i}')(x, lengths)
        ys = jnp.concatenate([ys, ys_b], axis=-1)  # (B, T, 2H)
        final = jnp.concatenate([final, final_b], axis=-1)  # (B, 2H)
      x = ys
    return x, final


class RNNClassifier(nn.Module):
  """A recurrent sequence classifier: encoder, readout, dense head.

  Takes signals (B, T, C), such as MNIST-1D's (B, 40, 1) at one sample per
  step, or images (B, H, W, C) as H steps of one row each.

  Attributes:
    num_classes: number of logits.
    cell: 'tanh' (Elman RNN), 'lstm' or 'gru'.
    hidden: H, the state width.
    num_layers: stacked recurrent layers.
    bidirectional: a backward layer beside each forward one.
    readout: 'last' (the final state: forward at the last valid step, and
      backward at step 0), 'mean' or 'max' (over the valid steps of the top
      layer's outputs).
    dropout: rate between layers and before the head, in training only.
    unroll: scan steps per loop iteration.
    forget_bias: initial LSTM forget-gate bias.
    kernel_init: initializer name for input projections and the head.
    recurrent_init: initializer name for the recurrent kernels.
    dtype: computation dtype; logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int
  cell: str = 'lstm'
  hidden: int = 64
  num_layers: int = 1
  bidirectional: bool = False
  readout: str = 'last'
  dropout: float = 0.0
  unroll: int = 1
  forget_bias: float = 1.0
  kernel_init: str = 'lecun'
  recurrent_init: str = 'orthogonal'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool,
               lengths: jax.Array | None = None) -> jax.Array:
    """Logits (B, num_classes) for inputs (B, T, C) with optional ``lengths`` (B,)."""
    _check_choice(self.readout, READOUTS, f'{self.cell} readout')
    x = as_sequence(self.cell if self.cell != 'tanh' else 'rnn', x)  # (B, T, C)
    ys, final = RNNEncoder(
        self.cell, self.hidden, self.num_layers, self.bidirectional, self.dropout,
        self.unroll, self.forget_bias, self.kernel_init, self.recurrent_init,
        self.dtype, self.param_dtype, name='encoder')(x, lengths, train=train)
    if self.readout == 'last':
      features = final  # (B, D)
    else:
      features = masked_pool(ys, length_mask(lengths, *x.shape[:2]), self.readout)  # (B, D)
    features = dropout(features, self.dropout, train)
    logits = nn.Dense(self.num_classes, kernel_init=get_initializer(self.kernel_init),
                      dtype=self.dtype, param_dtype=self.param_dtype, name='head')(features)
    return logits.astype(jnp.float32)  # (B, num_classes)


class RNNLanguageModel(nn.Module):
  """A recurrent next-token model: embedding, unidirectional layers, logits.

  Causal by construction: the output at step t has seen tokens 0..t only.

  Attributes:
    num_classes: V, the vocabulary size.
    cell: 'tanh', 'lstm' or 'gru'.
    hidden: H, the state width.
    num_layers: stacked recurrent layers.
    embed_dim: token embedding width (0: H).
    dropout: rate on the embeddings, between layers and before the output
      layer, in training only.
    unroll, forget_bias, kernel_init, recurrent_init, dtype, param_dtype: see
      ``RNNClassifier``.
  """

  num_classes: int
  cell: str = 'lstm'
  hidden: int = 256
  num_layers: int = 1
  embed_dim: int = 0
  dropout: float = 0.0
  unroll: int = 1
  forget_bias: float = 1.0
  kernel_init: str = 'lecun'
  recurrent_init: str = 'orthogonal'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool) -> jax.Array:
    """Next-token logits (B, T, V) for integer tokens (B, T)."""
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise JaxdlError(f"model '{self.cell}_lm' expects integer tokens (B, T), got "
                       f"{tokens.dtype} inputs of shape {tuple(tokens.shape)}")
    x = nn.Embed(self.num_classes, self.embed_dim or self.hidden, dtype=self.dtype,
                 param_dtype=self.param_dtype, name='embed')(tokens)  # (B, T, E)
    x = dropout(x, self.dropout, train)
    ys, _ = RNNEncoder(
        self.cell, self.hidden, self.num_layers, False, self.dropout, self.unroll,
        self.forget_bias, self.kernel_init, self.recurrent_init, self.dtype,
        self.param_dtype, name='encoder')(x, train=train)  # (B, T, H)
    ys = dropout(ys, self.dropout, train)
    logits = on_rows(nn.Dense(self.num_classes, kernel_init=get_initializer(self.kernel_init),
                              dtype=self.dtype, param_dtype=self.param_dtype, name='head'), ys, 1)
    return logits.astype(jnp.float32)  # (B, T, V)


# Named variants for the registry: the cell is the family's main choice.
SimpleRNN = functools.partial(RNNClassifier, cell='tanh')
LSTM = functools.partial(RNNClassifier, cell='lstm')
GRU = functools.partial(RNNClassifier, cell='gru')
SimpleRNNLanguageModel = functools.partial(RNNLanguageModel, cell='tanh')
LSTMLanguageModel = functools.partial(RNNLanguageModel, cell='lstm')
GRULanguageModel = functools.partial(RNNLanguageModel, cell='gru')


def input_gradient_norms(apply_fn: Callable[..., jax.Array], variables: Any, x: jax.Array,
                         labels: jax.Array) -> jax.Array:
  """How strongly each input step moves the loss: ``mean_b ||dL/dx_t||``, (T,).

  For a classifier reading its last state, the gradient that reaches an early
  step has passed through every later step's Jacobian. In a tanh RNN those
  products shrink geometrically (the vanishing gradient, Bengio et al.,
  1994); the LSTM's additive cell path and the GRU's update gate keep it.

  Args:
    apply_fn: ``model.apply``.
    variables: the model's variables.
    x: inputs (B, T, C).
    labels: integer labels (B,).

  Returns:
    The per-step gradient norm averaged over the batch, (T,).
  """

  def loss(inputs):
    logits = apply_fn(variables, inputs, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

  grads = jax.grad(loss)(x).reshape(x.shape[0], x.shape[1], -1)  # (B, T, C)
  return jnp.linalg.norm(grads, axis=-1).mean(axis=0)  # (T,)
