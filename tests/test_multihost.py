"""Two processes on 127.0.0.1 train as one job through jax.distributed."""

import json
import os
import socket
import subprocess
import sys

import pytest

ARGS = ["--set", "model.hidden=(32,)", "--set", "train.steps=30", "--set", "train.batch_size=64",
        "--set", "train.log_every=10", "--set", "train.eval_every=0", "--set", "augment.shift=0"]


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process_with_as_many_devices(tmp_path, repo_root):
  base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  cmd = [sys.executable, "-m", "jaxdl", "run", "digits_mlp"]
  # Reference: one process with 4 devices.
  single = subprocess.run(cmd + ["--workdir", str(tmp_path / "single"), *ARGS], cwd=repo_root,
                          env={**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-2000:]
  # Two processes with 2 devices each: one mesh of 4 devices over both.
  port = free_port()
  procs = [subprocess.Popen(cmd + ["--workdir", str(tmp_path / "multi"), *ARGS, "--set", "train.distributed=true"],
                            cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                                 "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                                 "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
           for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  assert "4 cpu device(s)" in outs[0][0]
  a = json.loads((tmp_path / "single" / "metrics.json").read_text())
  b = json.loads((tmp_path / "multi" / "metrics.json").read_text())
  assert b["num_devices"] == a["num_devices"] == 4
  assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)
  assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
  assert b["test_accuracy"] == pytest.approx(a["test_accuracy"], abs=1 / 360 + 1e-9)
