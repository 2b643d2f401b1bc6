"""Each preset run twice with an empty, then a warm, persistent compilation cache: ``compile_seconds`` of both.

The runs are fresh ``jaxdl run`` processes sharing one new ``JAXDL_CACHE_DIR``
(nothing else cached there is reused: generated data is rebuilt on the first
run). The pair is repeated (``--repeats``, each with a new cache) and the
medians are reported: one pair varies by about 20% on this machine. The training budget is cut short (``--steps``), which changes only the
constants of a schedule, not which programs compile; the second run is in a
new workdir, so it trains again rather than resuming. A study (grad_flow,
transfer, distill) reports the sum over its supervised runs.

    python benchmarks/compile_cache.py                    # every preset but the GPU-sized ones
    python benchmarks/compile_cache.py digits_cnn mnist1d_gru --steps 20
"""

import argparse
import json
import statistics
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIP = ("alphazero_go9x9", "dqn_atari", "dqn_cartpole_gym")  # GPU-sized, or a host loop over Gymnasium
# The key that sets the training budget, per loop (default: train.steps).
BUDGET = {"dqn": "train.env_steps={}000", "grad_flow": None, "transfer": None, "distill": None}
WARMUP = ("supervised", "lm", "simclr")  # loops whose presets warm up for longer than a cut budget


def loop_of(name):
  out = subprocess.run([sys.executable, "-m", "jaxdl", "show", name], capture_output=True, text=True, check=True,
                       cwd=ROOT)
  return json.loads(out.stdout).get("loop", "supervised")


def compiles(workdir):
  """compile_seconds, compiled_programs and compile_cache_hits, summed over every metrics.json of a run."""
  total = {"compile_seconds": 0.0, "compiled_programs": 0, "compile_cache_hits": 0, "program_cache_hits": 0}
  for path in workdir.rglob("metrics.json"):
    record = json.loads(path.read_text())
    for key in total:
      total[key] += record.get(key, 0)
  return total


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("presets", nargs="*")
  parser.add_argument("--steps", type=int, default=40, help="training budget of each run (default 40)")
  parser.add_argument("--repeats", type=int, default=3,
                      help="pairs of runs per preset, each with a new cache; medians are reported (default 3)")
  args = parser.parse_args()
  names = args.presets or sorted(p.stem for p in (ROOT / "experiments").glob("[!_]*.py") if p.stem not in SKIP)
  root = pathlib.Path(tempfile.mkdtemp(prefix="jaxdl-compile-cache-"))
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
  rows = []
  for name in names:
    loop = loop_of(name)
    budget = BUDGET.get(loop, "train.steps={}")
    extra = ["--set", budget.format(args.steps)] if budget else []
    if loop in WARMUP:  # a warm-up longer than the cut budget is refused; its length changes no program
      extra += ["--set", f"optim.warmup_steps={args.steps // 4}"]
    pairs = []  # (first run, second run) per repeat, each repeat with a cache of its own
    for r in range(args.repeats):
      env["JAXDL_CACHE_DIR"] = str(root / f"cache-{name}-{r}")
      runs = []
      for i in range(2):
        workdir = root / f"{name}-{r}-{i}"
        done = subprocess.run([sys.executable, "-m", "jaxdl", "run", name, "--workdir", str(workdir), *extra],
                              capture_output=True, text=True, cwd=ROOT, env=env)
        if done.returncode:
          print(f"{name}: run {i} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
          break
        runs.append(compiles(workdir))
      if len(runs) < 2:
        break
      pairs.append(runs)
    if len(pairs) == args.repeats:
      first = statistics.median(p[0]["compile_seconds"] for p in pairs)
      second = statistics.median(p[1]["compile_seconds"] for p in pairs)
      warm = pairs[-1][1]
      hits, programs, traced = warm["compile_cache_hits"], warm["compiled_programs"], warm["program_cache_hits"]
      met = second <= max(1.0, first / 4)
      rows.append((name, first, second, hits, programs, traced, met))
      print(f"{name}: {first:.2f} s, then {second:.2f} s (medians of {args.repeats}; {hits} of {programs} "
            f"programs from the cache, {traced} read back untraced){'' if met else '  TARGET MISSED'}", flush=True)
  print("\n| preset | compile_seconds, empty cache | warm cache | ratio | programs from the cache | "
        "read back untraced | target met |")
  print("|---|---|---|---|---|---|---|")
  for name, first, second, hits, programs, traced, met in rows:
    print(f"| {name} | {first:.2f} | {second:.2f} | {second / first:.2f} | {hits} / {programs} | {traced} | "
          f"{'yes' if met else '**no**'} |")
  (root / "compile_cache.json").write_text(json.dumps(rows, indent=1))
  print(f"\nJSON: {root / 'compile_cache.json'}")


if __name__ == "__main__":
  main()
