"""jaxdl installed from its wheel works from any directory, presets included."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib


def test_the_package_list_names_every_package_folder(repo_root):
  listed = set(tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
  folders = {".".join(p.parent.relative_to(repo_root).parts) for p in (repo_root / "jaxdl").rglob("__init__.py")}
  assert listed == folders | {"jaxdl.experiments"}, listed ^ (folders | {"jaxdl.experiments"})


def test_the_wheel_runs_presets_outside_the_checkout(repo_root, tmp_path):
  source, dist, site, elsewhere = (tmp_path / d for d in ("source", "dist", "site", "elsewhere"))
  elsewhere.mkdir()
  # Built from a copy of what the sdist holds: a build/ left in the checkout
  # could carry stale modules into the wheel.
  for name in ("jaxdl", "experiments"):
    shutil.copytree(repo_root / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(repo_root / name, source / name)
  pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
  subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
                 check=True, capture_output=True, timeout=300)
  (wheel,) = dist.glob("jaxdl-*.whl")
  # --target: the wheel alone, with the dev environment's packages underneath.
  subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                 check=True, capture_output=True, timeout=300)
  env = {k: v for k, v in os.environ.items() if k != "JAXDL_PRESETS"}
  env["PYTHONPATH"] = str(site)

  def jaxdl(*args):
    done = subprocess.run([str(site / "bin" / "jaxdl"), *args], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout

  where = subprocess.run([sys.executable, "-c", "import jaxdl; print(jaxdl.__file__)"], cwd=elsewhere,
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
  assert pathlib.Path(where).is_relative_to(site), where  # the wheel, not the checkout
  listed = dict(line.split(None, 1) for line in jaxdl("list").splitlines())
  assert {"digits_mlp", "charlm_transformer", "gan_ring8", "dqn_cartpole"} <= set(listed)
  assert not any(name.startswith("_") for name in listed)  # family bases are not presets
  # A preset built on a family base resolves from the installed copy too.
  assert json.loads(jaxdl("show", "mnist1d_gru"))["model"]["name"] == "gru"
  jaxdl("run", "digits_mlp", "--workdir", "run", "--set", "train.steps=20", "--set", "train.log_every=10")
  metrics = json.loads((elsewhere / "run" / "metrics.json").read_text())
  assert metrics["steps"] == 20 and 0.0 < metrics["test_accuracy"] <= 1.0
