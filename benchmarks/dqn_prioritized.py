"""What prioritised replay costs: the dqn_cartpole preset's iteration, uniform against prioritised.

    python benchmarks/dqn_prioritized.py [--seeds 10] [--sizes 10000 100000] [--iterations 1000]

Two tables:

- *iteration*: the preset's jitted iteration (act, step 8 CartPole envs,
  store, 2 updates of batch 64) for every seed, in the preset's 2 seed groups
  (threads), with ``buffer.prioritized`` off and on, for each replay size in
  ``--sizes`` (transitions per seed; the preset's is 10,000). Env steps per
  second, all seeds; compilation excluded; best of ``--repeats`` chunks
  (``dqn_env_throughput.throughput``).
- *draw*: one batch of 64 drawn from a full buffer, vmapped over one group's
  seeds (5), microseconds: the uniform draw, the prioritised draw
  (``buffer.sample_prioritized``: two levels of prefix sums), and the same
  proportional draw done with one ``jnp.cumsum`` over all C x E priorities,
  the simplest alternative.

Results: the README's "Prioritised replay" section.
"""

import argparse
import time

import jax
import jax.numpy as jnp

from jaxdl.loops.dqn import buffer
from jaxdl.loops.dqn.jitted import JittedRunner as Runner

from dqn_env_throughput import preset_config, throughput  # benchmarks/ is on the path when this script runs


def best_seconds(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # compile
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def iteration_throughput(seeds: int, size: int, prioritized: bool, iterations: int, repeats: int) -> float:
  """Env steps per second of the preset's learning iteration; the draw's cost does not depend on the fill."""
  config = preset_config(seeds, learning_starts=0)
  config.buffer.size = size
  config.buffer.prioritized = prioritized
  runner = Runner(config)
  steps_per_second = throughput(runner, iterations, repeats)
  runner.close()
  return steps_per_second


def cumsum_draw(buf, key, batch_size):
  """The proportional draw with one prefix sum over every stored priority (no n-step exclusion)."""
  cdf = jnp.cumsum(buf.priority.reshape(-1))
  u = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) / batch_size * cdf[-1]
  return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="replay transitions per seed")
  parser.add_argument("--iterations", type=int, default=1000, help="iterations per timed chunk")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(f"dqn_cartpole, {args.seeds} seeds, {jax.default_backend()} ({jax.devices()[0].device_kind}); "
        f"best of {args.repeats}")
  print("| replay size | uniform env steps/s | prioritised env steps/s | prioritised / uniform |")
  print("|---|---|---|---|")
  for size in args.sizes:
    uniform = iteration_throughput(args.seeds, size, False, args.iterations, args.repeats)
    prioritized = iteration_throughput(args.seeds, size, True, args.iterations, args.repeats)
    print(f"| {size:,} | {uniform:,.0f} | {prioritized:,.0f} | {prioritized / uniform:.2f} |", flush=True)

  group, num_envs, batch_size = 5, 8, 64
  print(f"\n| replay size | uniform draw (us) | prioritised draw (us) | one-cumsum draw (us) |  "
        f"({group} seeds vmapped, batch {batch_size})")
  print("|---|---|---|---|")
  for size in args.sizes:
    rows = size // num_envs
    keys = jax.random.split(jax.random.PRNGKey(0), group)

    def full(key, rows=rows):
      buf = buffer.init(rows, num_envs, jnp.zeros((4,)), prioritized=True)
      return buf.replace(size=jnp.int32(rows), priority=jax.random.uniform(key, (rows, num_envs)))

    bufs = jax.jit(jax.vmap(full))(keys)
    draws = {
        "uniform": jax.jit(jax.vmap(lambda b, k: buffer.sample(b, k, batch_size, n_step=3))),
        "prioritised": jax.jit(jax.vmap(lambda b, k: buffer.sample_prioritized(b, k, batch_size, beta=0.4,
                                                                               n_step=3))),
        "cumsum": jax.jit(jax.vmap(lambda b, k: cumsum_draw(b, k, batch_size))),
    }
    times = {name: best_seconds(fn, bufs, keys, repeats=50) * 1e6 for name, fn in draws.items()}
    print(f"| {size:,} | {times['uniform']:.0f} | {times['prioritised']:.0f} | {times['cumsum']:.0f} |", flush=True)


if __name__ == "__main__":
  main()
