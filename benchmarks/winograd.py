"""One 3x3 convolution layer's train-step work, im2col against Winograd's F(2x2, 3x3), on the CPU.

For each case (batch, output size, C_in, F), a jitted value-and-gradient of
``sum(relu(conv(x)))`` with respect to the kernel and the input (the forward
product and both gradient products a train step runs), or with ``--forward``
the layer's forward pass alone, timed for both implementations interleaved,
median of 5. The ratio im2col / Winograd is
what sets where ``Conv(impl='auto')`` picks Winograd on the CPU
(``jaxdl.models.conv.WINOGRAD_MIN_IN_FEATURES`` and ``WINOGRAD_MIN_OUT_SIZE``).

    python benchmarks/winograd.py [--quick] [--forward]
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.models.conv import Conv

# (batch, spatial size, C_in, F): the presets' and the benchmarks' 3x3 layers and the boundaries around them.
CASES = [(128, 4, 64, 128), (128, 6, 64, 128), (128, 8, 64, 128), (128, 14, 64, 128), (128, 16, 64, 64),
         (128, 28, 8, 16), (128, 28, 16, 32), (128, 14, 32, 32), (256, 3, 64, 64), (256, 7, 64, 64),
         (256, 9, 64, 64), (64, 6, 32, 32), (128, 6, 32, 32), (16, 9, 128, 128), (64, 9, 128, 128)]


def bench(batch: int, size: int, c_in: int, features: int, repeats: int, forward: bool) -> dict[str, float]:
  """ms per value-and-gradient call (or forward call), per implementation."""
  x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, size, size, c_in)), jnp.float32)
  calls = {}
  for impl in ("im2col", "winograd"):
    conv = Conv(features, (3, 3), use_bias=False, impl=impl)
    params = conv.init(jax.random.PRNGKey(0), x)
    loss = lambda p, x, conv=conv: jnp.sum(jax.nn.relu(conv.apply(p, x)))
    calls[impl] = (jax.jit(conv.apply if forward else jax.value_and_grad(loss, argnums=(0, 1))), params)
  for fn, params in calls.values():
    jax.block_until_ready(fn(params, x))  # compile
  per_call = max(3, int(2e8 / (batch * size * size * c_in * features * 9 * 6)))  # about 0.2 GFLOP a repeat
  times = {impl: [] for impl in calls}
  for _ in range(repeats):
    for impl, (fn, params) in calls.items():
      t = time.perf_counter()
      for _ in range(per_call):
        out = fn(params, x)
      jax.block_until_ready(out)
      times[impl].append((time.perf_counter() - t) / per_call * 1e3)
  return {impl: statistics.median(ts) for impl, ts in times.items()}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="the first four cases, 3 repeats")
  parser.add_argument("--forward", action="store_true", help="the forward pass alone (inference, tree search)")
  args = parser.parse_args()
  cases, repeats = (CASES[:4], 3) if args.quick else (CASES, 5)
  what = "forward pass" if args.forward else "value-and-gradient"
  print(f"backend={jax.default_backend()}; ms per {what} of one 3x3 conv layer (stride 1, SAME)")
  print(f"{'batch':>6}{'size':>6}{'C_in':>6}{'F':>6}{'im2col':>10}{'winograd':>10}{'ratio':>8}", flush=True)
  for batch, size, c_in, features in cases:
    r = bench(batch, size, c_in, features, repeats, args.forward)
    print(f"{batch:>6}{size:>6}{c_in:>6}{features:>6}{r['im2col']:>10.2f}{r['winograd']:>10.2f}"
          f"{r['im2col'] / r['winograd']:>8.2f}", flush=True)


if __name__ == "__main__":
  main()
