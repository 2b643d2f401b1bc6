"""The GAN loop: metrics, penalties, data parallelism, learning, resume, bad input."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdl
from cli_helpers import assert_one_line_error, killed_after_save, run_cli
from jaxdl import checkpoint, configs
from jaxdl.loops import gan
from jaxdl.data import toy2d
from jaxdl.models import gan as gan_models
from jaxdl.utils.errors import JaxdlError

REPO = pathlib.Path(__file__).resolve().parents[2]


def preset(name, *overrides):
  config, _ = configs.load_preset(REPO / "experiments" / f"{name}.py")
  return configs.apply_overrides(config, overrides)


# ------------------------------------------------------------------ metrics --


def test_ring8_has_eight_distinct_modes_and_grid25_twenty_five():
  ring, grid = toy2d.load_toy2d("ring8"), toy2d.load_toy2d("grid25")
  for mixture, k in ((ring, 8), (grid, 25)):
    d = np.linalg.norm(mixture.centers[:, None] - mixture.centers[None], axis=-1)
    assert mixture.num_modes == k and np.min(d + np.eye(k) * 99) > 0.7
  np.testing.assert_allclose(np.linalg.norm(ring.centers, axis=1), 1.0, rtol=1e-6)
  samples = np.asarray(ring.sample(jax.random.PRNGKey(0), 20000))
  # Every mode drawn about equally, with the stated spread.
  nearest = np.argmin(np.linalg.norm(samples[:, None] - ring.centers[None], axis=-1), axis=1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=8) / 20000, 1 / 8, atol=0.01)
  np.testing.assert_allclose((samples - ring.centers[nearest]).std(), 0.01, rtol=0.03)


def test_mode_metrics_on_hand_made_sample_sets():
  ring = toy2d.load_toy2d("ring8")
  centers = jnp.asarray(ring.centers)
  on_modes = jnp.repeat(centers, 10, axis=0) + 0.02  # 2.8 sigma away: still high quality
  m = gan.mode_metrics(on_modes, centers, ring.sigma)
  assert float(m["high_quality_fraction"]) == 1.0 and int(m["modes_covered"]) == 8
  np.testing.assert_array_equal(m["mode_counts"], np.full(8, 10))
  one_mode = jnp.repeat(centers[3:4], 50, axis=0)
  m = gan.mode_metrics(one_mode, centers, ring.sigma)
  assert float(m["high_quality_fraction"]) == 1.0 and int(m["modes_covered"]) == 1
  # 3.2 sigma off every mode: low quality, and covers nothing.
  off = jnp.repeat(centers, 2, axis=0) * (1 + 0.032)
  mixed = jnp.concatenate([off, one_mode[:16]])
  m = gan.mode_metrics(mixed, centers, ring.sigma)
  assert float(m["high_quality_fraction"]) == 0.5 and int(m["modes_covered"]) == 1
  # Real data scores as the 2-D Gaussian says: P(r < 3 sigma) = 1 - exp(-9/2).
  m = gan.mode_metrics(ring.sample(jax.random.PRNGKey(1), 20000), centers, ring.sigma)
  assert abs(float(m["high_quality_fraction"]) - (1 - np.exp(-4.5))) < 0.003
  assert int(m["modes_covered"]) == 8


def test_frechet_distance_against_the_definition():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(4000, 3)) @ rng.normal(size=(3, 3))
  assert abs(gan.frechet_distance(a, a)) < 1e-8
  shift = np.array([1.0, -2.0, 0.5])
  assert abs(gan.frechet_distance(a, a + shift) - shift @ shift) < 1e-8  # same covariance
  b = rng.normal(size=(3000, 3)) * np.array([1.0, 2.0, 0.5])
  from scipy import linalg
  ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb)
              - 2 * np.trace(linalg.sqrtm(ca @ cb).real))
  assert gan.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_losses_at_known_logits():
  zero = jnp.zeros(4)
  assert float(gan.discriminator_loss("non_saturating", zero, zero)) == pytest.approx(2 * np.log(2))
  assert float(gan.discriminator_loss("hinge", zero, zero)) == pytest.approx(2.0)
  assert float(gan.discriminator_loss("hinge", zero + 2, zero - 3)) == 0.0  # beyond the margins
  assert float(gan.discriminator_loss("wgan_gp", zero + 2, zero - 3)) == -5.0
  assert float(gan.generator_loss("non_saturating", zero)) == pytest.approx(np.log(2))
  assert float(gan.generator_loss("hinge", zero + 1.5)) == -1.5


def _finite_difference_grad(f, x, h=1e-3):
  """Central differences of a scalar f at each coordinate of x, in float64."""
  x = np.asarray(x, np.float64)
  grad = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    e = np.zeros_like(x)
    e[idx] = h
    grad[idx] = (f(x + e) - f(x - e)) / (2 * h)
  return grad


def test_gradient_penalties_match_finite_differences():
  # A smooth critic (softplus), so central differences are accurate.
  d = gan_models.MLPDiscriminator(hidden=(16, 16), activation="softplus")
  real = jax.random.normal(jax.random.PRNGKey(0), (6, 2))
  fake = jax.random.normal(jax.random.PRNGKey(1), (6, 2)) * 2
  params = d.init(jax.random.PRNGKey(2), real, train=False)
  d_fn = lambda x: d.apply(params, x, train=False)
  key = jax.random.PRNGKey(3)
  eps = jax.random.uniform(key, (6, 1))
  x_hat = eps * real + (1 - eps) * fake
  one = lambda i: (lambda x: float(d_fn(jnp.asarray(x, jnp.float32)[None])[0]))
  norms = np.array([np.linalg.norm(_finite_difference_grad(one(i), x_hat[i])) for i in range(6)])
  expected_gp = np.mean((norms - 1) ** 2)
  assert float(gan.gradient_penalty(d_fn, real, fake, key)) == pytest.approx(expected_gp, rel=2e-3)
  real_norms = np.array([np.linalg.norm(_finite_difference_grad(one(i), real[i])) for i in range(6)])
  assert float(gan.r1_penalty(d_fn, real)) == pytest.approx(np.mean(real_norms ** 2), rel=2e-3)


# -------------------------------------------------------------- parallelism --


@pytest.mark.parametrize("name,overrides", [
    ("gan_ring8", ["model.g_hidden=(32, 32)", "model.d_hidden=(32, 32)", "gan.n_critic=2"]),
    # BatchNorm in G (global statistics), spectral norm in D, WGAN-GP. (MLPs:
    # the DCGAN's compile on 8 devices costs minutes; its layers are tested
    # in tests/models/test_model_gan.py.)
    ("gan_digits", ["model.g_hidden=(32, 32)", "model.d_hidden=(32, 32)", "model.g_batchnorm=true",
                    "gan.spectral_norm=true", "gan.loss=wgan_gp"]),
])
def test_one_device_equals_eight_devices(name, overrides):
  results = {}
  for devices in (1, 8):
    config = preset(name, *overrides, f"train.num_devices={devices}", "train.batch_size=32")
    exp = gan.GANTask(config)
    assert exp.mesh.devices.size == devices
    state, metrics = exp.run_chunk(exp.state, np.int32(2))
    results[devices] = jax.device_get((state, metrics))
  (s1, m1), (s8, m8) = results[1], results[8]
  assert int(s1.step) == int(s8.step) == 2
  # Reductions split over 8 devices round differently: equal to float32 noise.
  # By leaf path: the states' static fields (apply_fn, tx) are distinct objects.
  by_path = lambda tree: {jax.tree_util.keystr(path): leaf
                          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
  chex.assert_trees_all_close(by_path(s1), by_path(s8), rtol=2e-4, atol=2e-5)
  keys = ("d_loss", "g_loss", "penalty")
  chex.assert_trees_all_close({k: m1[k] for k in keys}, {k: m8[k] for k in keys},
                              rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- bad input --


@pytest.mark.parametrize("setting,named", [
    ("gan.loss=least_squares", "gan.loss='least_squares'"),
    ("gan.n_critic=0", "gan.n_critic=0"),
    ("gan.latent_dim=0", "gan.latent_dim=0"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, setting, named):
  workdir = tmp_path / "run"
  code, _, err = run_cli(capsys, "run", "gan_ring8", "--workdir", str(workdir), "--set", setting)
  assert_one_line_error(code, err, named)
  assert not workdir.exists()


# ----------------------------------------------------------------- learning --

# The learning and resume runs use 2 of the 8 devices: still the sharded path
# (one device against eight is test_one_device_equals_eight_devices), and a
# small MLP's 1,200 steps run 2.6x faster with 4 device threads on 2 cores
# than with 16.
SHRUNK = {
    "gan_ring8": ["train.steps=1200", "train.eval_every=300", "model.g_hidden=(64, 64)",
                  "model.d_hidden=(64, 64)", "train.batch_size=128"],
    "gan_grid25": ["train.steps=1200", "train.eval_every=300", "model.g_hidden=(64, 64)",
                   "model.d_hidden=(64, 64)", "train.batch_size=128"],
    "gan_digits": ["train.steps=400", "train.eval_every=100", "model.g_hidden=(128, 128)",
                   "model.d_hidden=(128, 128)", "train.batch_size=64", "gan.num_eval_samples=500"],
}


def history(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", sorted(SHRUNK))
def test_each_preset_improves_its_metric(tmp_path, name):
  config = preset(name, *SHRUNK[name], "checkpoint.every_steps=0", "train.num_devices=2")
  _, final = gan.train_and_evaluate(config, tmp_path)
  evals = [r for r in history(tmp_path) if any(k.startswith("test/") for k in r)]
  first = evals[0]
  assert len(evals) == 4
  assert len(list((tmp_path / "samples").glob("step_*.png"))) == 4
  assert (tmp_path / "learning_curves.png").stat().st_size > 0
  if name == "gan_digits":
    assert final["confident_fraction"] > first["test/confident_fraction"]
    assert final["frechet_distance"] < 0.7 * first["test/frechet_distance"]
    assert final["frechet_distance_real"] < final["frechet_distance"]
    assert final["classifier_test_accuracy"] > 0.95
    assert sum(final[f"class_fraction_{k}"] for k in range(10)) == pytest.approx(1.0)
  else:
    num_modes = final["num_modes"]
    # Early samples are spread thin, over many modes at low quality: coverage may dip by a mode
    # as they sharpen (grid25 on an AMD EPYC: 21 at step 300, 20 at the end).
    assert final["modes_covered"] >= first["test/modes_covered"] - 1
    assert final["modes_covered"] >= 0.75 * num_modes
    # grid25's samples sharpen late (see the preset), so the short run asks less of it.
    gain = {"gan_ring8": 0.1, "gan_grid25": 0.005}[name]
    assert final["high_quality_fraction"] > first["test/high_quality_fraction"] + gain


# ------------------------------------------------------------------- resume --

RESUME = ["--set", "train.steps=120", "--set", "train.eval_every=60", "--set", "train.log_every=20",
          "--set", "checkpoint.every_steps=40", "--set", "model.g_hidden=(32, 32)",
          "--set", "model.d_hidden=(32, 32)", "--set", "train.batch_size=64", "--set", "train.num_devices=2"]


def test_kill_after_a_checkpoint_then_resume_is_bit_exact(tmp_path):
  config = preset("gan_ring8", *[v for i, v in enumerate(RESUME) if RESUME[i - 1] == "--set"])
  _, reference = gan.train_and_evaluate(config, tmp_path / "reference")
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "jaxdl", "run", "gan_ring8", "--workdir", str(workdir), *RESUME]
  killed = subprocess.run(killed_after_save(cmd, 80), capture_output=True, text=True, timeout=300)
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  assert not (workdir / "metrics.json").exists()
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  # The kill lands right after an asynchronous save starts: the run resumes
  # from step 80 if that save landed, else from the intact one at 40.
  assert "jaxdl: resuming from step" in done.stdout
  final = json.loads((workdir / "metrics.json").read_text())
  for key in ("params_sha256", "high_quality_fraction", "modes_covered", "d_loss", "g_loss", "steps"):
    assert final[key] == reference[key], key
  steps = [r["step"] for r in history(workdir)]
  assert steps == sorted(set(steps)) and steps[-1] == 120


# --------------------------------------------------------------- from Python --

OWN = ["train.steps=60", "train.eval_every=30", "train.log_every=30", "checkpoint.every_steps=30",
       "model.g_hidden=(32, 32)", "model.d_hidden=(32, 32)", "train.batch_size=64", "gan.num_eval_samples=256",
       "train.num_devices=1"]


def blobs(seed=0):
  """Points around (2, 2) and (-2, -2): a 2-D data set nobody ships."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(600, 2)) * 0.3 + rng.choice([-2.0, 2.0], size=(600, 1))
  return jaxdl.Dataset.from_arrays("blobs", x[:500], np.zeros(500), x[500:], np.zeros(100))


def test_arrays_in_memory_and_your_own_optimizers_run_the_whole_loop(tmp_path):
  config = preset("gan_ring8", *OWN)
  frozen = optax.sgd(0.0)  # the discriminator passed in never moves: proof that it is the one used
  state, final = gan.train_and_evaluate(config, tmp_path, data=blobs(0), g_tx=optax.adam(1e-3, b1=0.5),
                                        d_tx=frozen)
  halfway = checkpoint.Checkpointer(tmp_path / "checkpoints").restore(30, jax.device_get(state))
  chex.assert_trees_all_equal(jax.device_get(state.d_params), halfway.d_params)
  assert not np.array_equal(jax.device_get(state.g_params)["Dense_0"]["kernel"], halfway.g_params["Dense_0"]["kernel"])
  # Scored against the held-out points, on the raw values; the real splits' own distance is the floor.
  assert final["dataset"] == "blobs" and 0 <= final["frechet_distance_raw_real"] < final["frechet_distance_raw"]
  assert [r["step"] for r in history(tmp_path) if "test/frechet_distance_raw" in r] == [30, 60]
  assert json.loads((tmp_path / "config.json").read_text())["data"]["name"] == "blobs"
  assert json.loads((tmp_path / "data.json").read_text())["sha256"] == blobs(0).sha256
  assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_000030.png", "step_000060.png"]
  assert (tmp_path / "learning_curves.png").is_file() and (tmp_path / "checkpoints" / "60").is_dir()
  # Other arrays under the same name are refused on resume, before anything is touched.
  with pytest.raises(JaxdlError, match="not this data"):
    gan.train_and_evaluate(config, tmp_path, data=blobs(1), g_tx=optax.adam(1e-3, b1=0.5), d_tx=frozen)
  with pytest.raises(JaxdlError, match="g_tx must be an optax.GradientTransformation"):
    gan.GANTask(config, g_tx="adam")
  with pytest.raises(JaxdlError, match="must be a jaxdl.Dataset"):
    gan.GANTask(config, data=np.zeros((10, 2)))
