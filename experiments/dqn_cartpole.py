"""DQN on CartPole-v1, fully jitted: 10 seeds in one compiled run.

    jaxdl run dqn_cartpole

Result (greedy return of each seed's best-validated policy, 10 episodes each;
target: mean >= 495 and every seed >= 475 on every seed set):

- seeds 0-9 (train.seed=0), 200-209 and 300-309: 500.0 on every seed;
- 30 seeds from train.seed=100 and 30 from train.seed=1000 (num_seeds=30):
  500.0 on every seed.

The last policies (metrics.json: last_policy_return_per_seed) were as good on
seeds 0-9, 200-209 and 300-309 (500.0, 500.0, 499.6) but not on 1000-1029,
where three seeds had forgotten by the end (444, 417, 462).

Tried on the 30 seeds from train.seed=100 (train.seed=1000 for the last
five), reporting the last policy, each counted as seeds below 475: the
previous preset (1% final epsilon, no clipping) 2; Polyak tau 0.01 3; Huber
loss 29; 1-step returns 23; a 128-128 MLP 2; clipping 1; clipping and gamma
0.995 1; clipping and a 5% final epsilon 0 (but 3 on train.seed=1000);
with 5-step returns 2; dueling 1; batch 128 0 (1.5x slower); batch 128 with
one update per iteration 6; 10% final learning rate 3.

Time, all 10 seeds, compile, validation and evaluation included (metrics.json
wall_seconds), idle 2-core CPU: 36.2, 36.3, 37.1 and 38.8 s on four runs of
seeds 0-9, 35.9 s (seeds 200-209) and 37.7 s (seeds 300-309); the whole
``jaxdl run`` process, Python's imports included, takes about 3.5 s more.
Target 45 s. It was 42-49 s until the jitted path lowered its random draws
without loops (jaxdl.utils.threefry: the same bits, same results).
"""

from jaxdl.loops.dqn import default_config


def get_config():
  config = default_config()
  config.env.id = "CartPole-v1"
  config.env.backend = "jax"
  config.env.num_envs = 8
  config.train.num_seeds = 10
  config.train.seed_groups = 2  # two threads of 5 seeds: one per core of a 2-core CPU
  config.train.env_steps = 160_000
  config.train.learning_starts = 10_000
  config.train.n_step = 3  # 3-step returns: values reach back 3x faster per target update
  config.train.updates_per_iteration = 2  # 2 updates of 64 per 8 env steps (replay ratio 16)
  config.train.batch_size = 64
  config.train.target_every = 100
  config.train.log_every = 250
  config.buffer.size = 10_000  # a small buffer kept fresher data: 20k and 100k lost seeds
  # Still exploring 5% of the time at the end keeps states near failure in the
  # buffer: with 1%, 2 of 30 seeds (seeds 100-129) ended below 475.
  config.epsilon.end = 0.05
  config.epsilon.fraction = 0.4
  config.optim.learning_rate = 5e-4
  config.optim.schedule = "linear"  # decaying to 0 freezes a good policy instead of drifting off it
  config.optim.clip_norm = 10.0  # the squared TD loss has unbounded gradients; clipping lost fewer seeds
  config.model.hidden = (64, 64)
  # Report each seed's best-validated policy: a seed that once balanced for
  # 500 steps can still forget it late in training (DQN's replay then holds
  # only balanced states), as 3 of seeds 1000-1029 did (444, 417, 462).
  config.eval.select = "best"
  # Every 1000 iterations (8000 env steps): 20 validations cost 0.9 s of the
  # run; validating every 250 cost 4.8 s and chose no better on seeds
  # 100-129 and 1000-1029.
  config.eval.validate_every = 1000
  return config
