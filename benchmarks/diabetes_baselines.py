"""The diabetes_mlp preset beside scikit-learn's RidgeCV and gradient boosting, on the same 80/20 split.

    python benchmarks/diabetes_baselines.py                  # seeds 0 1 2 of the preset
    python benchmarks/diabetes_baselines.py --seeds 0 --set train.steps=200

The split is ``jaxdl.load_dataset("diabetes", task="regression")``'s, so all
three models see the same 353 training and 89 test patients. RidgeCV gets
the features standardised on the training split, as the preset does
(``data.normalize=feature``), and picks its penalty by leave-one-out
cross-validation on the training split; gradient boosting uses scikit-learn's
defaults (trees need no scaling). Each preset run is a fresh ``jaxdl run``
process under ``runs/bench/diabetes_mlp-sSEED``.
"""

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
RIDGE_ALPHAS = np.logspace(-3, 3, 13)  # 1e-3 .. 1e3, half a decade apart


def scores(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
  """R^2, RMSE and MAE of ``predicted`` against ``y`` (N,)."""
  from sklearn import metrics

  return {"r2": metrics.r2_score(y, predicted), "rmse": float(np.sqrt(metrics.mean_squared_error(y, predicted))),
          "mae": metrics.mean_absolute_error(y, predicted)}


def baselines() -> dict[str, dict[str, float]]:
  """Test scores of RidgeCV and GradientBoostingRegressor fit on the preset's training split."""
  from sklearn import ensemble, linear_model, pipeline, preprocessing

  import jaxdl

  ds = jaxdl.load_dataset("diabetes", task="regression")
  models = {
      "RidgeCV": pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.RidgeCV(alphas=RIDGE_ALPHAS)),
      "GradientBoostingRegressor": ensemble.GradientBoostingRegressor(random_state=0),
  }
  return {name: scores(ds.y_test, model.fit(ds.x_train, ds.y_train).predict(ds.x_test))
          for name, model in models.items()}


def preset_runs(seeds: list[int], overrides: list[str]) -> list[dict]:
  """``metrics.json`` of a fresh ``jaxdl run diabetes_mlp`` per seed, with the process's wall time."""
  runs = []
  for seed in seeds:
    workdir = ROOT / "runs" / "bench" / f"diabetes_mlp-s{seed}"
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, not a resume
    cmd = [sys.executable, "-m", "jaxdl", "run", "diabetes_mlp", "--workdir", str(workdir),
           "--set", f"train.seed={seed}"] + [x for s in overrides for x in ("--set", s)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    metrics = json.loads((workdir / "metrics.json").read_text())
    runs.append({**metrics, "process_seconds": time.perf_counter() - t})
    print(f"diabetes_mlp seed={seed}: test_r2={metrics['test_r2']:.4f} test_rmse={metrics['test_rmse']:.2f} "
          f"({runs[-1]['process_seconds']:.0f} s)", flush=True)
  return runs


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  parser.add_argument("--set", action="append", default=[], help="overrides for the preset runs")
  args = parser.parse_args()
  runs = preset_runs(args.seeds, args.set)
  rows = {name: {k: f"{v:.4f}" if k == "r2" else f"{v:.2f}" for k, v in s.items()} for name, s in baselines().items()}
  mean = {k: statistics.mean(r[f"test_{k}"] for r in runs) for k in ("r2", "rmse", "mae")}
  each = ", ".join(f"{r['test_r2']:.4f}" for r in runs)
  rows["diabetes_mlp"] = {"r2": f"{mean['r2']:.4f} ({each} for seeds {', '.join(map(str, args.seeds))})",
                          "rmse": f"{mean['rmse']:.2f}", "mae": f"{mean['mae']:.2f}"}
  print("\n| model | test R^2 | test RMSE | test MAE |\n|---|---|---|---|")
  for name, row in rows.items():
    print(f"| {name} | {row['r2']} | {row['rmse']} | {row['mae']} |")


if __name__ == "__main__":
  main()
