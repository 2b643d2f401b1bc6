"""DQN's pure pieces: Q-targets, losses, target updates, exploration, the update.

Both executors share these: the fully-jitted path (``jaxdl.loops.dqn.jitted``) and the
host loop (``jaxdl.loops.dqn.host``) call the same :func:`learn` on the same
:class:`Learner` pytree, so a batch gives the same update either way.

References: Mnih et al. 2015 (DQN, Huber loss, target network); van Hasselt et
al. 2016 (Double DQN, https://arxiv.org/abs/1509.06461); Sutton & Barto 2018,
section 7.1 (n-step returns); Schaul et al. 2016 (prioritised replay,
https://arxiv.org/abs/1511.05952).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxdl.loops.dqn import buffer as buffer_lib


@struct.dataclass
class Learner:
  """What an update changes: online and target parameters, optimizer state, count."""

  params: Any
  target_params: Any
  opt_state: Any
  updates: jax.Array  # () int32, optimizer steps taken


# ------------------------------------------------------------------ targets --


def q_targets(reward: jax.Array, discount: jax.Array, q_next_target: jax.Array,
              q_next_online: jax.Array | None = None) -> jax.Array:
  """Bootstrapped targets ``r + discount * Q_target(s', a*)``.

  Args:
    reward: (B,) (n-step) returns.
    discount: (B,) ``gamma^m``, 0 where the episode terminated.
    q_next_target: (B, A) the target network's values at the next observation.
    q_next_online: (B, A) the online network's values there. Given: Double DQN,
      ``a* = argmax_a Q_online(s', a)``; None: DQN, ``a* = argmax_a Q_target``.

  Returns:
    (B,) targets, with no gradient flowing through them.
  """
  chooser = q_next_target if q_next_online is None else q_next_online
  best = jnp.argmax(chooser, axis=-1)  # (B,)
  value = jnp.take_along_axis(q_next_target, best[:, None], axis=-1)[:, 0]  # (B,)
  return jax.lax.stop_gradient(reward + discount * value)


def huber(x: jax.Array, delta: float = 1.0) -> jax.Array:
  """Quadratic within ``|x| <= delta``, linear outside (the clipped-error loss of Mnih et al.)."""
  ax = jnp.abs(x)
  quad = jnp.minimum(ax, delta)
  return 0.5 * quad**2 + delta * (ax - quad)


def target_update(online: Any, target: Any, updates: jax.Array, *, every: int, tau: float) -> Any:
  """The target network after optimizer step ``updates`` (counted from 1).

  ``tau`` is the Polyak rate: every ``every`` updates the target becomes
  ``tau * online + (1 - tau) * target``; ``tau = 1`` is the hard copy of
  Mnih et al., ``every = 1`` with a small ``tau`` is soft averaging
  (Lillicrap et al. 2016).
  """
  due = updates % every == 0
  return jax.tree_util.tree_map(
      lambda o, t: jnp.where(due, tau * o + (1.0 - tau) * t, t) if tau < 1.0 else jnp.where(due, o, t),
      online, target)


def epsilon_schedule(start: float, end: float, decay_steps: int) -> optax.Schedule:
  """Linear decay from ``start`` to ``end`` over ``decay_steps`` env steps, then flat."""
  return optax.linear_schedule(start, end, max(decay_steps, 1))


def epsilon_greedy(key: jax.Array, q: jax.Array, epsilon: jax.Array) -> jax.Array:
  """(E,) actions: argmax of ``q`` (E, A), or uniform with probability ``epsilon``."""
  explore_key, action_key = jax.random.split(key)
  num, actions = q.shape
  random_actions = jax.random.randint(action_key, (num,), 0, actions)
  explore = jax.random.uniform(explore_key, (num,)) < epsilon
  return jnp.where(explore, random_actions, jnp.argmax(q, axis=-1)).astype(jnp.int32)


# ------------------------------------------------------------------- update --


def update(learner: Learner, batch: dict[str, jax.Array], *, apply_fn: Callable, tx: optax.GradientTransformation,
           double: bool = True, loss: str = "huber", huber_delta: float = 1.0, target_every: int = 500,
           tau: float = 1.0) -> tuple[Learner, dict[str, jax.Array], jax.Array]:
  """One optimizer step on a batch of (n-step) transitions, then the target rule.

  Args:
    learner: the parameters and optimizer state.
    batch: ``obs`` (B, ...), ``action`` (B,), ``reward`` (B,), ``next_obs``
      (B, ...), ``discount`` (B,), as ``buffer.sample`` returns them, and
      optionally ``weight`` (B,), importance-sampling weights that multiply
      each example's loss (``buffer.sample_prioritized``).
    apply_fn: ``apply_fn({"params": p}, obs) -> (B, A)``.
    tx: the optimizer.
    double: Double DQN targets.
    loss: 'huber' or 'mse' on the TD error.
    huber_delta: where the Huber loss turns linear.
    target_every, tau: see :func:`target_update`.

  Returns:
    The next learner, scalar metrics (loss, q: mean chosen Q, grad_norm),
    and the TD errors ``Q(s, a) - target`` (B,) before the step, from which
    prioritised replay sets the new priorities.
  """
  q_next_target = apply_fn({"params": learner.target_params}, batch["next_obs"])  # (B, A)
  q_next_online = apply_fn({"params": learner.params}, batch["next_obs"]) if double else None
  targets = q_targets(batch["reward"], batch["discount"], q_next_target, q_next_online)  # (B,)

  def loss_fn(params):
    q = apply_fn({"params": params}, batch["obs"])  # (B, A)
    chosen = jnp.take_along_axis(q, batch["action"][:, None], axis=-1)[:, 0]  # (B,)
    td = chosen - targets
    per_example = huber(td, huber_delta) if loss == "huber" else 0.5 * td**2
    if "weight" in batch:
      per_example = batch["weight"] * per_example
    return per_example.mean(), (chosen.mean(), td)

  (value, (q_mean, td)), grads = jax.value_and_grad(loss_fn, has_aux=True)(learner.params)
  updates, opt_state = tx.update(grads, learner.opt_state, learner.params)
  params = optax.apply_updates(learner.params, updates)
  count = learner.updates + 1
  target = target_update(params, learner.target_params, count, every=target_every, tau=tau)
  new = Learner(params=params, target_params=target, opt_state=opt_state, updates=count)
  return new, {"loss": value, "q": q_mean, "grad_norm": optax.tree.norm(grads)}, jax.lax.stop_gradient(td)


@dataclass(frozen=True)
class Prioritization:
  """Prioritised replay's settings (Schaul et al. 2016, proportional variant).

  Attributes:
    alpha: how much priorities count: ``P(i) ~ (|delta_i| + eps)^alpha``; 0 is uniform.
    eps: keeps every transition's probability above 0 once its TD error is 0.
    beta: optimizer step -> importance-sampling exponent (annealed to 1).
  """

  alpha: float
  eps: float
  beta: optax.Schedule


def learn(learner: Learner, buf: buffer_lib.ReplayBuffer, key: jax.Array, *, batch_size: int, n_step: int,
          gamma: float, update_fn: Callable, prioritization: Prioritization | None = None,
          ) -> tuple[Learner, buffer_lib.ReplayBuffer, dict[str, jax.Array]]:
  """Samples a batch from the buffer and applies ``update_fn`` (a bound :func:`update`).

  With ``prioritization`` the batch is drawn by priority, its loss weighted by
  importance sampling, and the sampled windows' priorities are set to
  ``(|delta| + eps)^alpha`` with the TD errors of this update; without it the
  draw is uniform and the buffer comes back unchanged.
  """
  if prioritization is None:
    batch = buffer_lib.sample(buf, key, batch_size, n_step=n_step, gamma=gamma)
    learner, metrics, _ = update_fn(learner, batch)
    return learner, buf, metrics
  p = prioritization
  batch, where = buffer_lib.sample_prioritized(buf, key, batch_size, beta=p.beta(learner.updates), n_step=n_step,
                                               gamma=gamma)
  learner, metrics, td = update_fn(learner, batch)
  buf = buffer_lib.set_priorities(buf, where, (jnp.abs(td) + p.eps) ** p.alpha)
  return learner, buf, metrics


def init_learner(network: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
                 obs: jax.Array) -> Learner:
  """Initialises the network on one observation; the target starts as a copy."""
  params = network.init(key, obs[None])["params"]
  return Learner(params=params, target_params=params, opt_state=tx.init(params),
                 updates=jnp.zeros((), jnp.int32))
