"""Gradient diagnostics: per-layer gradient norms and activation statistics.

A *layer* is a top-level submodule of a model that holds parameters: the
first component of a parameter's path (``Dense_0``, ``BatchNorm_3``,
``Conv_1``, ``SelfAttention_0``, ...). Everything under it counts towards it:
a ResNet's ``BasicBlock_2`` is one layer with its convolutions and norms.
Layers are listed in network order, the order in which the model calls them
(:func:`layer_order`), not in the sorted order of a parameter dict.

For each layer:

- ``grad_norm``: the L2 norm of the gradient of all its parameters;
- ``act_mean``, ``act_std``: the mean and standard deviation of its output
  over the batch and all units (the output ``flax.linen`` captures with
  ``capture_intermediates``: for ``Dense_i`` this is the pre-activation
  ``W x + b``, which the activation function then acts on);
- ``dead_frac``: the fraction of its output units that are ``<= 0`` for every
  example of the batch. For a layer that feeds a ReLU (a hidden ``Dense`` or
  the ``BatchNorm`` after it) these are exactly the dead ReLUs: units whose
  ReLU output, and gradient, is zero on the whole batch. For other
  activations it is the fraction a ReLU would leave dead, and for the logits
  layer it has no meaning.

Every function here is pure and jittable; :func:`layer_order` reads names at
trace time (no device work).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdl.utils.errors import JaxdlError

ApplyFn = Callable[..., Any]
STATS = ("grad_norm", "act_mean", "act_std", "dead_frac")
PREFIX = "layers"  # metric keys are layers/<stat>/<layer>, e.g. layers/grad_norm/Dense_3


def layer_names(params: Mapping[str, Any]) -> tuple[str, ...]:
  """The layers of ``params``: its top-level keys (sorted; :func:`layer_order` gives network order)."""
  if not isinstance(params, Mapping) or not params:
    raise JaxdlError("diagnostics need a non-empty dict of parameters grouped by module "
                     f"(a Flax params tree), not {type(params).__name__}")
  return tuple(sorted(params))


def layer_grad_norms(grads: Mapping[str, Any]) -> dict[str, jax.Array]:
  """The L2 norm of the gradient of each layer's parameters: ``{layer: ()}``, float32."""
  return {name: optax.tree.norm(grads[name]).astype(jnp.float32) for name in layer_names(grads)}


def capture_filter(names: Sequence[str]) -> Callable[[nn.Module, str], bool]:
  """A ``capture_intermediates`` filter keeping the ``__call__`` output of the top-level modules ``names``."""
  names = frozenset(names)

  def keep(module: nn.Module, method: str) -> bool:
    path = module.path
    return method == "__call__" and len(path) == 1 and path[0] in names

  return keep


def apply_capturing(apply_fn: ApplyFn, variables: Mapping[str, Any], x: jax.Array, *,
                    mutable: Sequence[str] = (), **kwargs) -> tuple[Any, dict[str, Any], dict[str, Any]]:
  """``apply_fn(variables, x, ...)`` that also returns each layer's output.

  Args:
    apply_fn: a Linen ``model.apply``.
    variables: the model's variables (``params`` decides which layers).
    x: the inputs.
    mutable: the other collections the call updates (``["batch_stats"]`` in training).
    **kwargs: passed on (``train=``, ``rngs=``).

  Returns:
    (the output, ``{layer: its outputs}`` (a tuple, one entry per call), the
    updates of ``mutable``).
  """
  names = layer_names(variables["params"])
  out, updates = apply_fn(variables, x, capture_intermediates=capture_filter(names),
                          mutable=[*mutable, "intermediates"], **kwargs)
  updates = dict(updates)
  captured = updates.pop("intermediates", {})
  return out, {k: v["__call__"] for k, v in captured.items() if "__call__" in v}, updates


def output_stats(outputs: Any) -> dict[str, jax.Array]:
  """``act_mean``, ``act_std`` and ``dead_frac`` of one layer's outputs (any pytree of (B, ...) arrays).

  The mean and standard deviation pool every example and unit of every
  floating-point leaf; a unit is a position past the batch axis, dead when
  it is ``<= 0`` for every example.
  """
  leaves = [jnp.asarray(a, jnp.float32) for a in jax.tree_util.tree_leaves(outputs)
            if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]
  if not leaves:
    zero = jnp.zeros((), jnp.float32)
    return {"act_mean": zero, "act_std": zero, "dead_frac": zero}
  flat = [a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1) for a in leaves]  # (B, units)
  count = sum(a.size for a in flat)
  mean = sum(a.sum() for a in flat) / count
  var = sum(jnp.square(a - mean).sum() for a in flat) / count  # two passes: no cancellation
  dead = sum(jnp.all(a <= 0, axis=0).sum() for a in flat).astype(jnp.float32)
  units = sum(a.shape[1] for a in flat)
  return {"act_mean": mean, "act_std": jnp.sqrt(var), "dead_frac": dead / units}


def activation_stats(activations: Mapping[str, Any]) -> dict[str, dict[str, jax.Array]]:
  """:func:`output_stats` of each layer: ``{layer: {"act_mean", "act_std", "dead_frac"}}``."""
  return {name: output_stats(out) for name, out in activations.items()}


def layer_metrics(grad_norms: Mapping[str, jax.Array],
                  act_stats: Mapping[str, Mapping[str, jax.Array]] | None = None) -> dict[str, jax.Array]:
  """Flat scalar metrics ``layers/<stat>/<layer>`` from the two dicts above (a train step reports these)."""
  metrics = {f"{PREFIX}/grad_norm/{name}": norm for name, norm in grad_norms.items()}
  for name, stats in (act_stats or {}).items():
    metrics.update({f"{PREFIX}/{stat}/{name}": value for stat, value in stats.items()})
  return metrics


def layer_order(apply_fn: ApplyFn, variables: Mapping[str, Any], x: jax.Array, **kwargs) -> tuple[str, ...]:
  """The layers in the order the model calls them (network order), read by tracing one call.

  Nothing runs on the device (``jax.eval_shape``). Layers with parameters
  that the call never reaches come last, sorted.

  Args:
    apply_fn: a Linen ``model.apply``.
    variables: the model's variables.
    x: example inputs (only shape and dtype matter).
    **kwargs: passed on to ``apply_fn`` (``train=False`` is the default).
  """
  order: list[str] = []
  kwargs.setdefault("train", False)

  def trace(variables, x):
    mutable = [c for c in variables if c != "params"] if kwargs["train"] else []
    out, captured, _ = apply_capturing(apply_fn, variables, x, mutable=mutable, **kwargs)
    order.extend(captured)  # dicts keep insertion order: the order of the calls
    return out

  jax.eval_shape(trace, variables, x)
  return tuple(order) + tuple(n for n in layer_names(variables["params"]) if n not in order)


def layer_report(apply_fn: ApplyFn, variables: Mapping[str, Any], x: jax.Array, y: jax.Array, *,
                 train: bool = True, rngs: Mapping[str, jax.Array] | None = None,
                 ) -> tuple[jax.Array, dict[str, dict[str, jax.Array]]]:
  """Every layer's statistics for the mean softmax cross-entropy of a classifier on ``(x, y)``.

  The gradient is taken at ``variables`` with ``jax.grad``; with
  ``train=True`` BatchNorm uses the batch's statistics (as in a training
  step), and dropout needs ``rngs={"dropout": key}``.

  Args:
    apply_fn: a Linen ``model.apply`` returning logits (B, K).
    variables: the model's variables.
    x: inputs (B, ...).
    y: integer labels (B,).
    train: call the model in training mode.
    rngs: the model's random streams.

  Returns:
    (the loss, ``{stat: {layer: ()}}`` for each stat of ``STATS``).
  """
  others = {k: v for k, v in variables.items() if k != "params"}
  mutable = list(others) if train else []

  def loss_fn(params):
    logits, captured, _ = apply_capturing(apply_fn, {"params": params, **others}, x, mutable=mutable,
                                          train=train, rngs=rngs or {})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean()
    return loss, captured

  (loss, captured), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
  acts = activation_stats(captured)
  report = {"grad_norm": layer_grad_norms(grads)}
  for stat in STATS[1:]:
    report[stat] = {name: s[stat] for name, s in acts.items()}
  return loss, report


def weight_layers(params: Mapping[str, Any], order: Sequence[str]) -> tuple[str, ...]:
  """The layers of ``order`` that hold a weight matrix or kernel (a parameter with >= 2 axes).

  These count a network's depth: a BatchNorm or LayerNorm (only vectors)
  belongs to the weight layer before it.
  """
  return tuple(n for n in order if any(jnp.ndim(p) >= 2 for p in jax.tree_util.tree_leaves(params[n])))


def first_over_last(values: Mapping[str, Any], order: Sequence[str]) -> float:
  """``values[order[0]] / values[order[-1]]``: e.g. the first layer's gradient norm over the last's."""
  if len(order) < 2:
    raise JaxdlError(f"a first-over-last ratio needs at least two layers, not {list(order)}")
  return float(values[order[0]]) / float(values[order[-1]])
