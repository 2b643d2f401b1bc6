"""Gymnasium environments on the host, batched, for the DQN host loop.

Any registered Gymnasium id runs as a synchronous vector environment; Atari
ids (``ALE/...``, from ``ale-py``, which ships its ROMs) get the Nature-DQN
preprocessing: Gymnasium's ``AtariPreprocessing`` (no-op starts, frame skip 4
with max-pooling, 84x84 grey) and a stack of the last 4 frames.

Episodes that end are reset in the same ``step`` (``AutoresetMode.SAME_STEP``)
and their last observation comes back as ``final_obs``, so a replay buffer
stores true next observations; this is what the JAX environments do too.

A vector env can be snapshotted (:func:`snapshot`, :func:`from_snapshot`) so
that a resumed run continues the very same episodes: the copy steps exactly as
the original would have. Plain Python envs (CartPole, Acrobot, ...) pickle as
they are. Atari envs pickle by being rebuilt from their constructor arguments
(Gymnasium's ``EzPickle``), which would lose the game, so they are rebuilt and
then given back their emulator state, including the ALE's random generator:
v5 ids repeat the previous action with probability 0.25 ("sticky actions",
Machado et al. 2018) drawn from that generator. Other ``EzPickle`` envs
(Box2D, MuJoCo) are refused with :class:`SnapshotError`.
"""

import difflib
import functools
import io
import pickle
import sys
from typing import Any

import gymnasium as gym
import numpy as np

from jaxdl.utils.errors import JaxdlError


def is_atari(env_id: str) -> bool:
  return env_id.startswith("ALE/")


def _register_atari() -> None:
  try:
    import ale_py
  except ImportError:
    raise JaxdlError("Atari ids need ale-py: pip install ale-py") from None
  gym.register_envs(ale_py)


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
  """The id's spec, or a one-line error naming it (with a close match)."""
  if is_atari(env_id):
    _register_atari()
  try:
    return gym.spec(env_id)
  except gym.error.Error:
    close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise JaxdlError(f"env.id='{env_id}' is not a registered Gymnasium environment{hint}") from None


def _make_one(env_id: str, frame_stack: int, max_episode_steps: int | None):
  limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
  if is_atari(env_id):
    # AtariPreprocessing does the frame skipping, so the ALE env must not.
    env = gym.make(env_id, frameskip=1, **limit)
    env = gym.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, terminal_on_life_loss=False,
                                          grayscale_obs=True, noop_max=30)
    return gym.wrappers.FrameStackObservation(env, frame_stack)
  return gym.make(env_id, **limit)


def make_vector_env(env_id: str, num_envs: int, *, frame_stack: int = 4,
                    max_episode_steps: int | None = None) -> gym.vector.VectorEnv:
  """A synchronous vector env of ``num_envs`` copies of ``env_id``.

  ``max_episode_steps`` replaces the id's time limit (None keeps it).

  Raises:
    JaxdlError: the id is unknown, or its action space is not discrete.
  """
  check_env_id(env_id)
  envs = gym.vector.SyncVectorEnv([functools.partial(_make_one, env_id, frame_stack, max_episode_steps)] * num_envs,
                                  autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
  space = envs.single_action_space
  if not isinstance(space, gym.spaces.Discrete):
    envs.close()
    raise JaxdlError(f"env.id='{env_id}' has a {type(space).__name__} action space; DQN needs a "
                     f"Discrete one")
  return envs


def final_observations(obs: np.ndarray, infos: dict[str, Any], done: np.ndarray) -> np.ndarray:
  """The true next observations: ``final_obs`` where an episode just ended."""
  if not done.any():
    return obs
  final = np.array(obs, copy=True)
  for i in np.flatnonzero(done):
    final[i] = infos["final_obs"][i]
  return final


# ------------------------------------------------------------- snapshots --


class SnapshotError(Exception):
  """A vector env that cannot be snapshotted exactly; the message says why."""


def _rebuild_atari(args: tuple, kwargs: dict, attrs: dict, ale_state: Any) -> Any:
  """An ``AtariEnv`` as it was: rebuilt (ROM loaded), attributes and emulator state put back."""
  from ale_py.env import AtariEnv
  env = AtariEnv(*args, **kwargs)
  env.__dict__.update(attrs)  # its numpy generator, spaces, spec: everything but the emulator
  env.ale.restoreState(ale_state)
  return env


class _Pickler(pickle.Pickler):
  """Pickles envs by value, with the two special cases of the module docstring."""

  def reducer_override(self, obj):
    ale_env = sys.modules.get("ale_py.env")  # imported only if an Atari id was made
    if ale_env is not None and type(obj) is ale_env.AtariEnv:
      attrs = {k: v for k, v in obj.__dict__.items() if k not in ("ale", "_ezpickle_args", "_ezpickle_kwargs")}
      # include_rng: the sticky-action draws must continue, not restart.
      return _rebuild_atari, (obj._ezpickle_args, obj._ezpickle_kwargs, attrs,
                              obj.ale.cloneState(include_rng=True))
    if isinstance(obj, gym.utils.EzPickle):
      raise SnapshotError(f"{type(obj).__name__} pickles by rebuilding itself from its constructor "
                          f"arguments, which loses its state")
    return NotImplemented


def snapshot(envs: gym.vector.VectorEnv) -> bytes:
  """The vector env with every episode in progress, as bytes for :func:`from_snapshot`.

  Raises:
    SnapshotError: some env cannot be copied exactly.
  """
  out = io.BytesIO()
  try:
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(envs)
  except SnapshotError:
    raise
  except Exception as e:  # pickle raises TypeError, AttributeError, PicklingError, ... for a foreign object
    raise SnapshotError(f"{type(e).__name__}: {e}") from e
  return out.getvalue()


def from_snapshot(data: bytes) -> gym.vector.VectorEnv:
  """The vector env :func:`snapshot` saved; it steps exactly as the original would have.

  Unpickles ``data``: only load snapshots this run wrote.
  """
  return pickle.loads(data)
