"""Gymnasium environments on the host, batched, for the DQN host loop.

Any registered Gymnasium id runs as a synchronous vector environment; Atari
ids (``ALE/...``, from ``ale-py``, which ships its ROMs) get the Nature-DQN
preprocessing: Gymnasium's ``AtariPreprocessing`` (no-op starts, frame skip 4
with max-pooling, 84x84 grey) and a stack of the last 4 frames.

Episodes that end are reset in the same ``step`` (``AutoresetMode.SAME_STEP``)
and their last observation comes back as ``final_obs``, so a replay buffer
stores true next observations; this is what the JAX environments do too.
"""

import difflib
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
  envs = gym.vector.SyncVectorEnv([lambda: _make_one(env_id, frame_stack, max_episode_steps) for _ in range(num_envs)],
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
