"""Full runs of presets, one after another, as a Markdown table for the README.

Each run is a fresh ``jaxdl run`` process (compile time included, as a user
sees it), so runs do not share caches. Runs go to ``runs/bench/PRESET-sSEED``.

    python benchmarks/run_presets.py                       # every preset, seed 0
    python benchmarks/run_presets.py digits_cnn --seeds 0 1 2
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("presets", nargs="*")
  parser.add_argument("--seeds", nargs="+", type=int, default=[0])
  parser.add_argument("--set", action="append", default=[])
  args = parser.parse_args()
  presets = args.presets or sorted(p.stem for p in (ROOT / "experiments").glob("[!_]*.py"))
  rows = []
  for name in presets:
    accs, walls = [], []
    for seed in args.seeds:
      workdir = ROOT / "runs" / "bench" / f"{name}-s{seed}"
      shutil.rmtree(workdir, ignore_errors=True)  # a fresh run each time, not a resume
      cmd = [sys.executable, "-m", "jaxdl", "run", name, "--workdir", str(workdir),
             "--set", f"train.seed={seed}"] + [x for s in args.set for x in ("--set", s)]
      t = time.perf_counter()
      subprocess.run(cmd, check=True, cwd=ROOT, stderr=subprocess.DEVNULL,
                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
      wall = time.perf_counter() - t
      m = json.loads((workdir / "metrics.json").read_text())
      accs.append(m["test_accuracy"])
      walls.append(wall)
      # A study (distill, transfer) reports its runs' totals, not one loop's train time.
      times = (f"train {m['train_seconds']:.1f}s, first chunk {m['first_chunk_seconds']:.1f}s"
               if "train_seconds" in m else f"its runs {m['wall_seconds']:.1f}s")
      print(f"{name} seed={seed}: test_accuracy={m['test_accuracy']:.4f} "
            f"process wall={wall:.1f}s ({times})", flush=True)
    rows.append((name, accs, walls))
  print("\n| preset | test accuracy | seeds | wall time (s) |\n|---|---|---|---|")
  for name, accs, walls in rows:
    acc = f"{statistics.mean(accs):.4f}" + (f" ({', '.join(f'{a:.4f}' for a in accs)})" if len(accs) > 1 else "")
    print(f"| {name} | {acc} | {','.join(map(str, args.seeds))} | {statistics.mean(walls):.0f} |")


if __name__ == "__main__":
  main()
