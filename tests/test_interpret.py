"""jaxdl.interpret and `jaxdl explain`: attributions with known answers, the sanity check, bad input."""

import functools
import json
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdl
from jaxdl import interpret, models
from jaxdl.models.conv import Conv
from jaxdl.models.layers import global_avg_pool
from jaxdl.utils.errors import JaxdlError
from cli_helpers import assert_one_line_error, run_cli

TINY = ["train.steps=300", "train.batch_size=64", "train.num_devices=1", "train.eval_every=0",
        "train.log_every=100", "checkpoint.every_steps=0", "optim.warmup_steps=10",
        "model.dropout=0.0", "model.features=(8, 16)", "model.hidden=(32,)"]


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
  """A small digits_cnn (BatchNorm, im2col convs on the CPU) trained for a few seconds, and its test data.

  notebooks/interpretability.ipynb trains the same config in quick mode: keep the two alike, and the
  notebook loads this run's compiled programs from the suite's XLA cache instead of compiling them again.
  """
  workdir = tmp_path_factory.mktemp("interpret") / "digits_cnn"
  config = jaxdl.apply_overrides(jaxdl.load_preset("digits_cnn")[0], TINY)
  _, metrics = jaxdl.train_and_evaluate(config, workdir)
  assert metrics["test_accuracy"] > 0.8  # trained: the sanity check below needs a model that learnt
  run = jaxdl.load_run(workdir)
  x, y = interpret.test_examples(run.config, workdir, 16)
  return workdir, run, jnp.asarray(x), y


class Mixer(nn.Module):
  """A tanh MLP: small, smooth, nonlinear, for Integrated Gradients' completeness."""

  @nn.compact
  def __call__(self, x, *, train):
    h = jnp.tanh(nn.Dense(16)(x.reshape(x.shape[0], -1)))
    return nn.Dense(3)(jax.nn.relu(nn.Dense(16)(h)) + h)


class TwoDetectors(nn.Module):
  """1x1 conv (two channels) -> global mean -> dense: logit c is the mean of channel c's map."""

  impl: str = "im2col"

  @nn.compact
  def __call__(self, x, *, train):
    return nn.Dense(2)(global_avg_pool(Conv(2, (1,) * (x.ndim - 2), impl=self.impl)(x)))


def _identity_variables(model, x):
  """TwoDetectors' variables with identity conv and dense: channel c of the input is class c's evidence."""
  variables = _init(model, x, train=False)
  params = jax.tree_util.tree_map(jnp.zeros_like, variables["params"])
  params["Conv_0"]["kernel"] = jnp.eye(2).reshape(params["Conv_0"]["kernel"].shape)
  params["Dense_0"]["kernel"] = jnp.eye(2)
  return {"params": params}


def _init(model, x, seed=0, **kwargs):
  """Jitted: an eager init compiles each initializer op on its own."""
  return jax.jit(lambda k, z: model.init(k, z, **kwargs))(jax.random.PRNGKey(seed), x)


def _batch(key, shape):
  return jax.random.uniform(jax.random.PRNGKey(key), shape)


def test_gradients_of_a_linear_model_are_its_weights_and_ig_is_exact():
  model = nn.Dense(4)
  x = _batch(0, (5, 6))
  variables = _init(model, x, 1)
  apply_fn = lambda v, z: model.apply(v, z)  # a plain apply_fn works as well as a module
  target = jnp.array([0, 1, 2, 3, 0])
  w = variables["params"]["kernel"]  # (6, 4)

  @jax.jit
  def all_three(v, z, t):  # one compile
    return (interpret.gradient(apply_fn, v, z, t), interpret.gradient_x_input(apply_fn, v, z, t),
            interpret.integrated_gradients(apply_fn, v, z, t, steps=3))

  grad, grad_x_input, ig = all_three(variables, x, target)
  np.testing.assert_allclose(grad, w[:, target].T, rtol=1e-6)
  np.testing.assert_allclose(grad_x_input, x * w[:, target].T, rtol=1e-6)
  np.testing.assert_allclose(ig.attributions, x * w[:, target].T, rtol=1e-5)  # any rule is exact on a line
  assert float(jnp.max(ig.completeness_error)) < 1e-5


def test_integrated_gradients_completeness_on_a_small_nonlinear_model():
  model, x = Mixer(), 3 * _batch(2, (8, 4, 3))
  variables = _init(model, x, 3, train=False)

  @jax.jit
  def run(v):  # one compile for every variant
    ig = functools.partial(interpret.integrated_gradients, model, v, x)
    logits = model.apply(v, x, train=False), model.apply(v, jnp.zeros_like(x), train=False)
    return (ig(), ig(steps=1), [ig(baseline=b, rule="gauss_legendre") for b in ("mean", "blur", 0.5 + 0 * x[0])],
            logits)

  ig, coarse, others, (logits, at_zero) = run(variables)
  target = np.argmax(logits, -1)
  gap = np.asarray(logits)[np.arange(8), target] - np.asarray(at_zero)[np.arange(8), target]
  np.testing.assert_allclose(ig.score_gap, gap, rtol=1e-5, atol=1e-6)
  total = ig.attributions.reshape(8, -1).sum(1)
  np.testing.assert_allclose(ig.completeness_error, jnp.abs(total - gap) / jnp.abs(gap), atol=1e-5)
  assert float(jnp.mean(ig.completeness_error)) < 0.01  # the default steps' target
  assert float(jnp.mean(coarse.completeness_error)) > float(jnp.mean(ig.completeness_error))
  for other in others:  # every baseline is complete relative to itself
    residual = np.abs(other.attributions.reshape(8, -1).sum(1) - other.score_gap)
    assert residual.sum() < 0.01 * np.abs(other.score_gap).sum()


def test_smoothgrad_without_noise_is_the_vanilla_gradient():
  model, x = Mixer(), _batch(7, (4, 5, 2))
  variables = _init(model, x, train=False)
  plain, smooth, noisy = jax.jit(lambda v, z: (
      interpret.gradient(model, v, z), interpret.smoothgrad(model, v, z, noise=0.0),
      interpret.smoothgrad(model, v, z, noise=0.15)))(variables, x)
  np.testing.assert_allclose(smooth, plain, rtol=1e-5, atol=1e-7)
  assert not np.allclose(noisy, plain, atol=1e-4)


@pytest.mark.parametrize("impl", ["im2col", "xla"])
def test_gradcam_finds_the_region_and_channel_that_feed_the_class(impl):
  """Channel c of the input is class c's only evidence; class 0's blob is top left, class 1's bottom right.

  With a 1x1 identity conv, a global mean and an identity dense layer, d logit_c / dA = 1/HW on
  channel c only, so Grad-CAM for class c is exactly relu(x[..., c]) / HW: the blob of that class.
  """
  x = np.zeros((1, 8, 8, 2), np.float32)
  x[0, 1:3, 1:3, 0] = 1.0
  x[0, 5:7, 4:7, 1] = 2.0
  model = TwoDetectors(impl)
  variables = _identity_variables(model, jnp.asarray(x))
  assert interpret.conv_layers(model, variables, x) == ["Conv_0"]
  for c in (0, 1):
    cam = jax.jit(functools.partial(interpret.gradcam, model))(variables, x, jnp.array([c]))
    np.testing.assert_allclose(cam[0], x[0, :, :, c] / 64, rtol=1e-5, atol=1e-7)


def test_gradcam_on_1d_signals():
  signal = _batch(4, (2, 40, 1))
  x = jnp.concatenate([signal, jnp.zeros_like(signal)], axis=-1)
  model = TwoDetectors()
  cam = jax.jit(functools.partial(interpret.gradcam, model))(_identity_variables(model, x), x, jnp.array([0, 0]))
  np.testing.assert_allclose(cam, signal[..., 0] / 40, rtol=1e-5)


def test_attention_rollout_of_a_transformer_on_image_rows_with_a_class_token():
  # An image is read row by row, two rows a token (patch_size 2), the class token classified.
  net = models.get_model("transformer", 10, width=8, num_heads=2, num_layers=2, pooling="cls", patch_size=2)
  x = _batch(6, (3, 8, 8, 1))
  variables = _init(net, x, train=False)
  weights, maps = jax.jit(lambda v, z: (models.attention_maps(net, v, z),
                                        interpret.attention_rollout(net, v, z)))(variables, x)
  assert maps.shape == (3, 8, 8)
  np.testing.assert_allclose(maps.reshape(3, -1).sum(1), 1.0, rtol=1e-5)
  rolled = np.asarray(interpret.rollout(weights))  # (B, 1 + 4, 1 + 4)
  expected = rolled[:, 0, 1:] / rolled[:, 0, 1:].sum(1, keepdims=True)  # the class token's row, itself left out
  np.testing.assert_allclose(maps.reshape(3, 4, 16).sum(-1), expected, rtol=1e-5)
  np.testing.assert_allclose(maps[:, ::2], maps[:, 1::2])  # a token's rows share its relevance


def test_rollout_mixes_the_residual_and_multiplies_the_layers_in_order():
  a1, a2 = np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 1, 2, 4))  # (layer, B, heads, T, T)
  mixed = [(a.mean(1) + np.eye(4)) / 2 for a in (a1, a2)]  # rows still sum to 1
  np.testing.assert_allclose(interpret.rollout([a1, a2]), mixed[1] @ mixed[0], rtol=1e-5)
  eye = [np.broadcast_to(np.eye(4), (1, 2, 4, 4))] * 3  # attention to itself only: nothing mixes
  np.testing.assert_allclose(interpret.rollout(eye)[0], np.eye(4), atol=1e-6)
  with pytest.raises(JaxdlError, match="head_fusion 'min'"):
    interpret.rollout(eye, head_fusion="min")


def test_spearman_matches_scipy_with_ties():
  stats = pytest.importorskip("scipy.stats")
  rng = np.random.default_rng(0)
  a, b = rng.integers(0, 5, 50).astype(float), rng.normal(size=50)
  assert interpret.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
  assert interpret.spearman(a, a) == pytest.approx(1.0)
  assert np.isnan(interpret.spearman(np.zeros(5), b[:5]))


def test_sanity_check_correlation_drops_for_gradient_and_gradcam(cnn_run):
  _, run, x, y = cnn_run
  layers = interpret.layer_order(run.model, run.variables, x)
  assert layers == ["Conv_0", "BatchNorm_0", "Conv_1", "BatchNorm_1", "Dense_0", "Dense_1"]
  results = {}
  for method in ("gradient", "gradcam"):
    results[method] = interpret.explain(run.model, run.variables, x, y, method=method)
    cascade = results[method]["sanity_cascade"]
    assert [c["layer"] for c in cascade] == layers[::-1]  # from the output down
    assert results[method]["sanity_rank_correlation"] < 0.5, (method, cascade)
  assert results["gradcam"]["layer"] == "Conv_1"
  assert results["gradient"]["maps"].shape == (16, 8, 8) and results["gradient"]["accuracy"] > 0.5


def test_bad_inputs_are_one_line_errors(cnn_run):
  _, run, x, _ = cnn_run
  mlp = models.get_model("mlp", 10, hidden=(8,))
  variables = _init(mlp, x, train=False)
  with pytest.raises(JaxdlError, match="gradcam needs a convolutional model, but MLP has no convolution"):
    interpret.gradcam(mlp, variables, x)
  with pytest.raises(JaxdlError, match="attention_rollout needs a model with attention.*CNN has no attention"):
    interpret.attention_rollout(run.model, run.variables, x)
  with pytest.raises(JaxdlError, match="unknown attribution method 'saliency'.*gradient, gradient_x_input"):
    interpret.attribute("saliency", run.model, run.variables, x)
  with pytest.raises(JaxdlError, match="gradcam layer 'Conv_9' is not a module.*Conv_0, Conv_1"):
    interpret.gradcam(run.model, run.variables, x, layer="Conv_9")
  with pytest.raises(JaxdlError, match="gradcam layer 'Dense_0' outputs shape .* not a spatial map"):
    interpret.gradcam(run.model, run.variables, x, layer="Dense_0")
  with pytest.raises(JaxdlError, match="baseline 'noise'"):
    interpret.integrated_gradients(run.model, run.variables, x, baseline="noise")
  with pytest.raises(JaxdlError, match="does not broadcast"):
    interpret.integrated_gradients(run.model, run.variables, x, baseline=np.zeros((3, 3)))
  with pytest.raises(JaxdlError, match="smoothgrad noise=-1"):
    interpret.smoothgrad(run.model, run.variables, x, noise=-1)


def test_jaxdl_explain_writes_the_plot_and_the_record(cnn_run, capsys):
  workdir, _, _, y = cnn_run
  # The default 16 examples: the notebook explains the same run's same digits (one compile in the XLA cache).
  code, out, err = run_cli(capsys, "explain", str(workdir), "--method", "integrated_gradients")
  assert code == 0, err
  record = json.loads((workdir / "explain" / "integrated_gradients.json").read_text())
  assert record["method"] == "integrated_gradients" and record["examples"] == 16
  assert record["labels"] == [int(v) for v in y] and len(record["predictions"]) == 16
  assert record["completeness_error"] < 0.01 and record["steps"] == interpret.IG_STEPS
  assert -1 <= record["sanity_rank_correlation"] <= 1
  assert (workdir / "explain" / "integrated_gradients.png").read_bytes()[:4] == b"\x89PNG"
  assert "completeness error" in out and "integrated_gradients.png" in out


def test_jaxdl_explain_refuses_what_it_cannot_explain(cnn_run, tmp_path, capsys):
  workdir = cnn_run[0]
  assert_one_line_error(*run_cli(capsys, "explain", str(workdir), "--method", "attention_rollout")[::2],
                        "attention_rollout", "CNN has no attention")
  assert_one_line_error(*run_cli(capsys, "explain", str(workdir), "--method", "lime")[::2], "'lime'")
  assert_one_line_error(*run_cli(capsys, "explain", str(workdir), "--examples", "0")[::2], "--examples 0")
  empty = tmp_path / "empty"
  (empty / "checkpoints").mkdir(parents=True)
  shutil.copy(workdir / "config.json", empty / "config.json")
  assert_one_line_error(*run_cli(capsys, "explain", str(empty))[::2], "has no checkpoint")
  lm = tmp_path / "lm"
  lm.mkdir()
  (lm / "config.json").write_text(json.dumps({"loop": "lm"}))
  assert_one_line_error(*run_cli(capsys, "explain", str(lm))[::2], "'lm' run, not a classifier")
  arrays = tmp_path / "arrays"
  shutil.copytree(workdir, arrays, ignore=shutil.ignore_patterns("explain", "tb"))
  config = json.loads((arrays / "config.json").read_text())
  config["data"]["name"] = "blobs"  # as a run on jaxdl.Dataset.from_arrays records it
  (arrays / "config.json").write_text(json.dumps(config))
  assert_one_line_error(*run_cli(capsys, "explain", str(arrays))[::2], "in-memory data 'blobs'")
