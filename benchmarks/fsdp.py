"""``train.sharding`` replicated vs fsdp: per-device bytes of params + optimizer state, and step time.

Each preset's task is built under both layouts on 8 forced CPU devices (the
default ``MIN_SHARD_SIZE``), one chunk is run to compile, then ``--steps``
steps are timed in one chunk. CPU devices share the host's cores, so the
times say what the collectives cost there, not what a GPU or TPU would see.

    python benchmarks/fsdp.py                                   # digits_cnn, charlm_transformer
    python benchmarks/fsdp.py digits_cnn --steps 50 --devices 4
"""

import argparse
import os
import sys
import time


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("presets", nargs="*", default=["digits_cnn", "charlm_transformer"])
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--devices", type=int, default=8)
  args = parser.parse_args()
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={args.devices}")
  import jax  # noqa: E402  after XLA_FLAGS
  import numpy as np

  from jaxdl.configs import apply_overrides, load_preset
  from jaxdl.loops.lm.experiment import LMTask
  from jaxdl.loops.supervised.experiment import SupervisedTask
  from jaxdl.train import sharding

  print(f"{'preset':22s} {'layout':10s} {'MiB/device':>11s} {'ms/step':>8s}")
  for name in args.presets:
    rows = {}
    for layout in ("replicated", "fsdp"):
      config, _ = load_preset(name)
      apply_overrides(config, [f"train.sharding={layout}", f"train.steps={max(args.steps, 200)}"])
      task = (LMTask if config.loop == "lm" else SupervisedTask)(config)
      n = min(args.steps, task.max_chunk)
      state, _ = task.run_chunk(task.state, np.int32(n))  # compile (n is traced: the timed call reuses it)
      jax.block_until_ready(state)
      mib = sharding.per_device_bytes((state.params, state.opt_state)) / 2**20
      t0 = time.perf_counter()
      state, _ = task.run_chunk(state, np.int32(n))
      jax.block_until_ready(state)
      ms = (time.perf_counter() - t0) / n * 1e3
      rows[layout] = (mib, ms)
      print(f"{name:22s} {layout:10s} {mib:11.3f} {ms:8.1f}", flush=True)
    (rm, rt), (fm, ft) = rows["replicated"], rows["fsdp"]
    print(f"{name:22s} {'fsdp/rep':10s} {fm / rm:11.3f} {ft / rt:8.2f}")


if __name__ == "__main__":
  sys.exit(main())
