"""The metrics writer: metrics.jsonl and TensorBoard events, without importing torch."""

import importlib.util
import json
import subprocess
import sys

import pytest

from cli_helpers import tensorboard_steps
from jaxdl.train.writers import MetricWriter

# In a fresh process: write TensorBoard events, then say whether torch was imported, then import it.
_CHILD = """
import json, sys
from jaxdl.train.writers import MetricWriter
writer = MetricWriter(sys.argv[1])
writer.write(10, {"train/loss": 0.5})
writer.close()
before = "torch" in sys.modules
import torch
print(json.dumps({"before": before, "after": torch.zeros(2).shape[0]}))
"""


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed (jaxdl[bench])")
def test_tensorboard_events_are_written_without_importing_torch_and_torch_imports_after(tmp_path):
  done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert json.loads(done.stdout.splitlines()[-1]) == {"before": False, "after": 2}
  assert tensorboard_steps(tmp_path / "tb") == {"train/loss": [10]}


def test_a_resumed_log_keeps_the_records_up_to_its_step_and_drops_the_rest(tmp_path):
  writer = MetricWriter(tmp_path)
  for step in (10, 20, 30):
    writer.write(step, {"train/loss": 1.0 / step})
  writer.close()
  resumed = MetricWriter(tmp_path, resume_step=20)
  assert [r["step"] for r in resumed.history] == [10, 20]
  resumed.write(30, {"train/loss": 0.25})
  resumed.close()
  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], r["train/loss"]) for r in lines] == [(10, 0.1), (20, 0.05), (30, 0.25)]
