"""Grad-CAM (Selvaraju et al. 2017) for convolutional models, at any layer, without touching the model.

The layer's output is reached with Flax's method interception
(``nn.intercept_methods``): while the model runs, the interceptor adds a
zero perturbation ``delta`` to the output of the chosen module's call and
keeps that output. The gradient of the target logit with respect to
``delta`` (at zero) is the gradient with respect to the feature maps, so
one forward and one backward pass give both ``A`` and ``dy/dA``, for any
model and any module path, whichever convolution implementation
(``Conv(impl='im2col' | 'winograd' | 'xla')``) the model uses.

    cam = relu(sum_k alpha_k A_k),   alpha_k = mean over positions of dy/dA_k

upsampled (linearly) to the input's spatial size.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.interpret.common import as_apply, logits_of, pick, resolve_targets
from jaxdl.models.conv import Conv
from jaxdl.utils.errors import JaxdlError

_CONV_TYPES = (Conv, nn.Conv, nn.ConvTranspose, nn.ConvLocal)


def path_name(path: Sequence[str]) -> str:
  """'BasicBlock_2/Conv_1' for the module path ('BasicBlock_2', 'Conv_1')."""
  return "/".join(path)


def module_calls(model: Any, variables: Any, x: jax.Array) -> list[tuple[str, str, bool, tuple[int, ...]]]:
  """Every module call of one forward pass, in call order: (path, class name, is a conv, output shape).

  Traced abstractly (``jax.eval_shape``): no device work. The root module's
  own call is left out.
  """
  apply_fn = as_apply(model)
  calls = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and context.module.path:
      calls.append((path_name(context.module.path), type(context.module).__name__,
                    _conv_flag(context.module), tuple(getattr(out, "shape", ()))))
    return out

  with nn.intercept_methods(record):
    jax.eval_shape(apply_fn, variables, x)
  return calls


def _conv_flag(module: nn.Module) -> bool:
  return isinstance(module, _CONV_TYPES)


def conv_layers(model: Any, variables: Any, x: jax.Array) -> list[str]:
  """Paths of the convolutions that output a spatial map, in call order (first seen)."""
  seen = []
  for path, _, is_conv, shape in module_calls(model, variables, x):
    if is_conv and len(shape) >= 3 and path not in seen:
      seen.append(path)
  return seen


def resolve_layer(model: Any, variables: Any, x: jax.Array, layer: str | None) -> tuple[str, tuple[int, ...]]:
  """The Grad-CAM layer's path and output shape: ``layer``, or the last convolution.

  Raises:
    JaxdlError: the model has no convolution, ``layer`` names no module, or
      its output is not a spatial map (B, *spatial, C).
  """
  calls = module_calls(model, variables, x)
  convs = [p for p, _, is_conv, shape in calls if is_conv and len(shape) >= 3]
  if layer is None:
    if not convs:
      name = type(getattr(model, "__self__", model)).__name__
      raise JaxdlError(f"gradcam needs a convolutional model, but {name} has no convolution layer "
                       f"(try gradient or integrated_gradients)")
    layer = convs[-1]
  shapes = {p: s for p, _, _, s in reversed(calls)}  # the first call of each path wins
  if layer not in shapes:
    raise JaxdlError(f"gradcam layer {layer!r} is not a module of the model (its convolutions: "
                     f"{', '.join(dict.fromkeys(convs)) or 'none'})")
  if len(shapes[layer]) < 3:
    raise JaxdlError(f"gradcam layer {layer!r} outputs shape {shapes[layer]}, not a spatial map "
                     f"(B, *spatial, C); choose a convolution: {', '.join(dict.fromkeys(convs)) or 'none'}")
  return layer, shapes[layer]


def gradcam(model: Any, variables: Any, x: jax.Array, target_class: Any | None = None, *,
            layer: str | None = None, upsample: bool = True) -> jax.Array:
  """Grad-CAM maps of the target class at ``layer``.

  Args:
    model, variables, x, target_class: see :mod:`jaxdl.interpret.common`.
    layer: a module path as :func:`conv_layers` lists them ('Conv_1',
      'BasicBlock_2/Conv_1'; any module with a spatial output works); default
      the last convolution. A module called more than once is taken at its
      first call.
    upsample: resize the map (linearly) to the input's spatial size.

  Returns:
    (B, *spatial) non-negative maps: the input's spatial shape with
    ``upsample``, the layer's otherwise.
  """
  apply_fn = as_apply(model)
  layer, shape = resolve_layer(model, variables, x, layer)
  target = resolve_targets(apply_fn, variables, x, target_class)
  acts, grads = layer_gradient(apply_fn, variables, x, target, layer, shape)
  spatial = tuple(range(1, acts.ndim - 1))
  alpha = jnp.mean(grads, axis=spatial)  # (B, K)
  cam = jax.nn.relu(jnp.einsum("b...k,bk->b...", acts, alpha))  # (B, *S)
  if upsample and cam.shape[1:] != x.shape[1:-1] and x.ndim >= 3:
    cam = jax.image.resize(cam, (cam.shape[0], *x.shape[1:-1]), method="linear")
  return cam


def layer_gradient(apply_fn, variables: Any, x: jax.Array, target: jax.Array, layer: str,
                   shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """The output ``A`` of module ``layer`` and d logit_target / dA, both (B, *S, K)."""

  def score(delta):
    kept = []

    def perturb(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if (not kept and context.method_name == "__call__"
          and path_name(context.module.path) == layer):
        out = out + delta.astype(out.dtype)
        kept.append(out)
      return out

    with nn.intercept_methods(perturb):
      logits = logits_of(apply_fn, variables, x)
    return jnp.sum(pick(logits, target)), kept[0]

  grads, acts = jax.grad(score, has_aux=True)(jnp.zeros(shape, jnp.float32))
  return acts.astype(jnp.float32), grads
