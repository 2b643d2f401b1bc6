"""The two DQN executors behind one declared interface, and the choice between them.

``JittedRunner`` (``jaxdl.loops.dqn.jitted``) runs a JAX-native environment
and the whole iteration inside one compiled program; ``HostRunner``
(``jaxdl.loops.dqn.host``) steps a Gymnasium vector env from Python. Both
satisfy :class:`DQNRunner`, which is all ``train_and_evaluate`` relies on.
"""

import os
from typing import Any, Protocol

import jax
import ml_collections

from jaxdl import envs as envs_lib
from jaxdl.loops.dqn.config import Setup, validate
from jaxdl.loops.dqn.jitted import RunState
from jaxdl.utils.errors import JaxdlError


class DQNRunner(Protocol):
  """What an executor of the DQN loop provides.

  Attributes:
    setup: the network, optimizer, schedules and sizes the config built.
  """

  setup: Setup

  def init(self) -> RunState:
    """Iteration 0 of every seed."""

  def chunk(self, state: RunState, n: int) -> tuple[RunState, dict]:
    """``n`` iterations of every seed; per-seed (S,) metrics."""

  def evaluate(self, state: RunState, params: Any = None) -> jax.Array:
    """(S, episodes) greedy returns on the evaluation episodes (default: the current params)."""

  def validate(self, state: RunState) -> jax.Array:
    """(S, episodes) greedy returns on validation episodes, apart from the evaluation ones."""

  def save_envs(self, step: int, state: RunState, checkpoint_dir: str | os.PathLike) -> None:
    """Saves what lives outside the state pytree, just before checkpoint ``step``."""

  def after_restore(self, state: RunState, checkpoint_dir: str | os.PathLike) -> RunState:
    """Reattaches what :meth:`save_envs` saved to a restored state."""

  def close(self) -> None:
    """Releases threads and environments."""


def make_runner(config: ml_collections.ConfigDict) -> DQNRunner:
  """The executor the config asks for: ``JittedRunner`` (env.backend=jax) or ``HostRunner`` (gym).

  Raises:
    JaxdlError: an unknown id, an id with no JAX port under ``env.backend=jax``,
      or a non-discrete action space.
  """
  validate(config)
  env_id = config.env.id
  if config.env.backend == "jax":
    if env_id not in envs_lib.JAX_ENVS:
      envs_lib.check_env_id(env_id)  # unknown anywhere: say so first
      raise JaxdlError(f"env.id='{env_id}' has no JAX-native port (those are: {', '.join(envs_lib.JAX_ENVS)}); "
                       f"run it on the host with --set env.backend=gym")
    from jaxdl.loops.dqn.jitted import JittedRunner
    return JittedRunner(config)
  from jaxdl.loops.dqn.host import HostRunner  # Gymnasium's vector envs: imported only when used
  return HostRunner(config)
