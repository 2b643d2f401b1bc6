"""The fully-jitted path: a JAX environment and the whole run in one compiled loop.

purejaxrl style: ``make_train(config)`` returns ``train(rng)``, a pure function
of one seed's key that runs the whole training (environment steps, replay,
updates) inside ``lax`` loops; ``jax.jit(jax.vmap(train))(keys)`` runs many
seeds at once. For checkpoints, the same run is cut into chunks:
:class:`JittedRunner` exposes ``init(keys)`` and ``chunk(state, n)`` (``n``
iterations for every seed), and the host saves the whole state (params,
target params, optimizer state, replay buffer, environment state, keys, step)
between chunks; since every key is ``fold_in(rng, step)``, a resumed run is
bit-identical to an uninterrupted one.
"""

import concurrent.futures
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct

from jaxdl import envs as envs_lib
from jaxdl.configs import to_dict
from jaxdl.loops.dqn import agent as agent_lib
from jaxdl.loops.dqn.config import Setup, build, seed_keys
from jaxdl.train import programs
from jaxdl.utils import threefry


@struct.dataclass
class RunState:
  """All seeds together: ``seeds`` is an :class:`Agent` with a leading (S,) axis.

  ``best`` is ``{}`` unless ``eval.select='best'``; then it holds each seed's
  best-validated policy (see :func:`init_best`), checkpointed with the rest.
  An empty dict has no leaves, so a 'last' run's checkpoints are unchanged.
  """

  step: jax.Array  # () int32, iterations done (the same for every seed)
  seeds: agent_lib.Agent
  best: Any = struct.field(default_factory=dict)


@jax.jit  # one program, not an eager op per leaf
def init_best(seeds: agent_lib.Agent) -> dict[str, Any]:
  """No policy validated yet: ``params`` (a copy of the current ones), ``score`` (S,) -inf, ``step`` (S,) 0."""
  num_seeds = seeds.step.shape[0]
  return {"params": jax.tree_util.tree_map(jnp.copy, seeds.learner.params),
          "score": jnp.full((num_seeds,), -jnp.inf, jnp.float32),
          "step": jnp.zeros((num_seeds,), jnp.int32)}


@functools.partial(jax.jit, donate_argnums=(0,))
def keep_best(best: dict[str, Any], params: Any, score: jax.Array, step: jax.Array) -> dict[str, Any]:
  """Each seed's ``best`` after a validation that gave ``params`` (S, ...) the ``score`` (S,) at iteration ``step``.

  A tie goes to the newer policy: it has trained longer on the same score.
  """
  better = score >= best["score"]  # (S,)

  def pick(new, old):
    return jnp.where(better.reshape(better.shape + (1,) * (new.ndim - 1)), new, old)

  return {"params": jax.tree_util.tree_map(pick, params, best["params"]),
          "score": jnp.where(better, score, best["score"]),
          "step": jnp.where(better, jnp.broadcast_to(step, better.shape), best["step"])}


def start_state(config: ml_collections.ConfigDict, seeds: agent_lib.Agent) -> RunState:
  """Iteration 0 of a run, with a best-policy record if ``eval.select='best'``."""
  best = init_best(seeds) if config.eval.select == "best" else {}
  return RunState(step=jax.device_put(np.zeros((), np.int32)), seeds=seeds, best=best)  # a copy, not a program


def commit(state: Any) -> Any:
  """``state`` committed to the default device (a chunk's outputs are; uncommitted inputs would compile it again)."""
  return jax.device_put(state, jax.devices()[0])


class JittedRunner:
  """One config's jitted DQN on a JAX-native environment.

  Attributes:
    env, env_params: the environment.
    setup: network, optimizer, schedules and sizes (``jaxdl.loops.dqn.config.Setup``).
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.env, self.env_params = envs_lib.make(config.env.id)
    self.config = config
    self.setup: Setup = build(config, self.env.num_actions)
    self.num_envs = config.env.num_envs

  # -- one seed

  def init_one(self, key: jax.Array) -> agent_lib.Agent:
    """One seed's initial agent; its environments reset from ``fold_in(key, 2)``."""
    reset_keys = jax.random.split(jax.random.fold_in(key, 2), self.num_envs)
    obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(reset_keys, self.env_params)
    return agent_lib.init_agent(self.setup, key, obs, env_state)

  def iteration(self, agent: agent_lib.Agent, step, learn: bool | None = None):
    """Acts, steps the E environments once, stores, and learns.

    Args:
      agent: one seed's state.
      step: the iteration's number, unbatched (all seeds share it): it picks
        the buffer row (see ``buffer.add``) and, with ``learn=None``, whether
        to learn (``step >= warmup``) through a ``lax.cond`` that stays a
        real branch under ``vmap``.
      learn: force learning on or off (static), or None to decide by ``step``.
    """
    action = agent_lib.act(self.setup, agent)
    _, k_env, k_learn = agent_lib.iteration_keys(agent)
    obs, env_state, reward, terminated, truncated, info = jax.vmap(
        self.env.step, in_axes=(0, 0, 0, None))(jax.random.split(k_env, self.num_envs), agent.env_state,
                                                action, self.env_params)
    agent, stats = agent_lib.record(
        self.setup, agent.replace(env_state=env_state), action, reward, info["final_obs"], obs, terminated,
        truncated, row=agent_lib.buffer_row(self.setup, step))
    learn_fn = functools.partial(agent_lib.learn, self.setup)
    if learn is None:
      agent, sums = jax.lax.cond(step >= self.setup.warmup_iterations, learn_fn, agent_lib.no_learning,
                                 agent, k_learn)
    else:
      agent, sums = (learn_fn if learn else agent_lib.no_learning)(agent, k_learn)
    return agent, {**stats, **sums}

  def chunk_one(self, agent: agent_lib.Agent, n, start, learn: bool | None = None):
    """``n`` iterations from iteration ``start`` (both unbatched; ``n`` may be
    traced, so one compile serves every length)."""
    def body(carry):
      i, agent, sums = carry
      agent, stats = self.iteration(agent, start + i, learn)
      return i + 1, agent, jax.tree_util.tree_map(jnp.add, sums, stats)

    init = (jnp.zeros((), jnp.int32), agent, agent_lib.zero_stats())
    _, agent, sums = jax.lax.while_loop(lambda c: c[0] < n, body, init)
    warm = self.setup.warmup_iterations
    iterations_learning = jnp.clip(start + n - jnp.maximum(start, warm), 0, n)
    return agent, agent_lib.chunk_metrics(sums, iterations_learning * self.config.train.updates_per_iteration)

  def evaluate_one(self, params: Any, key: jax.Array) -> jax.Array:
    """Greedy returns of ``eval.episodes`` episodes, (episodes,), each up to the time limit."""
    episodes = self.config.eval.episodes
    obs, state = jax.vmap(self.env.reset, in_axes=(0, None))(jax.random.split(key, episodes), self.env_params)

    def body(carry, _):
      obs, state, ret, alive = carry
      action = jnp.argmax(self.setup.apply(params, obs), axis=-1)
      obs, state, reward, terminated = jax.vmap(self.env.step_env, in_axes=(None, 0, 0, None))(
          key, state, action, self.env_params)
      ret = ret + jnp.where(alive, reward, 0.0)
      alive = alive & ~terminated & (state.time < self.env_params.max_steps)
      return (obs, state, ret, alive), None

    init = (obs, state, jnp.zeros((episodes,), jnp.float32), jnp.ones((episodes,), bool))
    (_, _, ret, _), _ = jax.lax.scan(body, init, None, length=self.env_params.max_steps)
    return ret

  # -- all seeds

  def seed_keys(self) -> jax.Array:
    return seed_keys(self.config.train.seed, self.config.train.num_seeds)

  @threefry.straight_line()  # many small draws: see jaxdl.utils.threefry
  def init(self) -> RunState:
    # Committed to its device, as the chunk's outputs are: one compile of the chunk, not one per kind of input.
    return commit(start_state(self.config, jax.jit(jax.vmap(self.init_one))(self.seed_keys())))

  @functools.cached_property
  def _chunk(self):
    def chunk(state, n):
      seeds, metrics = jax.vmap(lambda a: self.chunk_one(a, n, state.step))(state.seeds)
      return state.replace(step=state.step + n, seeds=seeds), metrics
    # Built from the config alone: a later run of it reads the traced program back (jaxdl.train.programs).
    return programs.PersistentJit(chunk, key=("dqn", to_dict(self.config)), donate_argnums=(0,))

  @threefry.straight_line()  # many small draws: see jaxdl.utils.threefry
  def chunk(self, state: RunState, n: int) -> tuple[RunState, dict]:
    """Advances every seed by ``n`` iterations; returns per-seed (S,) chunk metrics.

    With ``train.seed_groups = G > 1`` the seeds are split into G groups of
    S / G, each advanced by its own call from its own host thread: XLA's CPU
    backend runs one computation on one core, so on a CPU this keeps G cores
    busy. The grouping is part of the config, so results do not depend on
    the machine.
    """
    groups = self.config.train.seed_groups
    if groups <= 1:
      return self._chunk(state, np.int32(n))
    parts = self._split_groups(state)  # one compiled program, not one eager op per leaf and group
    outs = list(self._pool.map(lambda part: jax.block_until_ready(self._chunk(part, np.int32(n))), parts))
    return self._join_groups(state.best, outs)

  @functools.cached_property
  def _split_groups(self):
    """``state`` -> G ``RunState`` parts of S / G seeds each, ``best`` left out.

    Each part gets its own buffers (and step): a chunk donates its input.
    """
    groups = self.config.train.seed_groups
    size = self.config.train.num_seeds // groups

    def split(state):
      return tuple(RunState(step=jnp.copy(state.step),
                            seeds=jax.tree_util.tree_map(lambda x, g=g: x[g * size:(g + 1) * size], state.seeds))
                   for g in range(groups))
    return jax.jit(split)

  @functools.cached_property
  def _join_groups(self):
    """(best, [(part, metrics)] * G) -> (the whole ``RunState``, (S,) metrics)."""
    def join(best, outs):
      seeds, metrics = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs),
                                              *[(part.seeds, m) for part, m in outs])
      return RunState(step=outs[0][0].step, seeds=seeds, best=best), metrics
    return jax.jit(join)

  @functools.cached_property
  def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(self.config.train.seed_groups)

  def close(self) -> None:
    if "_pool" in self.__dict__:
      self._pool.shutdown()

  def save_envs(self, step: int, state: RunState, checkpoint_dir) -> None:
    """Nothing to do: the environments are part of the checkpointed state."""
    del step, state, checkpoint_dir

  def after_restore(self, state: RunState, checkpoint_dir) -> RunState:
    del checkpoint_dir
    return state

  @functools.cached_property
  def _evaluate_all(self):
    def evaluate_all(params, salt):
      keys = jax.vmap(lambda k: jax.random.fold_in(k, salt))(self.seed_keys())
      return jax.vmap(self.evaluate_one)(params, keys)
    return jax.jit(evaluate_all)

  @threefry.straight_line()  # many small draws: see jaxdl.utils.threefry
  def evaluate(self, state: RunState, params: Any = None) -> jax.Array:
    """(S, episodes) greedy returns of ``params`` (default: the current policy); episodes fixed by ``train.seed``."""
    return self._evaluate_all(state.seeds.learner.params if params is None else params, 3)

  @threefry.straight_line()  # many small draws: see jaxdl.utils.threefry
  def validate(self, state: RunState) -> jax.Array:
    """(S, episodes) greedy returns of the current policy on validation episodes, apart from :meth:`evaluate`'s."""
    return self._evaluate_all(state.seeds.learner.params, 4)


def make_train(config: ml_collections.ConfigDict):
  """``train(rng) -> (agent, metrics, eval_returns)`` for one seed, purejaxrl style.

  The whole run is one traced function: ``lax.scan`` over log intervals of
  ``train.log_every`` iterations (the first ones without updates, up to
  ``train.learning_starts``), collecting each interval's means in ``metrics``
  (each (num_logs,)), then a greedy evaluation (``eval_returns``,
  (eval.episodes,)). Run many seeds with
  ``jax.jit(jax.vmap(make_train(config)))(keys)``; the iteration numbers come
  from the scan's counter, unbatched, so the buffer writes stay in place and
  the warm-up branch stays a real branch under ``vmap``. On the CPU, make
  that first call (where JAX lowers it) inside
  ``jaxdl.utils.threefry.straight_line()``: the same numbers, sooner.
  """
  runner = JittedRunner(config)
  iterations, log_every = runner.setup.iterations, config.train.log_every
  num_logs = -(-iterations // log_every)

  def train(rng):
    def interval(agent, i):
      start = i * log_every
      return runner.chunk_one(agent, jnp.minimum(log_every, iterations - start), start)

    agent, metrics = jax.lax.scan(interval, runner.init_one(rng), jnp.arange(num_logs))
    returns = runner.evaluate_one(agent.learner.params, jax.random.fold_in(rng, 3))
    return agent, metrics, returns

  return train
