"""The encoder and the projection head, as one Flax module.

The encoder is a ``jaxdl.models`` classifier called with
``features_only=True``: it returns the input of its dense head (the
penultimate features) and never creates the head. Its parameters keep the
classifier's names under ``encoder``, so they restore into the same
classifier for fine-tuning. The projection head is a ``jaxdl.models.MLP``.
SimCLR (sec. 4.2) computes the loss on the projection ``z = g(h)`` and
probes ``h``, the layer before it: ``h`` keeps what the loss would make
invariant.
"""

import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxdl import models as models_lib
from jaxdl.utils.errors import JaxdlError


class ContrastiveNet(nn.Module):
  """``(h, z) = net(x)``: the encoder's features (B, F) and their projection (B, D), float32.

  Attributes:
    encoder: a module called as ``encoder(x, train=..., features_only=True)``.
    projector: the projection head, called as ``projector(h, train=...)``.
  """

  encoder: nn.Module
  projector: nn.Module

  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    h = self.encoder(x, train=train, features_only=True).astype(jnp.float32)
    return h, self.projector(h, train=train).astype(jnp.float32)

  def features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """The encoder's features (B, F), float32 (for probes: ``apply(..., method="features")``)."""
    return self.encoder(x, train=train, features_only=True).astype(jnp.float32)


def has_features(model: nn.Module) -> bool:
  """Whether a classifier's ``__call__`` takes ``features_only`` (gives its penultimate features)."""
  return "features_only" in inspect.signature(type(model).__call__).parameters


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> ContrastiveNet:
  """The config's encoder (``model`` section, head dropped) and projection head (``simclr`` section).

  Raises:
    JaxdlError: an unknown model or option, or a model without a feature output.
  """
  name = config.model.name
  encoder = models_lib.get_model(name, num_classes, **models_lib.options_from_config(config.model))
  if not has_features(encoder):
    supported = [m for m in models_lib.MODELS
                 if has_features(models_lib.get_model(m, 2))]
    raise JaxdlError(f"model '{name}' cannot give its penultimate features (features_only); SimCLR's "
                     f"encoder must be one of: {', '.join(supported)}")
  s = config.simclr
  projector = models_lib.MLP(num_classes=s.proj_dim, hidden=tuple(s.proj_hidden), kernel_init="he")
  return ContrastiveNet(encoder=encoder, projector=projector)
