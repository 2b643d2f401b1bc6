"""Mixtures of 2-D Gaussians: the mode-collapse benchmarks of GAN papers.

``ring8`` (8 modes on the unit circle, sigma 0.01) and ``grid25`` (25 modes on
{-4, -2, 0, 2, 4}^2, sigma 0.05), as in VEEGAN (Srivastava et al., 2017) and
PacGAN (Lin et al., 2018), who score a generator by how many modes it covers
and how many of its samples land near one. Samplers are pure JAX: they run
inside a jitted training step, so real batches never leave the device.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.utils.errors import JaxdlError


@dataclasses.dataclass(frozen=True)
class Mixture2D:
  """An equal-weight mixture of isotropic 2-D Gaussians.

  Attributes:
    name: 'ring8' or 'grid25'.
    centers: (K, 2) float32 mode centres.
    sigma: the standard deviation of every mode.
  """

  name: str
  centers: np.ndarray
  sigma: float

  @property
  def num_modes(self) -> int:
    return len(self.centers)

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """``n`` points (n, 2) float32: a uniform mode each, plus Gaussian noise."""
    mode_key, noise_key = jax.random.split(key)
    modes = jax.random.randint(mode_key, (n,), 0, self.num_modes)
    noise = jax.random.normal(noise_key, (n, 2), jnp.float32)
    return jnp.asarray(self.centers)[modes] + self.sigma * noise


def _ring8() -> Mixture2D:
  # endpoint=False: linspace(0, 2 pi, 8) would put modes 0 and 7 on one point.
  angles = np.linspace(0.0, 2 * np.pi, 8, endpoint=False)
  centers = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)  # (8, 2)
  return Mixture2D("ring8", centers, 0.01)


def _grid25() -> Mixture2D:
  axis = np.arange(-4.0, 5.0, 2.0)  # -4, -2, 0, 2, 4
  centers = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)  # (25, 2)
  return Mixture2D("grid25", centers.astype(np.float32), 0.05)


TOY2D = {"ring8": _ring8, "grid25": _grid25}


def load_toy2d(name: str) -> Mixture2D:
  """The mixture called ``name`` (a key of ``TOY2D``)."""
  if name not in TOY2D:
    raise JaxdlError(f"unknown 2-D dataset '{name}' (choices: {', '.join(TOY2D)})")
  return TOY2D[name]()
