"""The simclr loop: NT-Xent against its definition, the views, a pure and sharding-blind step, learning, bad input."""

import json
import pathlib
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli
from jaxdl import configs, data
from jaxdl.loops import simclr
from jaxdl.train import parallel
from jaxdl.utils.errors import JaxdlError

REPO = pathlib.Path(__file__).resolve().parents[2]
# Jitted: one compile per shape instead of one per operation.
nt_xent = jax.jit(simclr.nt_xent, static_argnums=2)
contrastive_accuracy = jax.jit(simclr.contrastive_accuracy)


def preset(name, *overrides):
  config, _ = configs.load_preset(REPO / "experiments" / f"{name}.py")
  return configs.apply_overrides(config, overrides)


# A shrunk simclr_digits: a narrower CNN, fewer and smaller batches, a shorter probe.
SHRUNK = ("train.steps=40", "train.batch_size=128", "train.eval_every=20", "train.log_every=10",
          "optim.warmup_steps=5", "model.features=(16, 32)", "model.hidden=(64,)", "simclr.proj_hidden=(64,)",
          "simclr.proj_dim=32", "probe.steps=100", "checkpoint.every_steps=20")


# ------------------------------------------------------------------- NT-Xent --


def nt_xent_numpy(z1, z2, tau):
  """NT-Xent written out term by term, as Chen et al. (2020) eq. 1 and the loss of their algorithm 1."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2, n = len(z), len(z1)
  total = 0.0
  for i in range(n2):
    positive = (i + n) % n2
    numerator = np.exp(z[i] @ z[positive] / tau)
    denominator = sum(np.exp(z[i] @ z[k] / tau) for k in range(n2) if k != i)
    total += -np.log(numerator / denominator)
  return total / n2


@pytest.mark.parametrize("n, d, tau", [(2, 3, 1.0), (5, 4, 0.5), (7, 16, 0.1)])
def test_nt_xent_against_a_direct_numpy_computation(n, d, tau):
  rng = np.random.default_rng(n)
  z1, z2 = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
  got = float(nt_xent(jnp.asarray(z1), jnp.asarray(z2), tau))
  np.testing.assert_allclose(got, nt_xent_numpy(z1, z2, tau), rtol=2e-5)
  # Only directions count: the embeddings are normalised first.
  np.testing.assert_allclose(float(nt_xent(jnp.asarray(3 * z1), jnp.asarray(0.5 * z2), tau)), got, rtol=1e-5)


def test_nt_xent_is_smallest_when_views_agree_and_images_differ():
  eye = jnp.eye(4, dtype=jnp.float32)
  # Each view identical to its pair and orthogonal to the others: the positive wins every row.
  agree = float(nt_xent(eye, eye, 0.1))
  swapped = float(nt_xent(eye, eye[::-1], 0.1))
  assert agree < 0.01 < swapped
  assert float(contrastive_accuracy(eye, eye)) == 1.0
  assert float(contrastive_accuracy(eye, eye[::-1])) == 0.0
  # A uniform guess among the 2N - 1 others: all embeddings equal gives log(2N - 1).
  same = jnp.ones((4, 3), jnp.float32)
  np.testing.assert_allclose(float(nt_xent(same, same, 0.5)), np.log(7), rtol=1e-6)


# --------------------------------------------------------------------- views --


def test_two_views_differ_and_keep_the_shape():
  x = jnp.asarray(data.load_dataset("digits").x_train[:32])  # (32, 8, 8, 1)
  a = preset("simclr_digits").augment
  view = simclr.make_views(rotate=a.rotate, zoom=a.zoom, translate=a.translate, cutout=a.cutout,
                           brightness=a.brightness, noise=a.noise)
  assert a.cutout and a.rotate and a.noise  # the preset's views use every kind of transformation
  v1, v2 = jax.jit(lambda k, x: simclr.make_pair(view, k, x))(jax.random.PRNGKey(0), x)
  chex.assert_shape((v1, v2), x.shape)
  chex.assert_type((v1, v2), jnp.float32)
  chex.assert_tree_all_finite((v1, v2))
  x, v1, v2 = np.asarray(x), np.asarray(v1), np.asarray(v2)
  per_example = lambda a, b: np.abs(a - b).reshape(len(x), -1).max(1)
  assert np.all(per_example(v1, v2) > 0.05) and np.all(per_example(v1, x) > 0.05)
  # Still the same digit, roughly: a view stays closer to its image than to another image.
  assert np.mean((v1 - x) ** 2) < np.mean((v1 - np.roll(x, 1, axis=0)) ** 2)
  # Without options a view is the image itself.
  np.testing.assert_array_equal(simclr.make_views()(jax.random.PRNGKey(1), x), x)


def test_views_of_signals_and_the_refusals():
  signals = jnp.ones((4, 40, 1), jnp.float32)
  out = jax.jit(simclr.make_views(zoom=0.2, translate=3.0, cutout=5))(jax.random.PRNGKey(0), signals)
  chex.assert_shape(out, signals.shape)
  assert float(jnp.min(out)) == 0.0  # the cutout segment
  with pytest.raises(JaxdlError, match="augment.rotate"):
    jax.eval_shape(simclr.make_views(rotate=10.0), jax.random.PRNGKey(0), signals)
  with pytest.raises(JaxdlError, match="images"):
    jax.eval_shape(simclr.make_views(noise=0.1), jax.random.PRNGKey(0), jnp.ones((4, 64)))


# ---------------------------------------------------------------------- step --


def tiny_task():
  """A SimCLR task small enough to compile in a moment: an MLP encoder with BatchNorm, noisy views."""
  config = simclr.default_config()
  config.model.name = "mlp"
  with config.model.unlocked():
    config.model.hidden = (16,)
    config.model.use_batchnorm = True
  configs.apply_overrides(config, ["train.batch_size=16", "simclr.proj_hidden=(16,)", "simclr.proj_dim=8",
                                   "augment.rotate=0", "augment.zoom=0", "augment.translate=0"])
  return simclr.SimCLRTask(config)


def test_the_step_is_pure_and_the_same_on_one_device_and_eight():
  eight = tiny_task()
  assert eight.mesh.devices.size == 8
  x = eight.dataset.x_train[:16]
  step = jax.jit(eight.step)
  sharded = parallel.put({"x": x}, parallel.batch_sharded(eight.mesh))
  s1, m1 = step(eight.state, sharded)
  s2, m2 = step(eight.state, sharded)
  chex.assert_trees_all_equal((s1.params, s1.batch_stats, m1), (s2.params, s2.batch_stats, m2))
  assert int(s1.step) == 1 and np.isfinite(float(m1["loss"]))
  # The next step draws other views: another loss on the same images.
  _, m_next = step(s1.replace(params=eight.state.params, batch_stats=eight.state.batch_stats), sharded)
  assert float(m_next["loss"]) != float(m1["loss"])
  # NT-Xent and BatchNorm span the global batch: one device computes what eight do.
  one = jax.devices()[0]
  s_one, m_one = step(jax.device_put(jax.device_get(eight.state), one), jax.device_put({"x": x}, one))
  for key in ("loss", "contrastive_accuracy", "grad_norm"):
    np.testing.assert_allclose(float(m_one[key]), float(m1[key]), rtol=1e-5)
  chex.assert_trees_all_close(jax.device_get(s_one.params), jax.device_get(s1.params), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ learning --


@pytest.fixture(scope="module")
def shrunk_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("simclr_digits")
  _, metrics = simclr.train_and_evaluate(preset("simclr_digits", *SHRUNK), workdir)
  return workdir, metrics


def test_simclr_digits_learns_a_representation_on_a_shrunk_config(shrunk_run):
  workdir, m = shrunk_run
  k = "_10_per_class"
  # The point of the preset: with 10 labels per class the pretrained features beat a random encoder's.
  assert m["linear_probe_accuracy" + k] > m["random_probe_accuracy" + k] + 0.03, m
  assert m["linear_probe_accuracy"] > 0.9 and m["pixel_probe_accuracy"] > 0.9, m  # the probe itself works
  assert m["knn_accuracy"] > 0.85 and m["train_loss"] < np.log(2 * 128 - 1), m  # below a uniform guess
  for key in ("random_probe_accuracy", "pixel_probe_accuracy" + k, "wall_seconds", "params_sha256", "seed"):
    assert key in m
  assert json.loads((workdir / "metrics.json").read_text())["params_sha256"] == m["params_sha256"]
  for png in ("learning_curves.png", "probes.png", "features_pca.png"):
    assert (workdir / png).stat().st_size > 10_000, png
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "test/knn_accuracy" in r] == [20, 40]


def test_a_resumed_run_ends_where_the_uninterrupted_one_did(shrunk_run, tmp_path):
  workdir, m = shrunk_run
  # A run stopped after checkpoint 20: its workdir without the last checkpoint and the final outputs.
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns(".lock"))
  shutil.rmtree(copy / "checkpoints" / "40")
  (copy / "metrics.json").unlink()
  _, resumed = simclr.train_and_evaluate(preset("simclr_digits", *SHRUNK), copy)
  assert resumed["resumed_from_step"] == 20
  for key in ("params_sha256", "linear_probe_accuracy_10_per_class", "knn_accuracy", "train_loss"):
    assert resumed[key] == m[key], key


# ----------------------------------------------------------------- bad input --


@pytest.mark.parametrize("item, words", [
    ("simclr.temperature=0", ("simclr.temperature",)),
    ("simclr.temperature=-0.5", ("simclr.temperature",)),
    ("train.batch_size=1", ("train.batch_size", "NT-Xent")),
    ("simclr.proj_dim=0", ("simclr.proj_dim",)),
    ("augment.zoom=1.0", ("augment.zoom",)),
    ("augment.cutout=-1", ("augment.cutout",)),
    ("probe.l2=-1.0", ("probe.l2",)),
    ("probe.labels_per_class=0", ("probe.labels_per_class",)),
])
def test_bad_values_are_one_line_errors(item, words):
  with pytest.raises(JaxdlError) as info:
    simclr.validate(preset("simclr_digits", item))
  assert "\n" not in str(info.value)
  for word in words:
    assert word in str(info.value)


def test_a_key_the_loop_does_not_read_is_refused():
  config = preset("simclr_digits")
  with config.unlocked():
    config.augment.shift = 1  # the supervised loop's key
  with pytest.raises(JaxdlError, match="augment.shift is not a key of the 'simclr' loop"):
    simclr.validate(config)


@pytest.mark.parametrize("item, words", [
    ("model.name=lstm", ("lstm", "features", "cnn")),
    ("train.batch_size=12", ("train.batch_size", "divisible")),
    ("probe.labels_per_class=1000", ("class", "1000")),
])
def test_bad_input_found_when_building_or_probing(item, words, capsys, tmp_path):
  code, _, err = run_cli(capsys, "run", "simclr_digits", "--workdir", str(tmp_path / "w"), "--set", item)
  assert_one_line_error(code, err, *words)
  assert not (tmp_path / "w").exists()  # refused before anything was written
