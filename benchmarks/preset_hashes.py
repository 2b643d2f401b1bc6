"""Short runs of presets and the hashes they end on, to check a change is bit-identical.

A refactor that must change no result (the layout move of issue #12, say) is
checked by running this before and after and comparing the two files:

    python benchmarks/preset_hashes.py --out before.json           # on the old commit
    python benchmarks/preset_hashes.py --out after.json --compare before.json

Each preset runs as a fresh ``jaxdl run`` process on one CPU device with the
short overrides below; the hashes depend on the machine's processor (XLA's CPU
code differs between them), so compare runs made on the same machine.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

# preset -> the overrides that shorten it (keys every version of the preset has).
SHORT = {
    "digits_mlp": ["train.steps=60"],
    "tabular_mlp": ["train.steps=60"],
    "diabetes_mlp": ["train.steps=60"],
    "digits_cnn": ["train.steps=40", "optim.warmup_steps=10"],
    "mnist1d_gru": ["train.steps=30", "optim.warmup_steps=10"],
    "mnist1d_transformer": ["train.steps=30", "optim.warmup_steps=10"],
    "charlm_transformer": ["train.steps=30", "optim.warmup_steps=10"],
    "charlm_lstm": ["train.steps=30", "optim.warmup_steps=10"],
    "gan_ring8": ["train.steps=200"],
    "gan_digits": ["train.steps=40"],
    "dqn_cartpole": ["train.env_steps=4000", "train.learning_starts=1000", "train.num_seeds=2",
                     "train.seed_groups=1"],
    "dqn_cartpole_gym": ["train.env_steps=1200", "train.learning_starts=400"],
    "alphazero_tictactoe": ["train.steps=20", "buffer.min_size=512", "eval.games=40",
                            "eval.opponents=('random',)"],
}
KEYS = ("params_sha256", "state_sha256")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("presets", nargs="*", help="default: all of SHORT")
  parser.add_argument("--out", required=True, help="where to write {preset: hashes} as JSON")
  parser.add_argument("--compare", help="a file written earlier; exit 1 if any hash differs")
  args = parser.parse_args()
  results = {}
  env = {**os.environ, "PYTHONUNBUFFERED": "1", "XLA_FLAGS": ""}
  for name in args.presets or SHORT:
    with tempfile.TemporaryDirectory() as tmp:
      workdir = pathlib.Path(tmp) / name
      cmd = [sys.executable, "-m", "jaxdl", "run", name, "--workdir", str(workdir)]
      cmd += [x for s in SHORT[name] for x in ("--set", s)]
      t = time.perf_counter()
      done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
      if done.returncode:
        sys.exit(f"{name}: {' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1]}")
      metrics = json.loads((workdir / "metrics.json").read_text())
    results[name] = {k: metrics[k] for k in KEYS if k in metrics}
    print(f"{name}: {results[name]['params_sha256'][:16]} ({time.perf_counter() - t:.1f} s)", flush=True)
  pathlib.Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
  if args.compare:
    before = json.loads(pathlib.Path(args.compare).read_text())
    diffs = [n for n in results if n in before and before[n] != results[n]]
    print(f"{len(results) - len(diffs)} of {len(results)} presets bit-identical"
          + (f"; differ: {', '.join(diffs)}" if diffs else ""))
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
  main()
