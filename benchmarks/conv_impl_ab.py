"""A convolutional preset's train step under two or more ``model.conv_impl`` choices, interleaved in one process.

The same task ``benchmarks/vs_pytorch.py`` builds (one device, the preset's
batch and augmentation), once per implementation; the chunk that ``jaxdl run``
uses and the jitted step from Python are timed in interleaved repeats, so a
drift in the machine's speed hits every variant alike. Prints ms per step.

    python benchmarks/conv_impl_ab.py digits_cnn_28 [--impls im2col auto] [--repeats 5]
"""

import argparse
import statistics
import time

import jaxdl  # noqa: F401  (first: its CPU runtime settings precede JAX's backend)
import numpy as np

from vs_pytorch import jaxdl_runners, jaxdl_task

CONV_ARCHS = ("digits_cnn", "digits_cnn_28")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("arch", choices=CONV_ARCHS)
  parser.add_argument("--impls", nargs="+", default=["im2col", "auto"], help="model.conv_impl values")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  steps = 20 if args.arch == "digits_cnn_28" else 200  # about 2-3 s a repeat
  runners = {}
  for impl in args.impls:
    _, task = jaxdl_task(args.arch, conv_impl=impl)
    for path, run in jaxdl_runners(task, False, np.random.default_rng(0)).items():
      runners[(impl, path)] = run
  for run in runners.values():
    run(4)  # compile and warm up
  times = {key: [] for key in runners}
  for _ in range(args.repeats):
    for key, run in runners.items():
      t = time.perf_counter()
      run(steps)
      times[key].append((time.perf_counter() - t) / steps * 1e3)
  print(f"{args.arch}: ms per step, median of {args.repeats} interleaved repeats of {steps} steps")
  for (impl, path), ts in times.items():
    print(f"  conv_impl={impl:<9} {path:<12} {statistics.median(ts):8.2f}")


if __name__ == "__main__":
  main()
