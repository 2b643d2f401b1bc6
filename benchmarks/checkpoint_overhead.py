"""What checkpointing costs a training run: A/B wall time and time blocked.

Runs a preset twice in fresh processes, with checkpoints at the default
interval and with only the final one, interleaved over repeats, and reports
each run's ``train_seconds`` and the time training waited on saves
(``checkpoint_seconds`` in metrics.json: the device-to-host copy and
checksums; Orbax writes the files in a background thread).

    python benchmarks/checkpoint_overhead.py [PRESET] [--repeats 2]
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(preset, every, workdir):
  subprocess.run([sys.executable, "-m", "jaxdl", "run", preset, "--workdir", str(workdir),
                  "--set", f"checkpoint.every_steps={every}"], check=True, cwd=ROOT,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  return json.loads((workdir / "metrics.json").read_text())


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("preset", nargs="?", default="digits_cnn")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--every", type=int, default=500, help="the interval under test (the default)")
  args = parser.parse_args()
  results = {args.every: [], 0: []}
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(args.repeats):
      for every in results:
        m = run(args.preset, every, pathlib.Path(tmp) / f"{every}-{r}")
        results[every].append(m)
        print(f"every={every}: train {m['train_seconds']:.1f}s, saves {m['checkpoint_saves']}, "
              f"blocked {m['checkpoint_seconds']:.3f}s", flush=True)
  on = statistics.median(m["train_seconds"] for m in results[args.every])
  off = statistics.median(m["train_seconds"] for m in results[0])
  blocked = statistics.median(m["checkpoint_seconds"] / m["train_seconds"] for m in results[args.every])
  print(f"\n{args.preset}: checkpoints every {args.every} steps: train {on:.1f}s vs final-only {off:.1f}s "
        f"-> A/B overhead {100 * (on - off) / off:+.1f}%; time blocked on saves {100 * blocked:.2f}% of training")


if __name__ == "__main__":
  main()
