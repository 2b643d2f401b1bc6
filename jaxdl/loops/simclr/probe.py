"""Reading a representation out: a linear probe and a k-NN classifier on frozen features.

A linear probe is multinomial logistic regression on features standardised
with the probe's training set's mean and standard deviation, with an L2
penalty on the weights, fitted full-batch by L-BFGS (optax) from zero
weights in a fixed number of iterations: a strictly convex problem solved
the same way every time, so the same features give the same accuracy. The
same probe reads raw pixels, a randomly initialised encoder and a trained
one, which makes their accuracies comparable.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

# Below this gradient norm the probe has converged; L-BFGS then stops moving
# (its curvature pairs would be 0 / 0).
_GRAD_TOL = 1e-6
# The k-NN's vote weights exp(cos / 0.07) (Wu et al. 2018, instance discrimination).
_KNN_TEMPERATURE = 0.07


class Probe(NamedTuple):
  """A fitted linear probe: ``logits = ((x - mean) / scale) @ w + b``."""

  mean: jax.Array  # (F,)
  scale: jax.Array  # (F,)
  w: jax.Array  # (F, K)
  b: jax.Array  # (K,)

  def logits(self, x: jax.Array) -> jax.Array:
    return ((x - self.mean[None]) / self.scale[None]) @ self.w + self.b[None]  # (N, K)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def fit_linear_probe(x: jax.Array, y: jax.Array, *, num_classes: int, l2: float, steps: int,
                     weights: jax.Array | None = None) -> Probe:
  """Fits multinomial logistic regression to features ``x`` (N, F) and labels ``y`` (N,).

  Minimises ``sum_i w_i CE(softmax(x_i W + b), y_i) / sum_i w_i + l2 / 2 ||W||^2``
  over the standardised features by ``steps`` L-BFGS iterations (zoom line
  search), from zero weights.

  Args:
    x, y: the probe's training features and integer labels.
    num_classes: K.
    l2: the weights' L2 penalty.
    steps: L-BFGS iterations.
    weights: (N,) example weights, default all 1. 0 leaves an example out
      (of the loss and the standardisation): padding, so that probes of
      several sizes share one compiled program.
  """
  x = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
  w_ex = jnp.ones(x.shape[:1], jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
  w_ex = w_ex / w_ex.sum()
  mean = w_ex @ x  # (F,)
  std = jnp.sqrt(w_ex @ jnp.square(x - mean[None]))
  scale = jnp.where(std > 1e-6, std, 1.0)  # a constant feature (a blank pixel, a dead unit) stays 0
  xs = (x - mean[None]) / scale[None]
  targets = jax.nn.one_hot(y, num_classes, dtype=jnp.float32)

  def objective(params):
    w, b = params
    ce = optax.softmax_cross_entropy(xs @ w + b[None], targets) @ w_ex
    return ce + 0.5 * l2 * jnp.sum(w * w)

  # A backtracking line search: the same optimum as the default zoom search here, in a
  # program that compiles in about 60% of the time.
  opt = optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(max_backtracking_steps=15, store_grad=True))
  value_and_grad = optax.value_and_grad_from_state(objective)
  params = (jnp.zeros((x.shape[1], num_classes), jnp.float32), jnp.zeros((num_classes,), jnp.float32))

  def body(carry, _):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, new_state = opt.update(grad, state, params, value=value, grad=grad, value_fn=objective)
    new_params = optax.apply_updates(params, updates)
    go = (optax.tree.norm(grad) > _GRAD_TOL) & jnp.all(jnp.isfinite(new_params[0]))
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(go, a, b), new, old)
    return (keep(new_params, params), keep(new_state, state)), None

  (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
  return Probe(mean, scale, *params)


def _pad(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
  x = np.asarray(x, np.float32).reshape(len(x), -1)
  return np.pad(x, ((0, rows - x.shape[0]), (0, cols - x.shape[1])))


def probe_accuracy(train_x, train_y, test_x, test_y, *, num_classes: int, l2: float, steps: int,
                   pad_to: tuple[int, int] | None = None) -> float:
  """Test accuracy of a linear probe fitted on ``(train_x, train_y)``.

  Args:
    train_x, train_y, test_x, test_y: features (N, ...) and labels.
    num_classes, l2, steps: see :func:`fit_linear_probe`.
    pad_to: (rows, features) to pad the training set to, with left-out
      examples (weight 0) and constant features (which get weight 0): the
      same fit, so that probes of several shapes compile once.
  """
  rows, cols = pad_to or (len(train_x), int(np.prod(np.shape(train_x)[1:])))
  weights = np.zeros(rows, np.float32)
  weights[:len(train_x)] = 1.0
  y = np.zeros(rows, np.int32)
  y[:len(train_y)] = train_y
  probe = fit_linear_probe(jnp.asarray(_pad(train_x, rows, cols)), jnp.asarray(y), num_classes=num_classes,
                           l2=l2, steps=steps, weights=jnp.asarray(weights))
  logits = probe.logits(jnp.asarray(_pad(test_x, len(test_x), cols)))
  return float(np.mean(np.asarray(jnp.argmax(logits, axis=1)) == np.asarray(test_y)))


def knn_accuracy(train_f: jax.Array, train_y: jax.Array, test_f: jax.Array, test_y: jax.Array, *,
                 k: int, num_classes: int) -> jax.Array:
  """Accuracy of a weighted k-NN vote by cosine similarity (Wu et al. 2018), jittable (scalar).

  Each test example's k most similar training examples vote for their
  labels with weight ``exp(cos / 0.07)``.
  """
  def unit(f):
    f = f.astype(jnp.float32)
    return f / jnp.maximum(jnp.linalg.norm(f, axis=1, keepdims=True), 1e-12)

  sims = unit(test_f) @ unit(train_f).T  # (M, N)
  top, idx = jax.lax.top_k(sims, min(k, train_f.shape[0]))  # (M, k)
  votes = jax.nn.one_hot(train_y[idx], num_classes) * jnp.exp(top / _KNN_TEMPERATURE)[..., None]  # (M, k, K)
  return (jnp.argmax(votes.sum(1), axis=1) == test_y).mean()
