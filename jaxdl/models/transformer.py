"""Transformers: a pre-LayerNorm encoder for classification and a causal decoder for language.

Both are stacks of the same block (Vaswani et al., 2017, with the LayerNorm
moved before each sublayer as in GPT-2 and ViT, which trains stably without
a learning-rate warm-up trick for every depth):

    x = x + Dropout(SelfAttention(LayerNorm(x), mask))
    x = x + Dropout(MLP(LayerNorm(x)))

Attention weights are recorded with ``sow`` in the 'intermediates'
collection; :func:`attention_maps` returns them, one (B, heads, T, T) array
per layer.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.initializers import get_initializer
from jaxdl.models.layers import as_sequence, dropout, length_mask, masked_pool, on_rows, zero_padding
from jaxdl.utils.errors import JaxdlError

Dtype = Any

POSITIONS: tuple[str, ...] = ('learned', 'sinusoidal')
POOLINGS: tuple[str, ...] = ('mean', 'cls')


def sinusoidal_positions(steps: int, width: int) -> jax.Array:
  """Fixed position codes (T, D): sines in the first half, cosines in the second.

  Frequencies fall geometrically from 1 to 1/10000 (Vaswani et al., 2017),
  so every position has a distinct code and relative offsets are linear maps
  of it. The halves are concatenated rather than interleaved: the same
  information, in an order a dense layer does not care about.
  """
  half = width // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half) / half)  # (D/2,)
  angles = jnp.arange(steps)[:, None] * freqs[None, :]  # (T, D/2)
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)  # (T, D)


class SelfAttention(nn.Module):
  """Multi-head scaled dot-product self-attention.

  Attributes:
    num_heads: heads; the width must divide by it.
    attention_dropout: rate on the attention weights, in training only.
    kernel_init: initializer name for the projections.
    dtype: computation dtype (the softmax runs in float32).
    param_dtype: parameter dtype.
  """

  num_heads: int
  attention_dropout: float = 0.0
  kernel_init: str = 'lecun'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    """Attends over (B, T, D); ``mask`` (B, 1, T, T) is True where query t may see key s."""
    width = x.shape[-1]
    if width % self.num_heads:
      raise JaxdlError(f'transformer width {width} is not divisible by num_heads={self.num_heads}')
    head = width // self.num_heads
    dense = functools.partial(nn.DenseGeneral, kernel_init=get_initializer(self.kernel_init),
                              dtype=self.dtype, param_dtype=self.param_dtype)
    # Every projection runs on rows (B * T, ...): see layers.on_rows.
    qkv = on_rows(dense((3, self.num_heads, head), name='qkv'), x, 1)  # (B, T, 3, heads, Dh)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, heads, Dh)
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) / math.sqrt(head)
    # The most negative float, not -inf: a row with no visible key (a padded
    # query) becomes uniform instead of NaN, and is ignored downstream.
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)  # (B, heads, T, T)
    weights = jax.nn.softmax(logits, axis=-1)
    self.sow('intermediates', 'attention', weights)
    weights = dropout(weights, self.attention_dropout, train).astype(self.dtype)
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, v)  # (B, T, heads, Dh)
    return on_rows(dense(width, axis=(-2, -1), name='out'), out, 2)  # (B, T, D)


class TransformerBlock(nn.Module):
  """Pre-LayerNorm block: attention and MLP sublayers, each residual.

  Attributes:
    num_heads: attention heads.
    mlp_dim: the MLP's hidden width.
    dropout: rate on each sublayer's output, in training only.
    attention_dropout: rate on the attention weights.
    kernel_init: initializer name for the dense kernels.
    dtype: computation dtype.
    param_dtype: parameter dtype.
  """

  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  attention_dropout: float = 0.0
  kernel_init: str = 'lecun'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    norm = functools.partial(nn.LayerNorm, dtype=self.dtype, param_dtype=self.param_dtype)
    dense = functools.partial(nn.Dense, kernel_init=get_initializer(self.kernel_init),
                              dtype=self.dtype, param_dtype=self.param_dtype)
    y = SelfAttention(self.num_heads, self.attention_dropout, self.kernel_init, self.dtype,
                      self.param_dtype, name='attention')(norm(name='norm_1')(x), mask, train=train)
    x = x + dropout(y, self.dropout, train)  # (B, T, D)
    def mlp(rows):  # (B * T, D) -> (B * T, D)
      return dense(x.shape[-1], name='mlp_out')(nn.gelu(dense(self.mlp_dim, name='mlp_in')(rows)))
    y = on_rows(mlp, norm(name='norm_2')(x), 1)
    return x + dropout(y, self.dropout, train)  # (B, T, D)


class _Trunk(nn.Module):
  """Positions, dropout, the blocks and a final LayerNorm, shared by both models."""

  model: str
  width: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  dropout: float
  attention_dropout: float
  positions: str
  max_len: int
  kernel_init: str
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    if self.positions not in POSITIONS:
      raise JaxdlError(f"unknown {self.model} positions {self.positions!r} "
                       f"(choices: {', '.join(POSITIONS)})")
    steps = x.shape[1]
    if self.positions == 'learned':
      # GPT-2's scale: small next to unit-variance inputs at init. max_len=0:
      # as many positions as the inputs the model is initialised on have.
      table = self.param('positions', nn.initializers.normal(0.02),
                         (self.max_len or steps, self.width), self.param_dtype)
      if steps > table.shape[0]:
        raise JaxdlError(f"model '{self.model}' has {table.shape[0]} learned positions (model.max_len="
                         f"{self.max_len}), got sequences of length {steps} tokens; raise model.max_len")
      x = x + table[:steps].astype(self.dtype)[None]
    else:
      if self.width % 2:
        raise JaxdlError(f"model '{self.model}' with sinusoidal positions needs an even "
                         f"width, got {self.width}")
      x = x + sinusoidal_positions(steps, self.width).astype(self.dtype)[None]
    x = dropout(x, self.dropout, train)  # (B, T, D)
    for i in range(self.num_layers):
      x = TransformerBlock(self.num_heads, self.mlp_dim, self.dropout, self.attention_dropout,
                           self.kernel_init, self.dtype, self.param_dtype,
                           name=f'block_{i}')(x, mask, train=train)
    return nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name='norm')(x)


class TransformerClassifier(nn.Module):
  """A Transformer encoder over a sequence of feature vectors, pooled, classified.

  Each step of a signal (B, T, C) (an image (B, H, W, C) is H steps of one row)
  is projected linearly to the model width; with ``patch_size`` p > 1, each
  token is the projection of p consecutive steps (non-overlapping, as ViT's
  patches), which shortens the sequence p-fold.

  Attributes:
    num_classes: number of logits.
    width: D, the model width.
    num_layers: encoder blocks.
    num_heads: attention heads per block.
    mlp_dim: hidden width of each block's MLP (0: 4D).
    dropout: rate after the input projection and each sublayer, and before
      the head, in training only.
    attention_dropout: rate on the attention weights.
    positions: 'learned' (a (max_len, D) table) or 'sinusoidal' (fixed).
    max_len: tokens the learned table covers (0: as many as the inputs the
      model is initialised on; with ``pooling='cls'``, one more).
    pooling: 'mean' over the valid tokens, or 'cls' (a learned token
      prepended to the sequence; its final state is classified).
    patch_size: input steps per token.
    kernel_init: initializer name for the dense kernels.
    dtype: computation dtype; logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int
  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 0
  dropout: float = 0.0
  attention_dropout: float = 0.0
  positions: str = 'learned'
  max_len: int = 128
  pooling: str = 'mean'
  patch_size: int = 1
  kernel_init: str = 'lecun'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool,
               lengths: jax.Array | None = None) -> jax.Array:
    """Logits (B, num_classes) for (B, T, C) inputs with optional ``lengths`` (B,)."""
    if self.pooling not in POOLINGS:
      raise JaxdlError(f"unknown transformer pooling {self.pooling!r} "
                       f"(choices: {', '.join(POOLINGS)})")
    x = as_sequence('transformer', x)  # (B, T, C)
    batch, steps, channels = x.shape
    p = self.patch_size
    if p < 1:
      raise JaxdlError(f"transformer patch_size={p} must be >= 1")
    if steps % p:  # zero steps complete the last token, as padding does
      lengths = jnp.full((batch,), steps, jnp.int32) if lengths is None else lengths
      x = jnp.pad(x, ((0, 0), (0, p - steps % p), (0, 0)))
      steps = x.shape[1]
    # Zeros at padded steps: a token that straddles a sequence's end then
    # holds the same values however far the batch is padded.
    x = zero_padding(x, lengths).reshape(batch, steps // p, p * channels)  # (B, T/p, p C)
    if lengths is not None:
      lengths = -(-lengths // p)  # a token is valid if any of its steps is
    mask = length_mask(lengths, batch, steps // p)  # (B, T')
    x = on_rows(nn.Dense(self.width, kernel_init=get_initializer(self.kernel_init), dtype=self.dtype,
                         param_dtype=self.param_dtype, name='embed'), x, 1)  # (B, T', D)
    if self.pooling == 'cls':
      cls = self.param('cls', nn.initializers.normal(0.02), (self.width,), self.param_dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, self.width)), x],
                          axis=1)  # (B, 1 + T', D)
      mask = jnp.concatenate([jnp.ones((batch, 1), bool), mask], axis=1)
    # Every query sees every valid key: padding is invisible to valid tokens.
    attend = mask[:, None, None, :]  # (B, 1, 1, T')
    x = _Trunk('transformer', self.width, self.num_layers, self.num_heads,
               self.mlp_dim or 4 * self.width, self.dropout, self.attention_dropout,
               self.positions, self.max_len, self.kernel_init, self.dtype, self.param_dtype,
               name='trunk')(x, attend, train=train)  # (B, T', D)
    features = x[:, 0] if self.pooling == 'cls' else masked_pool(x, mask, 'mean')  # (B, D)
    features = dropout(features, self.dropout, train)
    logits = nn.Dense(self.num_classes, kernel_init=get_initializer(self.kernel_init),
                      dtype=self.dtype, param_dtype=self.param_dtype, name='head')(features)
    return logits.astype(jnp.float32)  # (B, num_classes)


class TransformerLanguageModel(nn.Module):
  """A causal Transformer decoder (GPT-style) over integer tokens.

  Position t attends to positions 0..t only, so its logits never depend on
  later tokens: one forward pass scores every next-token prediction of a
  window at once.

  Attributes:
    num_classes: V, the vocabulary size.
    width: D, the model width.
    num_layers: decoder blocks.
    num_heads: attention heads per block.
    mlp_dim: hidden width of each block's MLP (0: 4D).
    dropout: rate after the embeddings and each sublayer, in training only.
    attention_dropout: rate on the attention weights.
    positions: 'learned' or 'sinusoidal'.
    max_len: the longest window (the learned table's size).
    tie_embeddings: the output layer reuses the token embedding (Press &
      Wolf, 2017): V * D fewer parameters, and rare tokens' input and output
      representations learn together.
    kernel_init: initializer name for the dense kernels.
    dtype: computation dtype; logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int
  width: int = 128
  num_layers: int = 4
  num_heads: int = 4
  mlp_dim: int = 0
  dropout: float = 0.0
  attention_dropout: float = 0.0
  positions: str = 'learned'
  max_len: int = 256
  tie_embeddings: bool = True
  kernel_init: str = 'lecun'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool) -> jax.Array:
    """Next-token logits (B, T, V) for integer tokens (B, T)."""
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise JaxdlError(f"model 'transformer_lm' expects integer tokens (B, T), got "
                       f"{tokens.dtype} inputs of shape {tuple(tokens.shape)}")
    steps = tokens.shape[1]
    embed = nn.Embed(self.num_classes, self.width, embedding_init=nn.initializers.normal(0.02),
                     dtype=self.dtype, param_dtype=self.param_dtype, name='embed')
    x = embed(tokens)  # (B, T, D)
    causal = jnp.tril(jnp.ones((steps, steps), bool))[None, None]  # (1, 1, T, T)
    x = _Trunk('transformer_lm', self.width, self.num_layers, self.num_heads,
               self.mlp_dim or 4 * self.width, self.dropout, self.attention_dropout,
               self.positions, self.max_len, self.kernel_init, self.dtype, self.param_dtype,
               name='trunk')(x, causal, train=train)  # (B, T, D)
    if self.tie_embeddings:
      logits = on_rows(embed.attend, x, 1)  # (B, T, V)
    else:
      logits = nn.Dense(self.num_classes, kernel_init=get_initializer(self.kernel_init),
                        dtype=self.dtype, param_dtype=self.param_dtype, name='head')(x)
    return logits.astype(jnp.float32)  # (B, T, V)


def attention_maps(model: nn.Module, variables: Any, x: jax.Array, **kwargs) -> list[jax.Array]:
  """The attention weights of every layer for inputs ``x``, in evaluation mode.

  Args:
    model: a ``TransformerClassifier`` or ``TransformerLanguageModel``.
    variables: its variables.
    x: inputs as the model takes them.
    **kwargs: passed to the model (e.g. ``lengths``).

  Returns:
    One (B, heads, T, T) float32 array per layer, first layer first; row t
    is query t's distribution over keys.
  """
  _, state = model.apply(variables, x, train=False, mutable=['intermediates'], **kwargs)
  trunk = state['intermediates']['trunk']
  blocks = sorted((k for k in trunk if k.startswith('block_')), key=lambda k: int(k[6:]))
  return [trunk[k]['attention']['attention'][0] for k in blocks]
