"""The DQN host loop resumes bit-exactly: Gymnasium env snapshots beside the checkpoints."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import gymnasium as gym
import jax
import numpy as np
import pytest

from jaxdl import cli, configs
from jaxdl.envs import gym_host
from jaxdl.loops.dqn.host import HostRunner, snapshot_directory
from cli_helpers import killed_after_save

EXPERIMENTS = pathlib.Path(__file__).parents[2] / "experiments"

# 300 iterations of 8 CartPole envs, one seed; learning from iteration 50,
# a checkpoint (and env snapshot) every 50 iterations.
TINY = ["train.num_seeds=1", "train.env_steps=2400", "train.learning_starts=400", "train.batch_size=32",
        "train.log_every=50", "checkpoint.every_steps=50", "checkpoint.max_to_keep=2", "eval.episodes=2",
        "eval.select=best"]  # the best-policy record must survive the kill too
KILL_AT = 150  # mid-run, after learning started: the buffer, the learner and the episodes all matter
COMPARED = ("params_sha256", "state_sha256", "eval_return_per_seed", "updates_per_seed")


def preset(name, overrides=()):
  config, _ = configs.load_preset(EXPERIMENTS / f"{name}.py")
  return configs.apply_overrides(config, list(overrides))


def set_args(overrides):
  return [a for o in overrides for a in ("--set", o)]


def resume(workdir):
  """The same command again, in this process; returns metrics.json."""
  assert cli.main(["run", "dqn_cartpole_gym", "--workdir", str(workdir), *set_args(TINY)]) == 0
  return json.loads((workdir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The uninterrupted run, and a workdir whose run was SIGKILLed right after starting the checkpoint at KILL_AT.

  Both are subprocesses started together: on two cores they run side by side.
  """
  root = tmp_path_factory.mktemp("host_runs")

  def start(name, kill_at=None):
    cmd = [sys.executable, "-m", "jaxdl", "run", "dqn_cartpole_gym", "--workdir", str(root / name),
           *set_args(TINY)]
    if kill_at is not None:
      cmd = killed_after_save(cmd, kill_at)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

  reference = start("reference")
  killed = start("killed", kill_at=KILL_AT)
  for proc, expected in ((reference, 0), (killed, -signal.SIGKILL)):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == expected, err[-2000:]
  workdir = root / "killed"
  assert not (workdir / "metrics.json").exists()
  # The snapshot is written before the (asynchronous) checkpoint is started, so it is there either way.
  assert (snapshot_directory(workdir / "checkpoints") / f"envs-{KILL_AT}.pkl").is_file()
  return json.loads((root / "reference" / "metrics.json").read_text()), workdir


def test_sigkill_then_same_command_resumes_bit_exactly(tmp_path, capsys, runs):
  reference, killed = runs
  workdir = tmp_path / "run"
  shutil.copytree(killed, workdir)
  final = resume(workdir)
  assert "warning" not in capsys.readouterr().out
  # The kill lands right after the save at KILL_AT starts: KILL_AT if it landed, else the one before.
  assert final["resumed_from_step"] in (KILL_AT - 50, KILL_AT)
  for key in COMPARED:
    assert final[key] == reference[key], key
  # Snapshots of checkpoints that are gone were pruned: one per kept checkpoint remains.
  kept = sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  envs = sorted(p.name for p in snapshot_directory(workdir / "checkpoints").iterdir())
  assert kept == ["250", "300"] and envs == ["envs-250.pkl", "envs-300.pkl"]


def test_damaged_snapshot_warns_once_and_starts_fresh_episodes(tmp_path, capsys, runs):
  reference, killed = runs
  workdir = tmp_path / "run"
  shutil.copytree(killed, workdir)
  for path in snapshot_directory(workdir / "checkpoints").iterdir():
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # overwritten bytes, as a bad disk would
    path.write_bytes(bytes(data))
  final = resume(workdir)
  warnings = [l for l in capsys.readouterr().out.splitlines() if "warning" in l]
  assert len(warnings) == 1 and "no usable env snapshot" in warnings[0] and "fresh episodes" in warnings[0]
  assert final["env_steps"] == reference["env_steps"]
  # Fresh episodes are a different trajectory: the snapshot is what made the other resume exact.
  assert final["state_sha256"] != reference["state_sha256"]


def test_runner_snapshot_round_trip_and_refusals(tmp_path, capsys):
  """``save_envs`` then ``after_restore`` in a new runner: the same episodes; wrong snapshots are refused."""
  runner = HostRunner(preset("dqn_cartpole_gym", TINY))
  again = HostRunner(runner.config)
  try:
    state = runner.init()
    rng = np.random.default_rng(0)
    for action in rng.integers(0, 2, (40, 8)):  # into the episodes (a few end and reset)
      runner.envs.step(action)
    checkpoints = tmp_path / "checkpoints"
    at_7 = state.replace(step=state.step + 7)
    runner.save_envs(7, at_7, checkpoints)
    assert again.after_restore(at_7, checkpoints) is at_7  # nothing reset
    assert "warning" not in capsys.readouterr().out
    for action in rng.integers(0, 2, (200, 8)):
      for a, b in zip(runner.envs.step(action)[:4], again.envs.step(action)[:4]):
        np.testing.assert_array_equal(a, b)  # observation, reward, terminated, truncated
    # No snapshot of step 8; a snapshot whose observations are not the checkpoint's.
    for step, obs_shift, reason in [(8, 0.0, "is missing"), (7, 1.0, "does not match the checkpoint")]:
      bad = state.replace(step=state.step + step)
      bad = bad.replace(seeds=bad.seeds.replace(obs=bad.seeds.obs + obs_shift))
      out = again.after_restore(bad, checkpoints)
      line = capsys.readouterr().out.strip()
      assert len(line.splitlines()) == 1 and reason in line, line
      fresh = gym_host.make_vector_env("CartPole-v1", 8)
      expected, _ = fresh.reset(seed=runner.config.train.seed + step)
      fresh.close()
      np.testing.assert_array_equal(jax.device_get(out.seeds.obs)[0], expected)  # fresh episodes
  finally:
    runner.close()
    again.close()


def test_atari_snapshot_steps_identically_sticky_actions_included():
  envs = gym_host.make_vector_env("ALE/Pong-v5", 2, max_episode_steps=30)  # short episodes: autoresets
  envs.reset(seed=3)
  rng = np.random.default_rng(0)
  for action in rng.integers(0, 6, (45, 2)):
    envs.step(action)
  copy = gym_host.from_snapshot(gym_host.snapshot(envs))
  ends = 0
  try:
    for action in rng.integers(0, 6, (150, 2)):
      a, b = envs.step(action), copy.step(action)
      for x, y in zip(a[:4], b[:4]):  # observation, reward, terminated, truncated
        np.testing.assert_array_equal(x, y)
      ends += int((a[2] | a[3]).sum())
  finally:
    envs.close()
    copy.close()
  assert ends >= 8  # the copies went through several resets, not just one episode


class _Rebuilt(gym.Env, gym.utils.EzPickle):
  """An env that pickles as its constructor arguments (like Box2D and MuJoCo envs)."""

  observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
  action_space = gym.spaces.Discrete(2)

  def __init__(self):
    gym.utils.EzPickle.__init__(self)

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    return np.zeros(1, np.float32), {}

  def step(self, action):
    return np.zeros(1, np.float32), 0.0, False, False, {}


def test_envs_that_rebuild_themselves_are_refused():
  gym.register("JaxdlTestRebuilt-v0", entry_point=_Rebuilt)
  try:
    envs = gym_host.make_vector_env("JaxdlTestRebuilt-v0", 2)
    with pytest.raises(gym_host.SnapshotError, match="_Rebuilt pickles by rebuilding itself"):
      gym_host.snapshot(envs)
    envs.close()
  finally:
    del gym.registry["JaxdlTestRebuilt-v0"]
