"""Checkpoints: exact resume after SIGKILL, integrity, fallback, divergence."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import checkpoint, cli, configs, models, optim, train
from jaxdl.loops import supervised
from jaxdl.utils.errors import JaxdlError
from cli_helpers import killed_after_save

# A small, fast run: digits MLP, checkpoints every 40 steps.
RUN = ["--set", "model.hidden=(64,)", "--set", "train.steps=200", "--set", "train.batch_size=64",
       "--set", "train.log_every=20", "--set", "train.eval_every=40",
       "--set", "checkpoint.every_steps=40", "--set", "checkpoint.max_to_keep=10"]
COMPARED = ("params_sha256", "test_accuracy", "test_loss", "train_loss", "train_accuracy", "steps")


def config_from(argv):
  config, _ = configs.load_preset(pathlib.Path(__file__).parent.parent / "experiments" / "digits_mlp.py")
  return configs.apply_overrides(config, [v for i, v in enumerate(argv) if argv[i - 1] == "--set"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run every interrupted one must reproduce."""
  workdir = tmp_path_factory.mktemp("reference")
  _, metrics = supervised.train_and_evaluate(config_from(RUN), workdir)
  return metrics


def same_result(workdir, reference):
  final = json.loads((workdir / "metrics.json").read_text())
  for key in COMPARED:
    assert final[key] == reference[key], key


def jaxdl_cmd(workdir, *extra):
  return [sys.executable, "-m", "jaxdl", "run", "digits_mlp", "--workdir", str(workdir), *RUN, *extra]


def test_round_trip_is_exact(tmp_path):
  model = models.get_model("cnn", 10, features=(4,), hidden=(8,), use_batchnorm=True)
  tx = optim.make_optimizer("adamw", optim.make_schedule("cosine", 1e-3, 10), weight_decay=1e-4, clip_norm=1.0)
  state = train.create_train_state(model, tx, jax.random.PRNGKey(3), jnp.zeros((2, 8, 8, 1)))
  step = jax.jit(lambda s, b: supervised.train_step(s, b, num_classes=10))
  state, _ = step(state, {"x": jnp.ones((4, 8, 8, 1)), "y": jnp.arange(4)})
  ckpt = checkpoint.Checkpointer(tmp_path / "c")
  ckpt.save(1, state)
  ckpt.close()
  fresh = train.create_train_state(model, tx, jax.random.PRNGKey(9), jnp.zeros((2, 8, 8, 1)))
  restored, at = checkpoint.Checkpointer(tmp_path / "c").restore_latest(fresh)
  assert at == 1
  assert int(restored.step) == 1
  for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state)):
    np.testing.assert_array_equal(a, b)
  assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)


def test_structure_mismatch_lists_the_paths(tmp_path):
  def state_of(hidden):
    model = models.get_model("mlp", 10, hidden=hidden)
    return train.create_train_state(model, optim.make_optimizer("sgd", 0.1), jax.random.PRNGKey(0),
                                         jnp.zeros((2, 8, 8, 1)))
  ckpt = checkpoint.Checkpointer(tmp_path / "c")
  ckpt.save(5, state_of((16,)))
  ckpt.close()
  with pytest.raises(JaxdlError) as info:
    checkpoint.Checkpointer(tmp_path / "c").restore_latest(state_of((16, 8)))
  message = str(info.value)
  assert "\n" not in message and "step 5" in message
  assert "params.Dense_0.kernel" not in message  # same shape: not a difference
  assert "params.Dense_1.kernel (checkpoint (16, 10), model (16, 8))" in message
  assert "params.Dense_2.kernel (not in checkpoint)" in message


def test_partial_restore_for_a_new_head(tmp_path):
  body = models.get_model("mlp", 10, hidden=(16,))
  state = train.create_train_state(body, optim.make_optimizer("sgd", 0.1), jax.random.PRNGKey(0),
                                        jnp.zeros((2, 8, 8, 1)))
  ckpt = checkpoint.Checkpointer(tmp_path / "c")
  ckpt.save(3, state)
  ckpt.close()
  new = models.get_model("mlp", 4, hidden=(16,)).init(jax.random.PRNGKey(1), jnp.zeros((2, 8, 8, 1)),
                                                      train=False)["params"]
  merged, restored = checkpoint.restore_params(tmp_path / "c", new, exclude=("Dense_1.*",))
  assert restored == ["Dense_0.bias", "Dense_0.kernel"]
  np.testing.assert_array_equal(merged["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"])
  np.testing.assert_array_equal(merged["Dense_1"]["kernel"], new["Dense_1"]["kernel"])
  with pytest.raises(JaxdlError, match="Dense_1.kernel"):
    checkpoint.restore_params(tmp_path / "c", new)  # the head's shape differs


def _wait_for(path, proc, timeout=120):
  t = time.time()
  while not path.exists():
    assert proc.poll() is None, "the run ended before it could be killed"
    assert time.time() - t < timeout
    time.sleep(0.02)


def test_sigkill_then_same_command_resumes_exactly(tmp_path, reference):
  workdir = tmp_path / "run"
  slow = ["--set", "train.steps=200"]  # same run; the kill lands wherever it lands
  proc = subprocess.Popen(jaxdl_cmd(workdir, *slow), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
  _wait_for(workdir / "checkpoints" / "40", proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / "metrics.json").exists()
  done = subprocess.run(jaxdl_cmd(workdir), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert "jaxdl: resuming from step" in done.stdout
  same_result(workdir, reference)
  # The log has each step once: records after the restored step were dropped.
  steps = [json.loads(l)["step"] for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert steps == sorted(set(steps)) and steps[-1] == 200


def test_kill_during_an_async_save_resumes_exactly(tmp_path, reference):
  workdir = tmp_path / "run"
  killed = subprocess.run(killed_after_save(jaxdl_cmd(workdir), 120), capture_output=True, text=True,
                          timeout=300)
  assert killed.returncode == -signal.SIGKILL
  done = subprocess.run(jaxdl_cmd(workdir), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  same_result(workdir, reference)


def _damage(step_dir: pathlib.Path, kind: str):
  files = sorted((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  biggest = files[-1]  # the array data
  if kind == "deleted":
    biggest.unlink()
  elif kind == "truncated":
    data = biggest.read_bytes()
    biggest.write_bytes(data[: len(data) // 2])
  elif kind == "overwritten":
    data = bytearray(biggest.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes(16)  # same length, bytes zeroed in the middle
    biggest.write_bytes(bytes(data))
  elif kind == "metadata":
    (step_dir / "_CHECKPOINT_METADATA").unlink()


@pytest.mark.parametrize("kind", ["deleted", "truncated", "overwritten", "metadata"])
def test_damaged_latest_falls_back_and_completes_identically(tmp_path, reference, capsys, kind):
  workdir = tmp_path / "run"
  assert cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN]) == 0
  _damage(workdir / "checkpoints" / "200", kind)
  (workdir / "metrics.json").unlink()
  capsys.readouterr()
  assert cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN]) == 0
  out = capsys.readouterr().out
  notice = [l for l in out.splitlines() if l.startswith("jaxdl: checkpoint at step")]
  assert len(notice) == 1 and "step 200" in notice[0]
  assert "resuming from step 160" in out
  same_result(workdir, reference)
  # The damaged checkpoint is kept, moved aside with the reason.
  assert (workdir / "checkpoints_damaged" / "200").is_dir()
  assert (workdir / "checkpoints_damaged" / "200.reason.txt").read_text().strip()


def test_overwritten_bytes_are_caught_by_our_checksum(tmp_path):
  # Write raw (uncompressed) data and flip bytes inside an array: Orbax alone
  # would restore the wrong values silently.
  state = {"w": np.arange(4096, dtype=np.float32)}
  ckpt = checkpoint.Checkpointer(tmp_path / "c")
  ckpt.save(1, state)
  ckpt.close()
  flat = checkpoint.to_host(state)
  restored = checkpoint.Checkpointer(tmp_path / "c").restore_flat(1, flat)
  np.testing.assert_array_equal(restored["w"], state["w"])
  saved = checkpoint.Checkpointer(tmp_path / "c").read_manifest(1)
  saved["w"]["sha256"] = "0" * 64
  with pytest.raises(checkpoint.CheckpointDamaged, match="w fails its SHA-256"):
    c = checkpoint.Checkpointer(tmp_path / "c")
    c.read_manifest = lambda step: saved
    c.restore_flat(1, flat)


def test_config_change_that_alters_results_is_refused(tmp_path, capsys):
  workdir = tmp_path / "run"
  assert cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN, "--set", "train.steps=40"]) == 0
  before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  capsys.readouterr()
  code = cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN, "--set", "train.seed=3",
                   "--set", "optim.learning_rate=0.1"])
  err = capsys.readouterr().err
  assert code == 2 and len(err.strip().splitlines()) == 1
  assert "optim.learning_rate" in err and "train.seed" in err and "train.steps" not in err
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before
  # More steps would re-stretch digits_mlp's cosine schedule: refused, nothing touched.
  code = cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN, "--set", "train.steps=80"])
  err = capsys.readouterr().err
  assert code == 2 and len(err.strip().splitlines()) == 1
  assert "train.steps=40" in err and "optim.schedule='cosine'" in err
  assert "--set optim.extend_from=40" in err  # the way to extend it
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_an_explicit_extension_keeps_the_schedule_then_goes_on_deterministically(tmp_path):
  every = ["--set", "checkpoint.every_steps=20"]
  short = config_from([*RUN, "--set", "train.steps=40", *every])
  longer = config_from([*RUN, "--set", "train.steps=80", "--set", "optim.extend_from=40",
                        "--set", "optim.extend_mode=restart", *every])
  a, b = tmp_path / "a", tmp_path / "b"
  supervised.train_and_evaluate(short, a)
  first = (a / "metrics.jsonl").read_text()
  _, extended = supervised.train_and_evaluate(longer, a)  # the 40-step run, extended to 80
  assert extended["resumed_from_step"] == 40 and extended["steps"] == 80
  lr = {r["step"]: r["train/learning_rate"] for r in map(json.loads, (a / "metrics.jsonl").read_text().splitlines())
        if "train/learning_rate" in r}
  assert lr[60] > 2 * lr[40] and lr[80] < lr[60]  # the warm restart: back near the peak, then down again
  # The same command in a fresh workdir: the same result, and its first 40 steps are the short run's.
  _, fresh = supervised.train_and_evaluate(longer, b)
  assert fresh["params_sha256"] == extended["params_sha256"] and fresh["resumed_from_step"] == 0
  assert (b / "metrics.jsonl").read_text().startswith(first)
  # Killed after its checkpoint at 60, the extended run resumes bit-identically.
  shutil.rmtree(b / "checkpoints" / "80")
  (b / "metrics.json").unlink()
  _, resumed = supervised.train_and_evaluate(longer, b)
  assert resumed["resumed_from_step"] == 60 and resumed["params_sha256"] == extended["params_sha256"]


@pytest.mark.parametrize("saved, current, allowed", [
    ((40, 0, ""), (80, 40, "restart"), True),  # extending the run it holds
    ((40, 0, ""), (80, 30, "restart"), False),  # extend_from is not that run's length
    ((40, 0, ""), (80, 0, ""), False),  # would re-stretch
    ((80, 40, "constant"), (120, 40, "constant"), True),  # a constant tail goes on at any length
    ((80, 40, "restart"), (120, 40, "restart"), False),  # would re-stretch the restart
    ((80, 40, "restart"), (80, 40, "constant"), False),
    ((80, 40, "restart"), (40, 0, ""), False),
])
def test_which_extensions_a_workdir_accepts(tmp_path, saved, current, allowed):
  from jaxdl.train import workdir as workdir_lib

  def config(steps, first, mode):
    return {"loop": "supervised", "train": {"steps": steps},
            "optim": {"schedule": "cosine", "extend_from": first, "extend_mode": mode or "constant"}}

  (tmp_path / "config.json").write_text(json.dumps(config(*saved)))
  if allowed:
    assert workdir_lib.check(tmp_path, config(*current), resume=True)
  else:
    with pytest.raises(JaxdlError, match=f"holds a.*train.steps={saved[0]}"):
      workdir_lib.check(tmp_path, config(*current), resume=True)


def test_a_constant_schedule_extends_on_resume(tmp_path, capsys):
  workdir, constant = tmp_path / "run", ["--set", "optim.schedule=constant"]
  assert cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN, *constant, "--set", "train.steps=40"]) == 0
  capsys.readouterr()
  # More steps is harmless here: it resumes and continues.
  assert cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN, *constant, "--set", "train.steps=80"]) == 0
  assert json.loads((workdir / "metrics.json").read_text())["steps"] == 80
  assert "resuming from step 40" in capsys.readouterr().out


def test_a_second_process_on_a_live_workdir_is_refused(tmp_path):
  import fcntl
  workdir = tmp_path / "run"
  workdir.mkdir()
  with open(workdir / ".lock", "w") as held:  # a live run holds the lock
    fcntl.flock(held, fcntl.LOCK_EX)
    held.write("pid 4242 on somehost\n")
    held.flush()
    done = subprocess.run(jaxdl_cmd(workdir), capture_output=True, text=True, timeout=300)
  assert done.returncode == 2, done.stderr
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and "in use by a live run (pid 4242 on somehost)" in lines[0]
  assert sorted(p.name for p in workdir.iterdir()) == [".lock"]
  # Once that process is gone (its flock released with it), the same command runs.
  done = subprocess.run(jaxdl_cmd(workdir, "--set", "train.steps=40"), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]


def test_resume_false_refuses_a_non_empty_workdir(tmp_path, capsys):
  workdir = tmp_path / "run"
  assert cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN, "--set", "train.steps=40"]) == 0
  capsys.readouterr()
  code = cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN, "--set", "checkpoint.resume=false"])
  err = capsys.readouterr().err
  assert code == 2 and str(workdir) in err and "not empty" in err


def test_nan_halt_stops_names_the_parameter_and_keeps_the_good_checkpoint(tmp_path, capsys):
  workdir = tmp_path / "run"
  # The learning rate jumps from 1e-3 to 1e29 at step 100 (a step schedule
  # with a factor of 1e32): the run diverges right after the checkpoint at 80.
  code = cli.main(["run", "digits_mlp", "--workdir", str(workdir), *RUN,
                   "--set", "optim.schedule=step", "--set", "optim.boundaries=(0.5,)",
                   "--set", "optim.decay_factor=1e32"])
  err = capsys.readouterr().err
  assert code == 3, err
  lines = [l for l in err.splitlines() if l.startswith("jaxdl: error:")]  # the rest is the progress bar
  assert len(lines) == 1 and "Traceback" not in err
  assert "non-finite" in lines[0] and "params." in lines[0] and "last good checkpoint: step 80" in lines[0]
  assert "step 10" in lines[0]  # step 100 or 101
  kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert kept == [40, 80]
  assert not (workdir / "metrics.json").exists()


def test_nan_skip_drops_updates_and_goes_on(tmp_path):
  config = config_from(RUN)
  config.optim.learning_rate = 1e30
  config.train.nan_policy = "skip"
  config.train.steps = 40
  state, metrics = supervised.train_and_evaluate(config, tmp_path)
  assert metrics["skipped_steps"] > 0 and metrics["steps"] == 40
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(state.params))


def test_keep_best_keeps_the_step_with_the_best_metric(tmp_path):
  config = config_from(RUN)
  config.checkpoint.keep_best = "test/accuracy"
  config.train.steps = 120
  supervised.train_and_evaluate(config, tmp_path)
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evals = [(r["test/accuracy"], -r["step"]) for r in records if "test/accuracy" in r]
  best_step = -max(evals)[1]  # the earliest step reaching the best accuracy
  kept = [int(p.name) for p in (tmp_path / "checkpoints_best").iterdir() if p.name.isdigit()]
  assert len(kept) == 1
  best_acc = max(evals)[0]
  assert [a for a, s in evals if -s == kept[0]] == [best_acc]
  assert kept[0] in {-s for a, s in evals if a == best_acc} and best_step <= kept[0]


def test_an_evaluation_between_checkpoints_can_be_the_best_and_a_resume_offers_it_again(tmp_path):
  def state(v):
    return {"w": np.full(3, v, np.float32)}

  def best_by_bpc():
    return checkpoint.Checkpointer(tmp_path / "c", best_metric="test/bpc", best_mode="min", log=lambda _: None)

  ckpt = best_by_bpc()
  ckpt.save(10, state(10), metrics={"test/bpc": 3.0})
  ckpt.offer_best(15, state(15), {"test/bpc": 2.0})  # an evaluation between checkpoints
  ckpt.offer_best(16, state(16), {"train/loss": 0.1})  # no validation metric: nothing offered
  ckpt.save(20, state(20), metrics={"test/bpc": 2.5})
  ckpt.close()
  assert ckpt.best() == (15, 2.0) and ckpt.steps() == [10, 20]
  # Resumed from step 10, a run evaluates step 15 again and offers it again: it stays as it was.
  again = best_by_bpc()
  again.offer_best(15, state(15), {"test/bpc": 2.0})
  again.offer_best(18, state(18), {"test/bpc": 2.2})
  again.close()
  assert again.best() == (15, 2.0)
  restored = checkpoint.Checkpointer(again.best_directory).restore(15, state(0))
  np.testing.assert_array_equal(restored["w"], state(15)["w"])


def test_a_key_only_the_saved_config_has_does_not_block_resume():
  from jaxdl.train.workdir import config_differences
  current = {"loop": "lm", "train": {"seed": 0, "steps": 10}, "model": {"name": "lstm_lm"}}
  # An LM run started before its schema dropped the classifier's keys it never read.
  saved = {**current, "augment": {"shift": 0}, "train": {"seed": 0, "steps": 5, "label_smoothing": 0.0}}
  assert config_differences(saved, current) == []
  # A key the current loop reads is compared, whether the saved run had it or not.
  assert config_differences(saved, {**current, "data": {"seq_len": 64}}) == ["data.seq_len"]
  assert config_differences(saved, {**current, "train": {"seed": 1, "steps": 10}}) == ["train.seed"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_saves_first_and_the_same_command_resumes_exactly(tmp_path, reference, sig):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(jaxdl_cmd(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _wait_for(workdir / "checkpoints" / "40", proc)
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 128 + sig, err[-2000:]
  lines = [line for line in err.strip().splitlines() if line.startswith("jaxdl:")]
  assert len(lines) == 1 and f"stopped by {signal.Signals(sig).name} at step" in lines[0], err[-2000:]
  assert "Traceback" not in err
  at = int(lines[0].split("at step ")[1].split()[0])
  assert 40 <= at < 200 and (workdir / "checkpoints" / str(at)).is_dir()  # saved where it stopped
  assert not (workdir / "metrics.json").exists()
  done = subprocess.run(jaxdl_cmd(workdir), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert f"jaxdl: resuming from step {at}" in done.stdout
  same_result(workdir, reference)


def test_only_process_0_moves_a_damaged_checkpoint_and_every_process_falls_back(tmp_path, monkeypatch):
  ckpt = checkpoint.Checkpointer(tmp_path / "c", async_save=False)
  for step in (1, 2):
    ckpt.save(step, {"w": np.full(4, step, np.float32)})
  ckpt.close()
  (tmp_path / "c" / "2" / "state" / "manifest.ocdbt").unlink()
  monkeypatch.setattr(jax, "process_index", lambda: 1)  # another process of the job: it must not move it
  restored, at = checkpoint.Checkpointer(tmp_path / "c", log=lambda _: None).restore_latest({"w": np.zeros(4, np.float32)})
  assert at == 1 and restored["w"][0] == 1
  assert (tmp_path / "c" / "2").is_dir() and not (tmp_path / "c_damaged" / "2").exists()
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  _, at = checkpoint.Checkpointer(tmp_path / "c", log=lambda _: None).restore_latest({"w": np.zeros(4, np.float32)})
  assert at == 1 and (tmp_path / "c_damaged" / "2").is_dir() and not (tmp_path / "c" / "2").exists()
