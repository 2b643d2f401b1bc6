"""Sanity checks for saliency maps (Adebayo et al. 2018): cascading weight randomisation.

The layers of a trained model are re-initialised one at a time from the
output down, and after each stage the maps of the partly random model are
compared with the trained model's by their Spearman rank correlation. A map
that explains the model changes as its weights go; one that stays put
(Guided Backprop's edge detector, in the paper) explains the input instead.

A *layer* is a module that holds variables of its own (a ``Dense``, a
``Conv``, a ``BatchNorm``, a Transformer's ``qkv`` projection), in the order
the forward pass calls them. Randomising one re-draws all its variables
(parameters and BatchNorm statistics) from the model's initialisation, so
after the last stage the model is a freshly initialised one.
"""

from collections.abc import Callable, Sequence
import functools
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.interpret.common import as_module
from jaxdl.interpret.gradcam import path_name
from jaxdl.utils import threefry


def rank(values: np.ndarray) -> np.ndarray:
  """Ranks (0-based, float) of a 1-D array, ties given their mean rank (as scipy's rankdata - 1)."""
  values = np.asarray(values)
  order = np.argsort(values, kind="stable")
  ranks = np.empty(len(values), np.float64)
  ranks[order] = np.arange(len(values))
  _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
  for start, count in zip(first, counts):
    if count > 1:
      ranks[order[start:start + count]] = start + (count - 1) / 2
  return ranks


def spearman(a: Any, b: Any) -> float:
  """Spearman rank correlation of two arrays (flattened); NaN if either is constant."""
  ra, rb = rank(np.ravel(a)), rank(np.ravel(b))
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
  return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def mean_spearman(maps_a: Any, maps_b: Any) -> float:
  """The mean over examples of the per-example rank correlation of (B, ...) maps.

  Examples where a map is constant (a Grad-CAM map that a random model
  zeroes everywhere, say) have no rank correlation and are left out; NaN if
  all are.
  """
  values = [spearman(a, b) for a, b in zip(np.asarray(maps_a), np.asarray(maps_b))]
  finite = [v for v in values if np.isfinite(v)]
  return float(np.mean(finite)) if finite else float("nan")


def layer_order(model: Any, variables: Any, x: jax.Array) -> list[str]:
  """Paths of the modules that own variables directly, in the order the forward pass enters them."""
  module = as_module(model, "the sanity check")
  entered = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      entered.append(path_name(context.module.path))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, z: module.apply(v, z, train=False), variables, x)
  owners = {path_name(k[1:-1]) for k in flax.traverse_util.flatten_dict(_plain(variables))}
  order = list(dict.fromkeys(p for p in entered if p in owners))
  return order + sorted(owners - set(order))


def _plain(variables: Any) -> dict:
  return flax.core.unfreeze(variables) if isinstance(variables, flax.core.FrozenDict) else dict(variables)


def randomize(variables: Any, fresh: Any, layers: Sequence[str]) -> dict:
  """``variables`` with every variable of the modules ``layers`` taken from ``fresh``."""
  chosen = set(layers)
  flat, new = flax.traverse_util.flatten_dict(_plain(variables)), flax.traverse_util.flatten_dict(_plain(fresh))
  out = {k: new[k] if path_name(k[1:-1]) in chosen else v for k, v in flat.items()}
  return flax.traverse_util.unflatten_dict(out)


# Jitted, and cached per model: an eager init compiles every initializer op on its own. Under
# threefry.straight_line (the same bits) it compiled about 3x faster than with the CPU's loop form.
@functools.partial(jax.jit, static_argnums=0)
def _init(module: nn.Module, key: jax.Array, x: jax.Array) -> Any:
  return module.init(key, x, train=False)


class SanityResult(NamedTuple):
  """The cascade's rank correlations.

  Attributes:
    layers: the layers randomised, top (output) first; stage i has
      ``layers[:i + 1]`` random.
    rank_correlation: the mean rank correlation after each stage.
    full: after the last stage, when every layer is random.
  """

  layers: list[str]
  rank_correlation: list[float]
  full: float


def cascading_randomization(maps_fn: Callable[[Any], Any], model: Any, variables: Any, x: jax.Array, *,
                            key: jax.Array | None = None) -> SanityResult:
  """Adebayo et al.'s cascading randomisation of ``model``, from the output layer down.

  Args:
    maps_fn: ``variables -> (B, ...)`` maps of the fixed inputs and target
      classes (jit it once: every stage has the same shapes).
    model: the Flax module (for its initialisation and layer order).
    variables: the trained variables.
    x: the inputs the maps are of (for the initialisation's shapes).
    key: the re-initialisation's PRNG key (default ``PRNGKey(0)``).

  Returns:
    A :class:`SanityResult`.
  """
  module = as_module(model, "the sanity check")
  key = jax.random.PRNGKey(0) if key is None else key
  with threefry.straight_line():
    fresh = _init(module, key, jnp.asarray(x[:1]))
  fresh = {c: fresh[c] for c in _plain(variables)}  # the collections the trained model has
  layers = layer_order(module, variables, x[:1])[::-1]
  trained = np.asarray(maps_fn(randomize(variables, fresh, ())))  # the same tree type as the stages'
  correlations = []
  for i in range(len(layers)):
    maps = np.asarray(maps_fn(randomize(variables, fresh, layers[:i + 1])))
    correlations.append(mean_spearman(trained, maps))
  return SanityResult(layers, correlations, correlations[-1] if correlations else float("nan"))
