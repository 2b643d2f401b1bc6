"""One seed's DQN state and the two halves of an iteration: act, then observe.

Both executors use these: the jitted path calls ``act``, steps a JAX env and
calls ``observe`` inside one ``lax.while_loop``; the host loop calls the jitted
``act``, steps Gymnasium on the host, and calls the jitted ``observe``. The
keys of iteration ``step`` come from ``fold_in(rng, step)``, so a resumed run
draws the same numbers.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxdl.loops.dqn import buffer as buffer_lib
from jaxdl.loops.dqn import learner as dqn
from jaxdl.loops.dqn.config import Setup


@struct.dataclass
class Agent:
  """Everything one seed's run carries from one iteration to the next.

  Attributes:
    learner: online and target params, optimizer state.
    buffer: the replay buffer.
    env_state: the JAX environments' states (E of them); ``{}`` in the host loop.
    obs: (E, *obs_shape) the current observations.
    episode_return, episode_length: (E,) of the episodes under way.
    rng: the seed's root key (never changes).
    step: () int32, iterations done.
  """

  learner: dqn.Learner
  buffer: buffer_lib.ReplayBuffer
  env_state: Any
  obs: jax.Array
  episode_return: jax.Array
  episode_length: jax.Array
  rng: jax.Array
  step: jax.Array


def init_agent(setup: Setup, key: jax.Array, obs: jax.Array, env_state: Any = None) -> Agent:
  """A fresh agent for observations ``obs`` (E, ...); ``key`` is the seed's key."""
  learner = dqn.init_learner(setup.network, setup.tx, jax.random.fold_in(key, 0), obs[0])
  num_envs = obs.shape[0]
  return Agent(
      learner=learner,
      buffer=buffer_lib.init(setup.buffer_rows, num_envs, obs[0], prioritized=setup.prioritization is not None),
      env_state={} if env_state is None else env_state, obs=obs,
      episode_return=jnp.zeros((num_envs,), jnp.float32), episode_length=jnp.zeros((num_envs,), jnp.int32),
      rng=jax.random.fold_in(key, 1), step=jnp.zeros((), jnp.int32))


def buffer_row(setup: Setup, step) -> jax.Array:
  """The buffer row iteration ``step`` writes: rows are filled in order and wrap around."""
  return jnp.asarray(step, jnp.int32) % setup.buffer_rows


def iteration_keys(agent: Agent) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(action key, environment key, learning key) of the agent's current iteration."""
  k_act, k_env, k_learn = jax.random.split(jax.random.fold_in(agent.rng, agent.step), 3)
  return k_act, k_env, k_learn


def act(setup: Setup, agent: Agent) -> jax.Array:
  """(E,) epsilon-greedy actions for ``agent.obs``."""
  k_act, _, _ = iteration_keys(agent)
  epsilon = setup.epsilon(agent.step * setup.num_envs)
  return dqn.epsilon_greedy(k_act, setup.apply(agent.learner.params, agent.obs), epsilon)


def record(setup: Setup, agent: Agent, action, reward, final_obs, obs, terminated, truncated, *,
           row=None) -> tuple[Agent, dict[str, jax.Array]]:
  """Stores a row of transitions, keeps the episode tallies, ends the iteration.

  Args:
    agent: the state before the environments stepped.
    action, reward, terminated, truncated: (E,).
    final_obs: (E, ...) the true next observations (the last one of an ended episode).
    obs: (E, ...) the observations to act on next (a new episode's first where one ended).
    row: the buffer row this iteration writes, unbatched (see ``buffer.add``).

  Returns:
    The next agent (``step`` + 1) and sums for the chunk's metrics:
    ``return_sum``, ``length_sum`` and ``episodes`` over the episodes that ended.
  """
  done = terminated | truncated
  buf = buffer_lib.add(agent.buffer, agent.obs, action, reward, final_obs, terminated, done, row=row)
  ep_return = agent.episode_return + reward
  ep_length = agent.episode_length + 1
  stats = {
      "return_sum": jnp.where(done, ep_return, 0.0).sum(),
      "length_sum": jnp.where(done, ep_length, 0).sum().astype(jnp.float32),
      "episodes": done.sum().astype(jnp.float32),
  }
  agent = agent.replace(
      buffer=buf, obs=obs, episode_return=jnp.where(done, 0.0, ep_return),
      episode_length=jnp.where(done, 0, ep_length), step=agent.step + 1)
  return agent, stats


def learn(setup: Setup, agent: Agent, key: jax.Array) -> tuple[Agent, dict[str, jax.Array]]:
  """``train.updates_per_iteration`` optimizer steps on batches from the agent's buffer.

  Returns:
    The agent (with the new priorities if replay is prioritised) and ``loss``
    and ``q`` summed over the updates.
  """
  t = setup.config.train
  learner, buf = agent.learner, agent.buffer
  sums = {"loss": jnp.zeros((), jnp.float32), "q": jnp.zeros((), jnp.float32)}
  for i in range(t.updates_per_iteration):
    learner, buf, m = dqn.learn(learner, buf, jax.random.fold_in(key, i), batch_size=t.batch_size,
                                n_step=t.n_step, gamma=t.gamma, update_fn=setup.update,
                                prioritization=setup.prioritization)
    sums = {k: sums[k] + m[k] for k in sums}
  return agent.replace(learner=learner, buffer=buf), sums


def no_learning(agent: Agent, key: jax.Array) -> tuple[Agent, dict[str, jax.Array]]:
  """What :func:`learn` returns when it is not yet time to learn."""
  return agent, {"loss": jnp.zeros((), jnp.float32), "q": jnp.zeros((), jnp.float32)}


def zero_stats() -> dict[str, jax.Array]:
  """Zeros shaped like one iteration's stats (:func:`record`'s and :func:`learn`'s, all () float32).

  A chunk's running sums start here; ``lax.while_loop`` rejects a mismatch,
  so this cannot drift from what an iteration returns.
  """
  return {k: jnp.zeros((), jnp.float32) for k in ("return_sum", "length_sum", "episodes", "loss", "q")}


def observe(setup: Setup, agent: Agent, action, reward, final_obs, obs, terminated, truncated, row=None, *,
            learn_now: bool) -> tuple[Agent, dict[str, jax.Array]]:
  """:func:`record`, then :func:`learn` if ``learn_now`` (static): the host loop's second half."""
  _, _, k_learn = iteration_keys(agent)
  agent, stats = record(setup, agent, action, reward, final_obs, obs, terminated, truncated, row=row)
  agent, sums = learn(setup, agent, k_learn) if learn_now else no_learning(agent, k_learn)
  return agent, {**stats, **sums}


def chunk_metrics(sums: dict[str, jax.Array], updates: jax.Array):
  """Means over a chunk from the summed stats of its iterations (NaN: no episode ended).

  ``updates`` is the number of optimizer steps the chunk took (per seed).
  """
  episodes = sums["episodes"]
  out = {
      "episode_return": jnp.where(episodes > 0, sums["return_sum"] / jnp.maximum(episodes, 1), jnp.nan),
      "episode_length": jnp.where(episodes > 0, sums["length_sum"] / jnp.maximum(episodes, 1), jnp.nan),
      "episodes": episodes,
  }
  out["loss"] = jnp.where(updates > 0, sums["loss"] / jnp.maximum(updates, 1), jnp.nan)
  out["q"] = jnp.where(updates > 0, sums["q"] / jnp.maximum(updates, 1), jnp.nan)
  return out
