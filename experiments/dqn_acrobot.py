"""DQN on Acrobot-v1, fully jitted (JAX port of Gymnasium's Acrobot).

    jaxdl run dqn_acrobot

Result (2-core CPU shared with other jobs): greedy return -84.8, -77.0, -88.3
for seeds 0, 1, 2 (10 episodes each; mean -83.4, target >= -90), 87 s wall at
load ~5; 30.9 s idle with the same returns after the loop-free random draws
of jaxdl.utils.threefry.
"""

from jaxdl.loops.dqn import default_config


def get_config():
  config = default_config()
  config.env.id = "Acrobot-v1"
  config.env.num_envs = 8
  config.train.num_seeds = 3
  config.train.env_steps = 200_000
  config.train.learning_starts = 5_000
  config.train.n_step = 3
  config.train.target_every = 50
  config.buffer.size = 50_000
  config.epsilon.end = 0.01
  config.epsilon.fraction = 0.2
  config.optim.learning_rate = 5e-4
  config.optim.schedule = "linear"
  config.model.hidden = (64, 64)
  return config
