"""Weight initializers by name, so configs can choose one with a string."""

from collections.abc import Callable

import jax

from jaxdl.utils.errors import JaxdlError

Initializer = Callable[..., jax.Array]

# Each factory is called per lookup so no initializer object is shared between
# modules (they are stateless today, but nothing should depend on that).
_INITIALIZERS: dict[str, Callable[[], Initializer]] = {
    # Var = 1 / fan_in (truncated normal): keeps activations' scale for linear
    # or tanh-like layers; the Flax default for Dense and Conv.
    'lecun': jax.nn.initializers.lecun_normal,
    # Uniform with Var = 2 / (fan_in + fan_out): Glorot & Bengio (2010).
    'glorot': jax.nn.initializers.xavier_uniform,
    # Var = 2 / fan_in (truncated normal): compensates for ReLU zeroing half
    # of its inputs (He et al., 2015).
    'he': jax.nn.initializers.kaiming_normal,
    # Orthonormal columns over the last (output) axis (Saxe et al., 2014).
    'orthogonal': jax.nn.initializers.orthogonal,
}

INITIALIZERS: tuple[str, ...] = tuple(_INITIALIZERS)


def get_initializer(name: str) -> Initializer:
  """Returns the kernel initializer called ``name``.

  Args:
    name: one of ``INITIALIZERS``: 'lecun' (LeCun normal), 'glorot' (Xavier
      uniform), 'he' (Kaiming normal), 'orthogonal'.

  Returns:
    A ``jax.nn.initializers`` function ``init(key, shape, dtype)``. For
    convolution kernels of shape ``(*kernel_size, C_in, C_out)`` the fan-in is
    ``prod(kernel_size) * C_in``, as in ``flax.linen.Conv``.

  Raises:
    JaxdlError: ``name`` is not a known initializer.
  """
  try:
    return _INITIALIZERS[name]()
  except (KeyError, TypeError):
    raise JaxdlError(
        f"unknown initializer {name!r} (choices: {', '.join(INITIALIZERS)})"
    ) from None
