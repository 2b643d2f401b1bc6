"""benchmarks/gpu.sh, the script a lent GPU runs, at its smoke sizes on this CPU: it must run end to end."""

import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_runs_both_models_and_the_compile_cache(tmp_path):
  env = {**os.environ, "OUT": str(tmp_path)}
  done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--smoke", "--repeats", "1"],
                        env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  result = json.loads((tmp_path / "gpu.json").read_text())
  assert result["smoke"] and [r["case"] for r in result["rows"]] == ["resnet50", "lm"]
  for row in result["rows"]:
    assert row["jaxdl_steps_per_s"] > 0 and row["hand_steps_per_s"] > 0
    assert row["flops_per_step"] > 0 and row["jaxdl_over_hand"] > 0
    assert row["mfu"] is None  # a CPU has no peak in jaxdl.train.cost.PEAK_FLOPS
    assert abs(row["jaxdl_loss"] - row["hand_loss"]) < 1.0  # the same model and data: losses of one size
  cache = result["compile_cache"]
  assert cache["warm_cache_hits"] >= 1 and cache["warm_s"] < cache["cold_s"]
  assert "compile cache, lm step" in (tmp_path / "gpu.log").read_text()
