"""Two processes on 127.0.0.1 train as one job through jax.distributed, and resume as one after a kill."""

import json
import os
import socket
import subprocess
import sys

import pytest

from cli_helpers import assert_one_line_error, killed_after_save, run_cli

ARGS = ["--set", "model.hidden=(32,)", "--set", "train.steps=30", "--set", "train.batch_size=64",
        "--set", "train.log_every=10", "--set", "train.eval_every=0", "--set", "augment.shift=0",
        "--set", "checkpoint.every_steps=10"]
CMD = [sys.executable, "-m", "jaxdl", "run", "digits_mlp"]
BASE = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def two_processes(workdir, cwd, kill_after=None):
  """Runs the job as 2 processes of 2 devices each; with ``kill_after``, process 0 is SIGKILLed after that
  checkpoint and then process 1 too. Returns [(returncode, stdout, stderr)] per process."""
  port = free_port()
  procs = []
  for i in range(2):
    cmd = CMD + ["--workdir", str(workdir), *ARGS, "--num-processes", "2", "--process-id", str(i),
                 "--coordinator", f"127.0.0.1:{port}"]
    if kill_after is not None and i == 0:
      cmd = killed_after_save(cmd, kill_after)
    procs.append(subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**BASE, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}))
  if kill_after is not None:
    procs[0].wait(timeout=300)
    procs[1].kill()  # its peer is gone: the job is dead, as after a preemption of every host
  outs = [p.communicate(timeout=300) for p in procs]
  return [(p.returncode, *out) for p, out in zip(procs, outs)]


@pytest.fixture(scope="module")
def multi(tmp_path_factory, repo_root):
  workdir = tmp_path_factory.mktemp("multihost") / "multi"
  results = two_processes(workdir, repo_root)
  for code, _, err in results:
    assert code == 0, err[-2000:]
  return workdir, results


def test_two_processes_match_one_process_with_as_many_devices(multi, tmp_path, repo_root):
  workdir, results = multi
  # Several processes shard the training set (data.placement=''): each places only its rows, and the
  # batches depend on the 4 shards, not on the 2 processes they sit in.
  single = subprocess.run(CMD + ["--workdir", str(tmp_path / "single"), *ARGS, "--set", "data.placement=sharded"],
                          cwd=repo_root,
                          env={**BASE, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-2000:]
  assert "4 cpu device(s)" in results[0][1]
  assert "training set sharded (359 rows per device, 1 dropped)" in results[0][1]  # 1437 digits over 4 devices
  assert "training set sharded (359 rows per device, 1 dropped)" in single.stdout
  assert "jaxdl" not in results[1][1] and "device(s)" not in results[1][1]  # process 0 alone logs
  a = json.loads((tmp_path / "single" / "metrics.json").read_text())
  b = json.loads((workdir / "metrics.json").read_text())
  assert b["num_devices"] == a["num_devices"] == 4
  assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)
  assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
  assert b["test_accuracy"] == pytest.approx(a["test_accuracy"], abs=1 / 360 + 1e-9)


def test_killing_every_process_and_rerunning_resumes_bit_exactly(multi, tmp_path, repo_root):
  reference, _ = multi
  workdir = tmp_path / "killed"
  killed = two_processes(workdir, repo_root, kill_after=20)
  assert [code for code, _, _ in killed] == [-9, -9]
  assert not (workdir / "metrics.json").exists()
  resumed = two_processes(workdir, repo_root)
  for code, _, err in resumed:
    assert code == 0, err[-2000:]
  a = json.loads((reference / "metrics.json").read_text())
  b = json.loads((workdir / "metrics.json").read_text())
  assert b["resumed_from_step"] in (10, 20)  # 20 may not have landed: its async save was cut short
  assert b["params_sha256"] == a["params_sha256"]
  assert b["test_loss"] == a["test_loss"]
  steps = [[json.loads(line)["step"] for line in (w / "metrics.jsonl").read_text().splitlines()]
           for w in (reference, workdir)]
  assert steps[1] == steps[0] == sorted(set(steps[0])) and 30 in steps[0]  # each once (process 0), across the kill


JOIN_VARIABLES = ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS")


@pytest.fixture
def clean_join_env(monkeypatch):
  """The flags set these variables in-process; they are taken back after the test."""
  for name in JOIN_VARIABLES:
    monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("flags, named", [
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:5"], "process id 2"),
    (["--num-processes", "2", "--process-id", "-1", "--coordinator", "127.0.0.1:5"], "process id -1"),
    (["--num-processes", "2", "--process-id", "1", "--coordinator", "nowhere"], "'nowhere'"),
    (["--num-processes", "2"], "--process-id"),
])
def test_bad_job_flags_are_one_line_errors(tmp_path, capsys, clean_join_env, flags, named):
  code, _, err = run_cli(capsys, "run", "digits_mlp", "--workdir", str(tmp_path / "run"), *flags)
  assert_one_line_error(code, err, named)
  assert not (tmp_path / "run").exists()


def test_an_unreachable_coordinator_fails_in_bounded_time_naming_it(tmp_path, capsys, clean_join_env):
  port = free_port()  # nothing listens there
  code, _, err = run_cli(capsys, "run", "digits_mlp", "--workdir", str(tmp_path / "run"), "--num-processes", "2",
                         "--process-id", "1", "--coordinator", f"127.0.0.1:{port}",
                         "--set", "train.distributed_timeout_s=2")
  assert_one_line_error(code, err, f"127.0.0.1:{port}", "train.distributed_timeout_s=2")
  assert not (tmp_path / "run").exists()


def test_a_loop_that_runs_in_one_process_refuses_the_job_flags(tmp_path, capsys, clean_join_env):
  code, _, err = run_cli(capsys, "run", "dqn_cartpole", "--workdir", str(tmp_path / "run"), "--num-processes", "2",
                         "--process-id", "0")
  assert_one_line_error(code, err, "'dqn' loop runs in one process")
