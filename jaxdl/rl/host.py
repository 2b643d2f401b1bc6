"""The host loop: any Gymnasium id, stepped on the host, learning with the jitted update.

Every seed has ``env.num_envs`` environments; all ``S * E`` of them are one
Gymnasium ``SyncVectorEnv``. Each iteration calls the jitted, seed-vmapped
``act`` (the same function the jitted path uses), steps the vector env, and
calls the jitted ``observe`` (store, learn: the same update as the jitted
path). Checkpoints hold the whole learner and replay buffer; Gymnasium's
environment internals cannot be saved, so a resumed host run starts fresh
episodes (``reset(seed=train.seed + step)``) and is not bit-identical to an
uninterrupted one (the jitted path is).
"""

import functools

import gymnasium as gym
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import envs as envs_lib
from jaxdl.rl import agent as agent_lib
from jaxdl.rl.anakin import RunState
from jaxdl.rl.config import Setup, build


class HostRunner:
  """One config's DQN on a Gymnasium vector env; the same interface as ``anakin.Runner``."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.num_seeds, self.num_envs = config.train.num_seeds, config.env.num_envs
    self.envs = self._make_envs(self.num_seeds * self.num_envs)
    self.setup: Setup = build(config, int(self.envs.single_action_space.n))
    self._act = jax.jit(jax.vmap(functools.partial(agent_lib.act, self.setup)))
    self._observe = {
        learn: jax.jit(jax.vmap(functools.partial(agent_lib.observe, self.setup, learn_now=learn),
                                in_axes=(0,) * 7 + (None,)), donate_argnums=(0,))
        for learn in (False, True)}
    self._greedy = jax.jit(lambda params, obs: jnp.argmax(self.setup.apply(params, obs), axis=-1))

  def _make_envs(self, n: int) -> gym.vector.VectorEnv:
    c = self.config.env
    return envs_lib.make_vector_env(c.id, n, frame_stack=c.frame_stack,
                                    max_episode_steps=c.max_episode_steps or None)

  def _split(self, x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(self.num_seeds, self.num_envs, *np.shape(x)[1:])  # (S, E, ...)

  def seed_keys(self) -> jax.Array:
    root = jax.random.PRNGKey(self.config.train.seed)
    return jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(self.num_seeds))

  def init(self) -> RunState:
    obs, _ = self.envs.reset(seed=self.config.train.seed)
    seeds = jax.jit(jax.vmap(lambda k, o: agent_lib.init_agent(self.setup, k, o)))(
        self.seed_keys(), self._split(obs))
    return RunState(step=jnp.zeros((), jnp.int32), seeds=seeds)

  def after_restore(self, state: RunState) -> RunState:
    """Fresh episodes for a resumed run (the environments' internals were not saved)."""
    step = int(jax.device_get(state.step))
    obs, _ = self.envs.reset(seed=self.config.train.seed + step)
    seeds = state.seeds.replace(obs=jnp.asarray(self._split(obs)),
                                episode_return=jnp.zeros_like(state.seeds.episode_return),
                                episode_length=jnp.zeros_like(state.seeds.episode_length))
    return state.replace(seeds=seeds)

  def chunk(self, state: RunState, n: int) -> tuple[RunState, dict]:
    """``n`` iterations for every seed; per-seed metrics (S,) of the chunk."""
    step = int(jax.device_get(state.step))
    seeds = state.seeds
    sums = None
    for i in range(int(n)):
      learn = step + i >= self.setup.warmup_iterations
      action = np.asarray(self._act(seeds)).reshape(-1)
      obs, reward, terminated, truncated, infos = self.envs.step(action)
      final = envs_lib.final_observations(obs, infos, terminated | truncated)
      seeds, stats = self._observe[learn](
          seeds, self._split(action), self._split(reward.astype(np.float32)), self._split(final),
          self._split(obs), self._split(terminated), self._split(truncated),
          agent_lib.buffer_row(self.setup, step + i))
      stats = jax.device_get(stats)
      sums = stats if sums is None else {k: sums[k] + v for k, v in stats.items()}
    learning = min(max(step + int(n) - max(step, self.setup.warmup_iterations), 0), int(n))
    metrics = agent_lib.chunk_metrics(sums, learning * self.config.train.updates_per_iteration)
    return RunState(step=state.step + n, seeds=seeds), metrics

  def evaluate(self, state: RunState) -> np.ndarray:
    """(S, episodes) greedy returns: one episode in each of ``eval.episodes`` fresh envs per seed."""
    episodes = self.config.eval.episodes
    envs = self._make_envs(episodes)
    returns = np.zeros((self.num_seeds, episodes), np.float64)
    try:
      for s in range(self.num_seeds):
        params = jax.tree_util.tree_map(lambda x: x[s], state.seeds.learner.params)
        # Evaluation episodes are seeded apart from training ones (offset 10**6).
        obs, _ = envs.reset(seed=10**6 + self.config.train.seed * 1000 + s)
        alive = np.ones(episodes, bool)
        while alive.any():
          obs, reward, terminated, truncated, _ = envs.step(np.asarray(self._greedy(params, obs)))
          returns[s] += np.where(alive, reward, 0.0)
          alive &= ~(terminated | truncated)
    finally:
      envs.close()
    return returns

  def close(self) -> None:
    self.envs.close()
