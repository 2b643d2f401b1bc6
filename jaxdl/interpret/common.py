"""What every attribution method shares: the model as a function, the explained class, its score.

A method takes ``(model, variables, x, target_class)``:

- ``model``: a Flax module (called as ``model.apply(variables, x, train=False)``:
  evaluation mode, no dropout, BatchNorm's running statistics), its bound
  ``model.apply``, or any ``apply_fn(variables, x) -> logits (B, K)``;
- ``variables``: the model's variables (``{"params": ..., "batch_stats": ...}``);
- ``x``: a batch of inputs (B, ...), float;
- ``target_class``: (B,) integer classes to explain, or None for the
  model's own prediction (the argmax of its logits).

The score explained is the target's logit (before the softmax), as in the
papers: the softmax would mix in every other class's logit.
"""

from collections.abc import Callable
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.utils.errors import JaxdlError

ApplyFn = Callable[[Any, jax.Array], jax.Array]


def as_apply(model: Any) -> ApplyFn:
  """``apply_fn(variables, x) -> logits`` for a module, its ``apply``, or such a function already."""
  if isinstance(model, nn.Module):
    return functools.partial(_apply_eval, model)
  owner = getattr(model, "__self__", None)
  if isinstance(owner, nn.Module) and getattr(model, "__name__", "") == "apply":
    return functools.partial(_apply_eval, owner)
  if callable(model):
    return model
  raise JaxdlError(f"model must be a Flax module or an apply_fn(variables, x), not {type(model).__name__}")


def as_module(model: Any, what: str) -> nn.Module:
  """The Flax module behind ``model`` (a module or its bound ``apply``), for methods that need one."""
  if isinstance(model, nn.Module):
    return model
  owner = getattr(model, "__self__", None)
  if isinstance(owner, nn.Module):
    return owner
  raise JaxdlError(f"{what} needs the Flax module (model=...), not a plain function "
                   f"{getattr(model, '__name__', type(model).__name__)!r}")


def _apply_eval(module: nn.Module, variables: Any, x: jax.Array) -> jax.Array:
  return module.apply(variables, x, train=False)


def logits_of(apply_fn: ApplyFn, variables: Any, x: jax.Array) -> jax.Array:
  """Float32 logits (B, K), checked to be a classifier's."""
  logits = apply_fn(variables, x)
  if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
    raise JaxdlError(f"the model's output has shape {tuple(logits.shape)} for {x.shape[0]} inputs; "
                     f"attribution explains classifiers, whose logits are (B, num_classes)")
  return logits.astype(jnp.float32)


def resolve_targets(apply_fn: ApplyFn, variables: Any, x: jax.Array,
                    target_class: Any | None) -> jax.Array:
  """(B,) int32 classes: ``target_class`` broadcast to the batch, or the predictions for None."""
  if target_class is None:
    return jnp.argmax(logits_of(apply_fn, variables, x), axis=-1).astype(jnp.int32)
  target = jnp.asarray(target_class)
  if not jnp.issubdtype(target.dtype, jnp.integer) or target.ndim > 1:
    raise JaxdlError(f"target_class must be an int or (B,) ints, got {target.dtype} of shape "
                     f"{tuple(target.shape)}")
  return jnp.broadcast_to(target, (x.shape[0],)).astype(jnp.int32)


def pick(logits: jax.Array, target: jax.Array) -> jax.Array:
  """Each row's target logit: (B, K), (B,) -> (B,)."""
  return jnp.take_along_axis(logits, target[:, None], axis=-1)[:, 0]


def score_fn(apply_fn: ApplyFn, variables: Any, target: jax.Array) -> Callable[[jax.Array], jax.Array]:
  """``x -> (B,)`` target logits: the function every gradient method differentiates."""
  return lambda x: pick(logits_of(apply_fn, variables, x), target)


def input_gradient(apply_fn: ApplyFn, variables: Any, x: jax.Array, target: jax.Array) -> jax.Array:
  """d logit[b, target[b]] / d x[b] for every example, in one backward pass.

  In evaluation mode the examples of a batch do not interact, so the gradient
  of the sum of the target logits with respect to the batch is the batch of
  per-example gradients (what ``vmap(grad(...))`` would give, with one
  batched matmul per layer instead of B small ones).
  """
  score = score_fn(apply_fn, variables, target)
  return jax.grad(lambda z: jnp.sum(score(z)))(x)
