"""Env steps per second: the fully-jitted DQN path against the host loop, same CartPole task.

    python benchmarks/dqn_env_throughput.py [--seeds 10] [--envs 8 64 512] [--iterations 2000]

Both paths run the ``dqn_cartpole`` preset's iteration for every seed, with
``env.num_envs`` set to each value of ``--envs`` (8 is the preset's): the
jitted path on the JAX port of CartPole-v1 inside one ``while_loop``, the host
loop on Gymnasium's CartPole-v1 (one ``SyncVectorEnv`` of seeds x envs) with
the same jitted act/observe functions. Two regimes:

- *collect*: act with the Q-network, step, store (the environment side,
  before learning starts);
- *train*: the same plus the preset's 2 updates of batch 64 per iteration.
  The update's FLOPs are the same in both paths and do not grow with the
  number of environments, so more environments per seed means fewer updates
  per env step (a lower replay ratio): compare ratios within one row.

Compilation is excluded (each path runs a short chunk first). Every number is
the best of ``--repeats`` timed chunks, so a busy machine shows less.

Measured on the idle 2-core CPU (jax 0.10.2), env steps/s:

| envs per seed | regime | jitted (JAX env, lax loop) | host (Gymnasium) | jitted / host |
|---|---|---|---|---|
| 8 (the preset) | collect | 1,749,378 | 34,969 | 50.0x |
| 8 (the preset) | train | 70,670 | 14,031 | 5.0x |
| 64 | collect | 4,398,991 | 42,160 | 104.3x |
| 64 | train | 496,254 | 29,189 | 17.0x |
| 512 | collect | 6,171,214 | 40,261 | 153.3x |
| 512 | train | 2,649,255 | 46,256 | 57.3x |

Two more runs of the first two rows (``--envs 8``): 66.1x and 72.9x collecting,
5.9x and 6.3x training.

Before both paths lowered their random draws without loops
(``jaxdl.utils.threefry``), the jitted path collected 765,175 env steps/s at
8 envs per seed (27.5x) and 2,665,398 at 64 (63.2x).
"""

import argparse
import pathlib
import time

import jax

from jaxdl import configs
from jaxdl.loops.dqn.jitted import JittedRunner as Runner
from jaxdl.loops.dqn.host import HostRunner

PRESET = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "dqn_cartpole.py"


def throughput(runner, iterations: int, repeats: int) -> float:
  """Best env steps per second over ``repeats`` chunks of ``iterations`` iterations, all seeds."""
  state, _ = runner.chunk(runner.init(), 2)  # compile
  jax.block_until_ready(state)
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, _ = runner.chunk(state, iterations)
    jax.block_until_ready(state)
    best = min(best, time.perf_counter() - t0)
  c = runner.config
  return iterations * c.env.num_envs * c.train.num_seeds / best


def preset_config(seeds: int, learning_starts: int):
  """The ``dqn_cartpole`` preset for timing: ``seeds`` seeds, updates from ``learning_starts`` env steps on."""
  config, _ = configs.load_preset(PRESET)
  config.train.num_seeds = seeds
  config.train.learning_starts = learning_starts
  config.train.env_steps = 10**9  # never reached: no schedule ends inside the benchmark
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--envs", type=int, nargs="+", default=[8, 64, 512], help="environments per seed")
  parser.add_argument("--iterations", type=int, default=1000, help="jitted iterations per timed chunk")
  parser.add_argument("--host-steps", type=int, default=20_000, help="host env steps per timed chunk")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(f"DQN on CartPole-v1, {args.seeds} seeds, {jax.default_backend()} "
        f"({jax.devices()[0].device_kind}); env steps/s, best of {args.repeats}")
  print("| envs per seed | regime | jitted (JAX env, lax loop) | host (Gymnasium) | jitted / host |")
  print("|---|---|---|---|---|")
  for num_envs in args.envs:
    for regime, learning_starts in (("collect", 10**9), ("train", 0)):
      config = preset_config(args.seeds, learning_starts)
      config.env.num_envs = num_envs
      config.env.backend = "jax"
      runner = Runner(config)
      jitted = throughput(runner, args.iterations, args.repeats)
      runner.close()
      config.env.backend = "gym"
      host_runner = HostRunner(config)
      host_iterations = max(args.host_steps // (num_envs * args.seeds), 5)
      host = throughput(host_runner, host_iterations, args.repeats)
      host_runner.close()
      print(f"| {num_envs} | {regime} | {jitted:,.0f} | {host:,.0f} | {jitted / host:.1f}x |", flush=True)


if __name__ == "__main__":
  main()
