"""The host loop: any Gymnasium id, stepped on the host, learning with the jitted update.

Every seed has ``env.num_envs`` environments; all ``S * E`` of them are one
Gymnasium ``SyncVectorEnv``. Each iteration calls the jitted, seed-vmapped
``act`` (the same function the jitted path uses), steps the vector env, and
calls the jitted ``observe`` (store, learn: the same update as the jitted
path).

Checkpoints hold the whole learner and replay buffer (Orbax, under
``checkpoints/``); the Gymnasium envs, which live outside that pytree, are
snapshotted beside them: just before checkpoint ``step`` is started,
:meth:`HostRunner.save_envs` writes ``checkpoints_envs/envs-{step}.pkl``
atomically (temp file + rename), and after a restore
:meth:`HostRunner.after_restore` loads the snapshot of the restored step, so a
resumed run continues the same episodes and ends bit-identical to an
uninterrupted one, as the jitted path does. Snapshots whose checkpoint is gone
are pruned at the next save. An env that cannot be snapshotted exactly (see
``jaxdl.envs.gym_host.snapshot``), or a snapshot that is missing, unreadable
or does not match the checkpoint, gives a one-line warning and fresh episodes
(``reset(seed=train.seed + step)``): the run goes on but is no longer
bit-identical. The host loop runs in one process; the snapshot is written by
process 0 only (``jaxdl.train.fit`` calls the hook there).
"""

import functools
import hashlib
import os
import pathlib
import pickle
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import envs as envs_lib
from jaxdl.checkpoint import Checkpointer, array_digest
from jaxdl.envs import gym_host
from jaxdl.loops.dqn import agent as agent_lib
from jaxdl.loops.dqn.jitted import RunState, start_state
from jaxdl.loops.dqn.config import Setup, build, seed_keys
from jaxdl.train.writers import console
from jaxdl.utils import threefry
from jaxdl.utils.io import write_atomic

SNAPSHOT_FORMAT = 1  # bumped when the snapshot record below changes


def snapshot_directory(checkpoint_dir: str | os.PathLike) -> pathlib.Path:
  """Where the env snapshots of the checkpoints in ``checkpoint_dir`` go: a sibling ``<name>_envs``.

  A sibling rather than files inside Orbax's own directory, which Orbax manages.
  """
  checkpoint_dir = pathlib.Path(checkpoint_dir).absolute()
  return checkpoint_dir.with_name(checkpoint_dir.name + "_envs")


def _snapshot_steps(directory: pathlib.Path) -> list[int]:
  stems = (p.name.removeprefix("envs-").removesuffix(".pkl") for p in directory.glob("envs-*.pkl"))
  return sorted(int(s) for s in stems if s.isdigit())


def prune_snapshots(checkpoint_dir: str | os.PathLike) -> None:
  """Deletes the snapshots whose checkpoint no longer exists.

  Only those older than the newest checkpoint on disk: a newer one may belong
  to a save still in flight (Orbax writes asynchronously and renames its step
  directory into place at the end).
  """
  checkpoint_dir = pathlib.Path(checkpoint_dir).absolute()
  directory = snapshot_directory(checkpoint_dir)
  kept = Checkpointer(checkpoint_dir).steps()  # lists the directory; opens nothing
  for step in _snapshot_steps(directory):
    if kept and step < kept[-1] and step not in kept:
      (directory / f"envs-{step}.pkl").unlink(missing_ok=True)


class HostRunner:
  """One config's DQN on a Gymnasium vector env; the same interface as ``jitted.JittedRunner``."""

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
    self._checkpoint_dir: pathlib.Path | None = None  # set by the first save or restore
    self._snapshot_refused = False  # the envs cannot be snapshotted: warned once

  def _make_envs(self, n: int) -> gym.vector.VectorEnv:
    c = self.config.env
    return envs_lib.make_vector_env(c.id, n, frame_stack=c.frame_stack,
                                    max_episode_steps=c.max_episode_steps or None)

  def _split(self, x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(self.num_seeds, self.num_envs, *np.shape(x)[1:])  # (S, E, ...)

  def seed_keys(self) -> jax.Array:
    return seed_keys(self.config.train.seed, self.num_seeds)

  @threefry.straight_line()  # many small draws: see jaxdl.utils.threefry
  def init(self) -> RunState:
    obs, _ = self.envs.reset(seed=self.config.train.seed)
    seeds = jax.jit(jax.vmap(lambda k, o: agent_lib.init_agent(self.setup, k, o)))(
        self.seed_keys(), self._split(obs))
    return start_state(self.config, seeds)

  def save_envs(self, step: int, state: RunState, checkpoint_dir: str | os.PathLike) -> None:
    """Snapshots the envs as they are at ``step`` (``jaxdl.train.fit``'s ``on_checkpoint`` hook).

    Called before checkpoint ``step`` is started, so a checkpoint on disk
    always has its snapshot beside it. The record holds the pickled vector env,
    its SHA-256 and the SHA-256 of the observations in ``state``, which
    :meth:`after_restore` checks against the restored state.
    """
    self._checkpoint_dir = pathlib.Path(checkpoint_dir).absolute()
    directory = snapshot_directory(self._checkpoint_dir)
    path = directory / f"envs-{int(step)}.pkl"
    try:
      data = gym_host.snapshot(self.envs)
    except gym_host.SnapshotError as e:
      path.unlink(missing_ok=True)  # an older run's snapshot under this step must not be loaded
      if not self._snapshot_refused:
        console(f"jaxdl: warning: env.id='{self.config.env.id}' cannot be snapshotted ({e}); "
                f"a resumed run will start fresh episodes and not be bit-identical")
        self._snapshot_refused = True
      return
    record = {"format": SNAPSHOT_FORMAT, "step": int(step), "env_id": self.config.env.id,
              "obs_sha256": array_digest(np.asarray(jax.device_get(state.seeds.obs))),
              "envs_sha256": hashlib.sha256(data).hexdigest(), "envs": data}
    directory.mkdir(parents=True, exist_ok=True)
    # On disk before its checkpoint is started (a power cut, not just a kill).
    write_atomic(path, pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL), fsync=True)
    prune_snapshots(self._checkpoint_dir)

  def _load_envs(self, step: int, state: RunState, checkpoint_dir: pathlib.Path) -> str | None:
    """Puts the snapshot of ``step`` in place of ``self.envs``; None, or why it could not."""
    path = snapshot_directory(checkpoint_dir) / f"envs-{step}.pkl"
    if not path.is_file():
      return f"{path} is missing"
    try:
      record = pickle.loads(path.read_bytes())
      if not isinstance(record, dict) or record.get("format") != SNAPSHOT_FORMAT or record.get("step") != step:
        return f"{path} is not a format-{SNAPSHOT_FORMAT} env snapshot of step {step}"
      if hashlib.sha256(record["envs"]).hexdigest() != record["envs_sha256"]:
        return f"{path} fails its SHA-256 checksum"
      if record["obs_sha256"] != array_digest(np.asarray(jax.device_get(state.seeds.obs))):
        return f"{path} does not match the checkpoint's observations"
      envs = gym_host.from_snapshot(record["envs"])
    except Exception as e:  # a damaged pickle raises many types (UnpicklingError, EOFError, KeyError, ...)
      return f"{path} is unreadable ({type(e).__name__}: {str(e).strip()[:200]})"
    if envs.num_envs != self.num_seeds * self.num_envs:
      envs.close()
      return f"{path} holds {envs.num_envs} envs, not {self.num_seeds * self.num_envs}"
    self.envs.close()
    self.envs = envs
    return None

  def after_restore(self, state: RunState, checkpoint_dir: str | os.PathLike) -> RunState:
    """The envs as they were at the restored step, or fresh episodes (with a warning) if they cannot be.

    Args:
      state: the restored state (on the devices).
      checkpoint_dir: the checkpoints' directory; the snapshots are beside it
        (:func:`snapshot_directory`).
    """
    step = int(jax.device_get(state.step))
    self._checkpoint_dir = pathlib.Path(checkpoint_dir).absolute()
    reason = self._load_envs(step, state, self._checkpoint_dir)
    if reason is None:
      return state  # the episodes go on exactly where they were
    console(f"jaxdl: warning: no usable env snapshot for step {step}: {reason}; starting fresh "
            f"episodes, so this run will not be bit-identical to an uninterrupted one")
    obs, _ = self.envs.reset(seed=self.config.train.seed + step)
    seeds = state.seeds.replace(obs=jnp.asarray(self._split(obs)),
                                episode_return=jnp.zeros_like(state.seeds.episode_return),
                                episode_length=jnp.zeros_like(state.seeds.episode_length))
    return state.replace(seeds=seeds)

  @threefry.straight_line()  # many small draws: see jaxdl.utils.threefry
  def chunk(self, state: RunState, n: int) -> tuple[RunState, dict]:
    """``n`` iterations for every seed; per-seed metrics (S,) of the chunk."""
    step = int(jax.device_get(state.step))
    seeds = state.seeds
    stats_per_iteration = []  # left on the device: summed once per chunk, not fetched every iteration
    for i in range(int(n)):
      learn = step + i >= self.setup.warmup_iterations
      action = np.asarray(self._act(seeds)).reshape(-1)
      obs, reward, terminated, truncated, infos = self.envs.step(action)
      final = envs_lib.final_observations(obs, infos, terminated | truncated)
      seeds, stats = self._observe[learn](
          seeds, self._split(action), self._split(reward.astype(np.float32)), self._split(final),
          self._split(obs), self._split(terminated), self._split(truncated),
          np.int32((step + i) % self.setup.buffer_rows))  # agent_lib.buffer_row, without an eager device op
      stats_per_iteration.append(stats)
    sums = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs).sum(axis=0), *stats_per_iteration)
    learning = min(max(step + int(n) - max(step, self.setup.warmup_iterations), 0), int(n))
    metrics = agent_lib.chunk_metrics(sums, learning * self.config.train.updates_per_iteration)
    return state.replace(step=state.step + n, seeds=seeds), metrics

  def _greedy_returns(self, params: Any, seed_base: int) -> np.ndarray:
    """(S, episodes) returns of one greedy episode in each of ``eval.episodes`` fresh envs per seed."""
    episodes = self.config.eval.episodes
    envs = self._make_envs(episodes)
    returns = np.zeros((self.num_seeds, episodes), np.float64)
    try:
      for s in range(self.num_seeds):
        seed_params = jax.tree_util.tree_map(lambda x: x[s], params)
        obs, _ = envs.reset(seed=seed_base + self.config.train.seed * 1000 + s)
        alive = np.ones(episodes, bool)
        while alive.any():
          obs, reward, terminated, truncated, _ = envs.step(np.asarray(self._greedy(seed_params, obs)))
          returns[s] += np.where(alive, reward, 0.0)
          alive &= ~(terminated | truncated)
    finally:
      envs.close()
    return returns

  @threefry.straight_line()  # many small draws: see jaxdl.utils.threefry
  def evaluate(self, state: RunState, params: Any = None) -> np.ndarray:
    """(S, episodes) greedy returns of ``params`` (default: the current policy).

    Evaluation episodes are seeded apart from training ones (offset 10**6)
    and from validation ones (2 * 10**6).
    """
    return self._greedy_returns(state.seeds.learner.params if params is None else params, 10**6)

  @threefry.straight_line()  # many small draws: see jaxdl.utils.threefry
  def validate(self, state: RunState) -> np.ndarray:
    """(S, episodes) greedy returns of the current policy on validation episodes (see :meth:`evaluate`)."""
    return self._greedy_returns(state.seeds.learner.params, 2 * 10**6)

  def close(self) -> None:
    self.envs.close()
    if self._checkpoint_dir is not None:
      prune_snapshots(self._checkpoint_dir)  # the last save may have retired an older checkpoint
