"""The command line: listing, running, and one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, files_of, run_cli, run_jaxdl
from jaxdl import cli
from jaxdl.data import files

PRESETS = ["digits_mlp", "digits_cnn", "mnist1d_mlp", "mnist1d_cnn", "mnist1d_resnet", "mnist1d_tcn"]
TINY = ["--set", "train.steps=8", "--set", "train.log_every=4", "--set", "train.batch_size=64"]


def test_list_names_every_preset_with_a_description(capsys):
  code, out, _ = run_cli(capsys, "list")
  assert code == 0
  rows = {line.split()[0]: line for line in out.strip().splitlines()}
  for name in PRESETS:
    assert name in rows
    assert len(rows[name].split(None, 1)[1]) > 10  # a real one-line description


def test_show_applies_overrides(capsys):
  code, out, _ = run_cli(capsys, "show", "digits_cnn", "--set", "optim.learning_rate=3e-4")
  assert code == 0
  assert json.loads(out)["optim"]["learning_rate"] == 3e-4


def test_run_writes_outputs(capsys, tmp_path):
  code, out, err = run_cli(capsys, "run", "digits_mlp", "--workdir", str(tmp_path), *TINY)
  assert code == 0, err
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["steps"] == 8
  assert "test_accuracy=" in out
  assert (tmp_path / "learning_curves.png").exists()
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 8


@pytest.mark.parametrize("argv, words", [
    (["run", "digits_cnnn"], ["unknown preset 'digits_cnnn'", "digits_cnn"]),
    (["run", "digits_mlp", "--set", "train.sed=1"], ["train.sed", "unknown key"]),
    (["run", "digits_mlp", "--set", "train.steps=many"], ["train.steps=many", "integer"]),
    (["run", "digits_mlp", "--set", "train.batch_size=60"], ["train.batch_size=60", "8 devices"]),
    (["run", "digits_mlp", "--set", "data.name=npz", "--set", "data.path=/nonexistent/x.npz"],
     ["/nonexistent/x.npz"]),
    (["run", "digits_mlp", "--set", "data.name=idx", "--set", "data.path=/nonexistent/dir"],
     ["/nonexistent/dir"]),
    (["run", "digits_mlp", "--set", "data.name=cifar10", "--set", "data.path=/nonexistent/c"],
     ["/nonexistent/c"]),
    (["run", "digits_mlp", "--set", "data.name=imagenet"], ["imagenet"]),
    (["run", "mnist1d_tcn", "--set", "data.name=digits"], ["tcn", "(8, 8, 1)"]),
    (["run", "digits_mlp", "--set", "model.activation=swishy"], ["swishy"]),
    (["frobnicate"], ["frobnicate"]),
])
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, words):
  if argv[0] == "run":
    argv = argv + ["--workdir", str(tmp_path / "w")]
  code, _, err = run_cli(capsys, *argv)
  assert_one_line_error(code, err, *words)


@pytest.mark.parametrize("problem, words", [
    ("missing", ["y_test"]),
    ("lengths", ["x_train", "y_train", "100", "99"]),
    ("labels", ["label", "-1"]),
    ("nan", ["x_train", "finite"]),
])
def test_bad_npz_is_one_line_exit_2_and_loses_nothing(capsys, tmp_path, problem, words):
  rng = np.random.default_rng(0)
  arrays = {"x_train": rng.normal(size=(100, 6)).astype(np.float32), "y_train": rng.integers(0, 3, 100),
            "x_test": rng.normal(size=(20, 6)).astype(np.float32), "y_test": rng.integers(0, 3, 20)}
  if problem == "missing":
    del arrays["y_test"]
  elif problem == "lengths":
    arrays["y_train"] = arrays["y_train"][:99]
  elif problem == "labels":
    arrays["y_train"][5] = -1
  elif problem == "nan":
    arrays["x_train"][3, 2] = np.nan
  path = tmp_path / "data.npz"
  np.savez(path, **arrays)
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "metrics.json").write_text('{"test_accuracy": 0.5}')
  code, _, err = run_cli(capsys, "run", "digits_mlp", "--workdir", str(workdir),
                         "--set", "data.name=npz", "--set", f"data.path={path}")
  assert_one_line_error(code, err, str(path), *words)
  # Earlier outputs survive bad input untouched, and nothing new is written.
  assert sorted(p.name for p in workdir.iterdir()) == ["metrics.json"]
  assert (workdir / "metrics.json").read_text() == '{"test_accuracy": 0.5}'


def test_npz_dataset_trains_end_to_end(capsys, tmp_path):
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(3, 6)) * 3
  y = rng.integers(0, 3, 400)
  x = (centers[y] + rng.normal(size=(400, 6))).astype(np.float32)
  files.save_npz(tmp_path / "blobs.npz", x[:320], y[:320], x[320:], y[320:])
  code, _, err = run_cli(capsys, "run", "digits_mlp", "--workdir", str(tmp_path / "run"),
                         "--set", "data.name=npz", "--set", f"data.path={tmp_path / 'blobs.npz'}",
                         "--set", "train.steps=60", "--set", "train.batch_size=64",
                         "--set", "augment.shift=0")
  assert code == 0, err
  assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_accuracy"] > 0.9


def test_debug_shows_the_traceback(capsys):
  from jaxdl.utils.errors import JaxdlError
  with pytest.raises(JaxdlError, match="unknown preset"):
    cli.main(["run", "nope", "--debug"])


def test_python_dash_m_is_the_same_command(repo_root):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  ok = subprocess.run([sys.executable, "-m", "jaxdl", "list"], capture_output=True, text=True,
                      cwd=repo_root, env=env, timeout=120)
  assert ok.returncode == 0 and "digits_cnn" in ok.stdout
  bad = subprocess.run([sys.executable, "-m", "jaxdl", "run", "nope"], capture_output=True,
                       text=True, cwd=repo_root, env=env, timeout=120)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == ["jaxdl: error: unknown preset 'nope' (run 'jaxdl list' to see them)"]
  # `jaxdl list | head -1`: a reader that leaves early ends the listing quietly (SIGPIPE's 141), no error.
  piped = subprocess.Popen([sys.executable, "-m", "jaxdl", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           cwd=repo_root, env=env)
  piped.stdout.close()
  assert piped.wait(timeout=120) == 141 and piped.stderr.read() == b""
  piped.stderr.close()


def test_set_reaches_every_option_of_the_chosen_model(capsys, tmp_path):
  code, out, _ = run_cli(capsys, "show", "digits_cnn", "--set", "model.activation=gelu")
  assert code == 0 and json.loads(out)["model"]["activation"] == "gelu"  # a CNN option the preset leaves alone
  # Another model: its own options and defaults replace the CNN's (dropout, features, ...).
  code, out, _ = run_cli(capsys, "show", "digits_cnn", "--set", "model.name=resnet", "--set", "model.width=8")
  model = json.loads(out)["model"]
  assert code == 0 and model["name"] == "resnet" and model["width"] == 8 and "features" not in model
  code, _, err = run_cli(capsys, "run", "digits_cnn", "--workdir", str(tmp_path), "--set", "model.name=resnet1",
                         "--set", "optim.warmup_steps=2", *TINY)
  assert code == 0, err
  assert json.loads((tmp_path / "metrics.json").read_text())["model"] == "resnet1"
  code, _, err = run_cli(capsys, "show", "digits_cnn", "--set", "model.activationn=gelu")
  assert_one_line_error(code, err, "model.activationn", "model 'cnn' has no option", "activation")


def test_an_override_is_a_run_of_its_own_and_a_finished_run_is_not_run_again(capsys, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert run_cli(capsys, "run", "digits_mlp", *TINY)[0] == 0
  # A changed seed is another run in its own workdir, not a refusal of the first one's.
  argv = ["run", "digits_mlp", *TINY, "--set", "train.seed=1"]
  done = run_jaxdl(*argv, cwd=tmp_path)
  assert done.returncode == 0, done.stderr[-2000:]
  runs = sorted(p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.glob("runs/**/metrics.json"))
  seeded = "runs/digits_mlp/train.steps=8,train.log_every=4,train.batch_size=64,train.seed=1"
  assert runs == ["runs/digits_mlp/train.steps=8,train.log_every=4,train.batch_size=64", seeded]
  assert done.stdout.strip().splitlines()[-1].endswith(f"-> {seeded}/metrics.json")
  # The same command again: that run is finished. One line, exit 0, and every file as it was
  # (metrics.json, the plots, TensorBoard's events, the checkpoints).
  files = files_of(tmp_path / seeded)
  assert {"metrics.json", "learning_curves.png"} <= set(files) and any(f.startswith("tb/events.") for f in files)
  again = run_jaxdl(*argv, cwd=tmp_path)
  assert again.returncode == 0, again.stderr[-2000:]
  accuracy = json.loads(files["metrics.json"])["test_accuracy"]
  assert again.stdout.splitlines() == [f"jaxdl: the run in {seeded} already finished at step 8 "
                                       f"(test_accuracy={accuracy:.4g}); nothing to do (its outputs are unchanged)"]
  assert "Traceback" not in again.stderr and "error" not in again.stderr
  assert files_of(tmp_path / seeded) == files
