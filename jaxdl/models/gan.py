"""Generators and discriminators: MLPs for points, DCGAN-style CNNs for images.

Every generator is called as ``G.apply(variables, z, train=...)`` on latents
(B, latent_dim) and returns samples; every discriminator as
``D.apply(variables, x, train=...)`` and returns one float32 logit per
example (B,). With ``spectral_norm=True`` the discriminator's weight matrices
are divided by their largest singular value (Miyato et al., 2018), estimated
by one power iteration per training call whose vector ``u`` lives in the
'batch_stats' collection (``flax.linen.SpectralNorm``); pass
``mutable=['batch_stats']`` when training.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from jaxdl.models.conv import Conv, _im2col_conv, resolve_conv_impl
from jaxdl.models.layers import batch_norm, get_activation
from jaxdl.utils.errors import JaxdlError

Dtype = Any

# DCGAN's slope for the discriminator's leaky ReLU (Radford et al., 2016, sec. 3).
LEAKY_SLOPE = 0.2


def _maybe_sn(layer: nn.Module, enabled: bool):
  """``layer`` wrapped in spectral normalisation when ``enabled``."""
  return nn.SpectralNorm(layer) if enabled else layer


def _call(layer, x, spectral: bool, train: bool):
  return layer(x, update_stats=train) if spectral else layer(x)


class ConvTranspose(nn.Module):
  """2-D transposed convolution with 'SAME' padding, channels last.

  The parameters (``kernel`` (kh, kw, C_in, F), ``bias`` (F,)) and the result
  match ``flax.linen.ConvTranspose(padding='SAME')``: a convolution of the input
  dilated by the stride (``lax.conv_transpose``'s definition). Under
  ``impl='im2col'`` the dilated input is built with ``lax.pad``'s interior
  padding and convolved as shifted slices plus one matmul, which on XLA's CPU
  backend avoids the slow native convolution gradient inside jitted loops
  (see ``conv.resolve_conv_impl``). ``benchmarks/gan_conv_transpose.py``, a
  DCGAN step with R1 on 8x8 digits at batch 64 (2-core AMD EPYC, idle,
  2026-12-07): inside the jitted chunk 31.6 ms/step for 'xla' vs 11.9 for
  'im2col' (2.6x); from a Python loop 22.6 vs 13.2 (1.7x). An earlier run on a
  loaded machine had XLA ahead from Python (60.2 vs 72.1), never in the chunk
  that trains, so 'auto' is im2col on the CPU.

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    strides: the upsampling factor per spatial axis.
    use_bias: add a learned bias (off before a BatchNorm).
    impl: 'auto', 'xla' or 'im2col'; 'winograd', a model-wide choice, runs im2col here (Winograd on
      the dilated input is not measured).
  """

  features: int
  kernel_size: tuple[int, int] = (4, 4)
  strides: tuple[int, int] = (2, 2)
  use_bias: bool = True
  impl: str = 'auto'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, H, W, C_in) -> (B, H * s_h, W * s_w, features)."""
    kernel_size, strides = tuple(self.kernel_size), tuple(self.strides)
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (*kernel_size, x.shape[-1], self.features), self.param_dtype)
    bias = (self.param('bias', nn.initializers.zeros_init(), (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    # The (low, high) padding lax.conv_transpose uses for 'SAME' (stride s,
    # kernel k): the output is exactly s times the input.
    pads = []
    for k, s in zip(kernel_size, strides):
      total = k + s - 2
      low = k - 1 if s > k - 1 else -(-total // 2)
      pads.append((low, total - low))
    if resolve_conv_impl(self.impl) == 'xla':
      y = lax.conv_transpose(x, kernel, strides, pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    else:
      # Interior padding s - 1 puts the zeros between input pixels.
      dilated = lax.pad(x, jnp.zeros((), x.dtype),
                        [(0, 0, 0), *((lo, hi, s - 1) for (lo, hi), s in zip(pads, strides)),
                         (0, 0, 0)])
      y = _im2col_conv(dilated, kernel, (1, 1), (1, 1))
    if bias is not None:
      y = y + bias.reshape(1, 1, 1, -1)
    return y


class MLPGenerator(nn.Module):
  """Latents to points through dense layers: [dense[-BN]-act] x n, dense.

  Attributes:
    out_dim: the size of a sample (2 for the 2-D mixtures).
    hidden: widths of the hidden layers.
    activation: name, see ``layers.ACTIVATIONS``.
    use_batchnorm: BatchNorm before each hidden activation.
  """

  out_dim: int = 2
  hidden: tuple[int, ...] = (256, 256, 256)
  activation: str = 'relu'
  use_batchnorm: bool = False

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
    act = get_activation(self.activation)
    x = z
    for width in self.hidden:
      x = nn.Dense(width, use_bias=not self.use_batchnorm)(x)
      if self.use_batchnorm:
        x = batch_norm(train, dtype=jnp.float32, param_dtype=jnp.float32)(x)
      x = act(x)  # (B, width)
    return nn.Dense(self.out_dim)(x)  # (B, out_dim)


class MLPDiscriminator(nn.Module):
  """Points to one logit: [dense-act] x n, dense.

  Attributes:
    hidden: widths of the hidden layers.
    activation: name, see ``layers.ACTIVATIONS``.
    spectral_norm: spectrally normalise every dense layer.
  """

  hidden: tuple[int, ...] = (256, 256, 256)
  activation: str = 'leaky_relu'
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    act = get_activation(self.activation)
    x = x.reshape(x.shape[0], -1)  # (B, D)
    for width in self.hidden:
      x = act(_call(_maybe_sn(nn.Dense(width), self.spectral_norm), x, self.spectral_norm, train))
    out = _call(_maybe_sn(nn.Dense(1), self.spectral_norm), x, self.spectral_norm, train)
    return out[:, 0].astype(jnp.float32)  # (B,)


class DCGenerator(nn.Module):
  """DCGAN-style generator: dense to a small map, then strided transposed convs.

  z -> dense -> (H / 2^n, W / 2^n, features[0]) -> BN-ReLU -> for each further
  width f: ConvTranspose(f, 4, stride 2)-BN-ReLU -> ConvTranspose(C, 4,
  stride 2) -> sigmoid. Radford et al. (2016): batch norm in G, ReLU, no
  pooling; the sigmoid because the images here live in [0, 1].

  Attributes:
    out_shape: (H, W, C) of a sample; H and W divisible by 2^len(features).
    features: channel widths, from the smallest map up.
    impl: the transposed convolutions' implementation.
  """

  out_shape: tuple[int, int, int] = (8, 8, 1)
  features: tuple[int, ...] = (128, 64)
  impl: str = 'auto'

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
    h, w, c = self.out_shape
    factor = 2 ** len(self.features)
    if h % factor or w % factor:
      raise JaxdlError(f'DCGenerator: image size {(h, w)} is not divisible by 2^{len(self.features)} '
                       f'(one upsampling per entry of model.g_features={tuple(self.features)})')
    x = nn.Dense(h // factor * w // factor * self.features[0], use_bias=False)(z)
    x = nn.relu(batch_norm(train, dtype=jnp.float32, param_dtype=jnp.float32)(x))
    x = x.reshape(z.shape[0], h // factor, w // factor, self.features[0])  # (B, h0, w0, F0)
    for width in self.features[1:]:
      x = ConvTranspose(width, use_bias=False, impl=self.impl)(x)
      x = nn.relu(batch_norm(train, dtype=jnp.float32, param_dtype=jnp.float32)(x))
    x = ConvTranspose(c, impl=self.impl)(x)  # (B, H, W, C)
    return nn.sigmoid(x)


class DCDiscriminator(nn.Module):
  """DCGAN-style discriminator: strided convs with leaky ReLU, then one logit.

  For each width f: Conv(f, 3, stride 2)-LeakyReLU(0.2); then a dense layer to
  one logit. No batch norm, so penalties on input gradients (R1, WGAN-GP) stay
  per-example (Gulrajani et al., 2017, sec. 4).

  Attributes:
    features: channel widths of the strided convolutions.
    spectral_norm: spectrally normalise every layer.
    impl: the convolutions' implementation.
  """

  features: tuple[int, ...] = (64, 128)
  spectral_norm: bool = False
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    sn = self.spectral_norm
    for width in self.features:
      conv = Conv(width, (3, 3), strides=2, impl=self.impl)
      x = nn.leaky_relu(_call(_maybe_sn(conv, sn), x, sn, train), LEAKY_SLOPE)  # (B, H/2, W/2, f)
    x = x.reshape(x.shape[0], -1)
    return _call(_maybe_sn(nn.Dense(1), sn), x, sn, train)[:, 0].astype(jnp.float32)  # (B,)


GAN_MODELS = ('mlp', 'dcgan')


def make_gan(name: str, sample_shape: Sequence[int], *, g_hidden: Sequence[int] = (256, 256, 256),
             d_hidden: Sequence[int] = (256, 256, 256), g_features: Sequence[int] = (128, 64),
             d_features: Sequence[int] = (64, 128), activation: str = 'relu',
             d_activation: str = 'leaky_relu', g_batchnorm: bool = False,
             spectral_norm: bool = False, conv_impl: str = 'auto') -> tuple[nn.Module, nn.Module]:
  """A (generator, discriminator) pair by family name.

  Args:
    name: 'mlp' (vectors) or 'dcgan' (images (H, W, C)).
    sample_shape: the shape of one real example.
    g_hidden, d_hidden: MLP widths.
    g_features, d_features: DCGAN channel widths.
    activation: the MLP generator's activation.
    d_activation: the MLP discriminator's activation.
    g_batchnorm: batch norm in the MLP generator (the DCGAN one always has it).
    spectral_norm: spectral normalisation in the discriminator.
    conv_impl: the DCGAN convolutions' implementation.

  Returns:
    (generator, discriminator).
  """
  sample_shape = tuple(sample_shape)
  if name == 'mlp':
    size = 1
    for n in sample_shape:
      size *= n
    return (MLPGenerator(size, tuple(g_hidden), activation, g_batchnorm),
            MLPDiscriminator(tuple(d_hidden), d_activation, spectral_norm))
  if name == 'dcgan':
    if len(sample_shape) != 3:
      raise JaxdlError(f"model.name='dcgan' needs images (H, W, C), got samples of shape {sample_shape}")
    return (DCGenerator(sample_shape, tuple(g_features), conv_impl),
            DCDiscriminator(tuple(d_features), spectral_norm, conv_impl))
  raise JaxdlError(f"unknown GAN model '{name}' (choices: {', '.join(GAN_MODELS)})")
