"""Attention rollout (Abnar & Zuidema 2020) for Transformer classifiers.

Each layer's attention (heads fused by their mean, or max) is mixed with the
identity for the residual connection, ``A' = (A + I) / 2``, rows
renormalised, and the layers multiplied, first layer rightmost:
``R = A'_L ... A'_1``. Row t of R is how much of token t's final state comes
from each input token. The classifier reads the mean of the final states
('mean' pooling: the mean of R's rows over the tokens) or the class token's
('cls' pooling: R's row 0, without the class token's own column).

Tokens are then spread back onto the input: a token of ``patch_size`` steps
gives its relevance to each of them, and for images read row by row
(``TransformerClassifier`` on (H, W, C)) a row's relevance fills the row.
"""

from typing import Any

import jax
import jax.numpy as jnp

from jaxdl.interpret.common import as_module
from jaxdl.utils.errors import JaxdlError

HEAD_FUSIONS = ("mean", "max")


def attention_weights(model: Any, variables: Any, x: jax.Array) -> list[jax.Array]:
  """Every attention layer's weights (B, heads, T, T), in call order.

  Any module that ``sow``s its weights as 'attention' into 'intermediates'
  counts (jaxdl's ``SelfAttention`` does; see ``models.attention_maps``).

  Raises:
    JaxdlError: the model records no attention.
  """
  module = as_module(model, "attention_rollout")

  def collect(v, z):
    _, state = module.apply(v, z, train=False, mutable=["intermediates"])
    found = []

    def walk(tree):
      for key, value in tree.items():
        if key == "attention" and isinstance(value, tuple):
          found.extend(value)
        elif hasattr(value, "items"):
          walk(value)

    walk(state.get("intermediates", {}))
    return [jnp.asarray(a, jnp.float32) for a in found]

  if not jax.eval_shape(collect, variables, x):  # abstractly first: a model without attention fails at once
    raise JaxdlError(f"attention_rollout needs a model with attention (a transformer), but "
                     f"{type(module).__name__} has no attention layer")
  return collect(variables, x)


def rollout(weights: list[jax.Array], *, head_fusion: str = "mean") -> jax.Array:
  """The rolled-out attention (B, T, T) of per-layer weights (B, heads, T, T), first layer first."""
  if head_fusion not in HEAD_FUSIONS:
    raise JaxdlError(f"unknown head_fusion {head_fusion!r} (choices: {', '.join(HEAD_FUSIONS)})")
  steps = weights[0].shape[-1]
  eye = jnp.eye(steps, dtype=jnp.float32)[None]  # (1, T, T)
  result = None
  for a in weights:
    fused = jnp.mean(a, axis=1) if head_fusion == "mean" else jnp.max(a, axis=1)  # (B, T, T)
    mixed = 0.5 * fused + 0.5 * eye
    mixed = mixed / jnp.sum(mixed, axis=-1, keepdims=True)
    result = mixed if result is None else jnp.einsum("bij,bjk->bik", mixed, result)
  return result


def attention_rollout(model: Any, variables: Any, x: jax.Array, target_class: Any | None = None, *,
                      head_fusion: str = "mean") -> jax.Array:
  """Rollout relevance of every input position, (B, *spatial).

  Args:
    model: a ``TransformerClassifier`` (the module, or its bound ``apply``).
    variables, x: see :mod:`jaxdl.interpret.common`.
    target_class: accepted for a common signature and ignored: rollout
      follows attention, which does not depend on the class.
    head_fusion: 'mean' (the paper's) or 'max' over heads.

  Returns:
    (B, L) for signals (B, L, C), (B, H, W) for images (each row's token
    spread along the row); each example's map sums to 1 over its tokens.
  """
  del target_class
  module = as_module(model, "attention_rollout")
  r = rollout(attention_weights(module, variables, x), head_fusion=head_fusion)  # (B, T', T')
  if getattr(module, "pooling", "mean") == "cls":
    relevance = r[:, 0, 1:]  # (B, T'): the class token's sources, itself left out
    relevance = relevance / jnp.sum(relevance, axis=-1, keepdims=True)
  else:
    relevance = jnp.mean(r, axis=1)  # (B, T')
  steps = x.shape[1]
  patch = steps // relevance.shape[-1]
  if patch * relevance.shape[-1] != steps:
    raise JaxdlError(f"attention over {relevance.shape[-1]} tokens does not tile the input's "
                     f"{steps} steps; attention_rollout reads sequence classifiers")
  per_step = jnp.repeat(relevance, patch, axis=1) / patch  # (B, L)
  if x.ndim == 4:  # images read row by row: a row's relevance fills it
    per_step = jnp.broadcast_to(per_step[:, :, None], x.shape[:3]) / x.shape[2]
  return per_step
