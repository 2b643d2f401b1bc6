"""Each preset trained in float32 and with ``train.dtype=bfloat16``: the headline metric, time and cost of both.

Full preset runs in fresh ``jaxdl run`` processes, one after another (same
seed, same machine), each in a new workdir. Prints a Markdown table and
writes it as JSON with ``--out``. The target of the speed-and-scale issue:
bfloat16 within 0.5 points of float32's accuracy, or 0.03 bpc.

    python benchmarks/mixed_precision.py                            # digits_cnn, mnist1d_gru, charlm_transformer
    python benchmarks/mixed_precision.py digits_mlp --set train.steps=200
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRESETS = ("digits_cnn", "mnist1d_gru", "charlm_transformer")
# The headline of a run's metrics.json, and how far bfloat16 may fall behind float32 on it.
HEADLINES = (("test_accuracy", 0.005, "higher"), ("best_val_bpc", 0.03, "lower"))


def run(name: str, workdir: pathlib.Path, overrides: list[str]) -> dict:
  cmd = [sys.executable, "-m", "jaxdl", "run", name, "--workdir", str(workdir)]
  for o in overrides:
    cmd += ["--set", o]
  done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
  if done.returncode:
    sys.exit(f"{name} {' '.join(overrides)} failed:\n{done.stderr[-2000:]}")
  return json.loads((workdir / "metrics.json").read_text())


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("presets", nargs="*")
  parser.add_argument("--set", action="append", default=[], help="an override for every run")
  parser.add_argument("--out", type=pathlib.Path, help="write the rows as JSON here")
  args = parser.parse_args()
  root = pathlib.Path(tempfile.mkdtemp(prefix="jaxdl-mixed-precision-"))
  rows = []
  for name in args.presets or PRESETS:
    results = {}
    for dtype in ("float32", "bfloat16"):
      results[dtype] = run(name, root / f"{name}-{dtype}", [*args.set, f"train.dtype={dtype}"])
      print(f"{name} {dtype}: done in {results[dtype]['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    key, tolerance, better = next(h for h in HEADLINES if h[0] in results["float32"])
    f32, bf16 = results["float32"][key], results["bfloat16"][key]
    behind = (f32 - bf16) if better == "higher" else (bf16 - f32)
    rows.append({"preset": name, "metric": key, "float32": f32, "bfloat16": bf16, "behind": behind,
                 "met": behind <= tolerance, "tolerance": tolerance,
                 "seconds": {d: r["wall_seconds"] for d, r in results.items()},
                 "flops_per_step": results["float32"].get("flops_per_step"),
                 "peak_bytes": {d: r.get("peak_bytes") for d, r in results.items()}})
  print("| preset | metric | float32 | bfloat16 | bfloat16 behind by | target | wall s (f32 / bf16) |"
        " peak MiB per device (f32 / bf16) |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    mib = " / ".join(f"{(r['peak_bytes'][d] or 0) / 2 ** 20:.1f}" for d in ("float32", "bfloat16"))
    print(f"| `{r['preset']}` | {r['metric']} | {r['float32']:.4f} | {r['bfloat16']:.4f} | {r['behind']:+.4f} | "
          f"{'met' if r['met'] else 'not met'} (<= {r['tolerance']}) | "
          f"{r['seconds']['float32']:.0f} / {r['seconds']['bfloat16']:.0f} | {mib} |")
  if args.out:
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
  main()
