"""DQN on MountainCar-v0, fully jitted (JAX port of Gymnasium's MountainCar).

    jaxdl run dqn_mountaincar

Result (greedy return of each seed's best-validated policy, 10 episodes
each; target: mean >= -190), measured with 6 seeds per run:

- seeds 0-5: -143.4, -147.1, -172.6, -155.9, -128.0, -195.9 (mean -157.2;
  the preset's 3 seeds are the first three: mean -154.4);
- seeds 100-105 (train.seed=100): -100.2, -148.9, -105.4, -135.8, -115.8,
  -189.3 (mean -132.6).

Every seed reached the flag. The last policies did worse: 6 of the 12 ended
at -200 after having reached it. 6 seeds took 57-60 s wall on a lightly
loaded 2-core CPU; seeds 0-2 took 48.4 s idle (the same returns, after the
loop-free random draws of jaxdl.utils.threefry). The previous preset (epsilon 1 -> 0.05 over 30% of the
run, learning from 10k steps) got -180.5, -200.0, -200.0 on seeds 0-2.
"""

from jaxdl.loops.dqn import default_config


def get_config():
  config = default_config()
  config.env.id = "MountainCar-v0"
  config.env.num_envs = 8
  config.train.num_seeds = 3
  config.train.env_steps = 400_000
  config.train.learning_starts = 2_000
  config.train.n_step = 3  # carries the rare goal reward back faster
  config.train.target_every = 50
  config.buffer.size = 100_000
  # Exploration comes from the Q-values, not from epsilon: they start near 0,
  # above the -1 per step that every visited state learns, so the greedy
  # policy heads for states it has not tried. Random dithering only undoes
  # the swings that build momentum. Seeds whose every validated policy
  # scored -200 (never at the flag): 2 of 3 with epsilon decaying over 30% of
  # the run to 0.05, 2 of 6 over 5% to 0.01, none of 12 over 2% to 0.
  config.epsilon.end = 0.0
  config.epsilon.fraction = 0.02
  config.optim.learning_rate = 5e-4
  config.optim.schedule = "linear"
  config.model.hidden = (64, 64)
  # Each seed's best-validated policy: a seed that found the flag keeps the
  # policy that reaches it even if later updates lose it.
  config.eval.select = "best"
  return config
