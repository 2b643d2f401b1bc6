"""DQN on Gymnasium's own CartPole-v1, stepped on the host (3 seeds, one vector env).

    jaxdl run dqn_cartpole_gym
    jaxdl run dqn_cartpole_gym --set env.id=LunarLander-v3    # any discrete-action Gymnasium id

Result (lightly loaded 2-core CPU): greedy return 500.0, 500.0, 500.0 for
seeds 0, 1, 2 (10 episodes each; mean 500.0, target >= 475; the last policies
scored the same), 480k env steps in 141 s wall; 73.8 s idle with the same
returns after the loop-free random draws of jaxdl.utils.threefry.

Killed at any point (even SIGKILL) and re-run with the same command, it resumes
from its newest checkpoint and ends bit-identical to an uninterrupted run: the
Gymnasium envs are snapshotted beside every checkpoint (``checkpoints_envs/``).
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location("_dqn_cartpole", pathlib.Path(__file__).with_name("dqn_cartpole.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
  config = _base.get_config()  # the jitted preset's hyperparameters, on the host
  config.env.backend = "gym"
  config.train.num_seeds = 3
  config.train.seed_groups = 1  # the jitted path's threads; the host loop steps all seeds together
  return config
