"""DQN on Atari Pong (ale-py) with the Nature-DQN CNN, on the host loop: a GPU-scale run.

    jaxdl run dqn_atari

Frames: Gymnasium's AtariPreprocessing (84x84 grey, frame skip 4, up to 30
no-op starts) and a stack of 4. Hyperparameters after CleanRL's dqn_atari
(10M steps, Adam 1e-4, target every 1000 updates, epsilon 1 -> 0.01 over 10%
of the run, one update per 4 env steps (here: 4 envs, one update per
iteration), learning from 80k steps), but a 100k buffer instead of 1M: the
buffer stores observation and next observation as uint8 stacks (56 KB per
transition), so 100k transitions take 5.6 GB of accelerator memory. The test
suite runs a tiny version on CPU (tests/loops/test_dqn.py).

Result: not measured here (no accelerator on this machine; 10M frames of Pong
need one).
"""

from jaxdl.loops.dqn import default_config


def get_config():
  config = default_config()
  config.env.id = "ALE/Pong-v5"
  config.env.backend = "gym"
  config.env.num_envs = 4
  config.env.frame_stack = 4
  config.model.name = "nature_cnn"
  config.train.loss = "huber"  # Mnih et al. 2015
  config.train.num_seeds = 1
  config.train.env_steps = 10_000_000
  config.train.learning_starts = 80_000
  config.train.batch_size = 32
  config.train.updates_per_iteration = 1
  config.train.target_every = 1_000
  config.train.log_every = 250
  config.buffer.size = 100_000
  config.epsilon.end = 0.01
  config.epsilon.fraction = 0.1
  config.optim.learning_rate = 1e-4
  config.checkpoint.every_steps = 25_000  # iterations: every 100k env steps
  config.eval.episodes = 10
  return config
