"""The distill study: the loss against its definition and its limits, the teacher inside the step, bad teachers,
and a shrunk distill_mnist1d that learns."""

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli
from jaxdl import configs, data
from jaxdl.loops import distill, supervised
from jaxdl.loops.distill.experiment import model_params
from jaxdl.train import losses
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count

REPO = pathlib.Path(__file__).resolve().parents[2]
loss = jax.jit(distill.distillation_loss, static_argnames=("temperature", "alpha"))


def preset(name, *overrides):
  config, _ = configs.load_preset(REPO / "experiments" / f"{name}.py")
  return configs.apply_overrides(config, overrides)


def logits_and_targets(seed, b=6, k=5):
  rng = np.random.default_rng(seed)
  z, v = (jnp.asarray(3 * rng.normal(size=(b, k)), jnp.float32) for _ in range(2))
  targets = jnp.asarray(rng.dirichlet(np.ones(k), size=b), jnp.float32)
  return z, v, targets


def log_softmax_np(a):
  a = np.asarray(a, np.float64)
  a = a - a.max(-1, keepdims=True)
  return a - np.log(np.exp(a).sum(-1, keepdims=True))


# ---------------------------------------------------------------------- loss --


def test_the_loss_at_temperature_1_with_soft_weight_0_equals_cross_entropy():
  z, v, targets = logits_and_targets(0)
  got = np.asarray(loss(z, v, targets, temperature=1.0, alpha=0.0))
  np.testing.assert_allclose(got, np.asarray(losses.cross_entropy(z, targets)), rtol=1e-6)
  np.testing.assert_allclose(got, -(np.asarray(targets) * log_softmax_np(z)).sum(-1), rtol=1e-5)
  # The teacher does not enter at all.
  np.testing.assert_array_equal(got, np.asarray(loss(z, -7 * v, targets, temperature=1.0, alpha=0.0)))


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (3.0, 0.9), (10.0, 1.0)])
def test_the_loss_against_a_direct_numpy_computation(temperature, alpha):
  z, v, targets = logits_and_targets(1)
  log_p, log_q = log_softmax_np(np.asarray(v) / temperature), log_softmax_np(np.asarray(z) / temperature)
  kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
  hard = -(np.asarray(targets) * log_softmax_np(z)).sum(-1)
  want = (1 - alpha) * hard + alpha * temperature ** 2 * kl
  np.testing.assert_allclose(np.asarray(loss(z, v, targets, temperature=temperature, alpha=alpha)), want,
                             rtol=2e-5, atol=1e-6)


def test_kl_is_nonnegative_and_zero_only_when_the_distributions_agree():
  z, v, _ = logits_and_targets(2, b=64)
  kl = np.asarray(distill.soft_kl(z, v, 2.0))
  assert kl.shape == (64,) and (kl > 0).all()
  # Softmax ignores a constant added to the logits.
  np.testing.assert_allclose(np.asarray(distill.soft_kl(z, z + 5.0, 2.0)), 0.0, atol=1e-5)
  # Far-apart logits stay finite (log-softmax, no log of an underflowed probability).
  assert np.isfinite(np.asarray(distill.soft_kl(z * 1e3, -v * 1e3, 1.0))).all()


def soft_grad(z, v, temperature):
  """d/dz of the mean soft loss (alpha=1), for each example's logits."""
  def f(z):
    return distill.distillation_loss(z, v, jnp.zeros_like(z), temperature=temperature, alpha=1.0).sum()
  return np.asarray(jax.grad(f)(z))


def test_no_gradient_when_the_student_matches_the_teacher_and_none_reaches_the_teacher():
  z, _, targets = logits_and_targets(3)
  np.testing.assert_allclose(soft_grad(z, z, 4.0), 0.0, atol=1e-6)
  teacher_grad = jax.grad(lambda v: distill.distillation_loss(z, v, targets, temperature=4.0, alpha=0.7).sum())(z)
  np.testing.assert_array_equal(np.asarray(teacher_grad), 0.0)  # stop_gradient on the teacher


@pytest.mark.parametrize("temperature", [1.0, 3.0, 8.0])
def test_the_soft_gradient_is_t_times_the_difference_of_the_softened_distributions(temperature):
  # Hinton et al. eq. 2 times T^2: T^2 * (q - p) / T.
  z, v, _ = logits_and_targets(4)
  p, q = np.exp(log_softmax_np(np.asarray(v) / temperature)), np.exp(log_softmax_np(np.asarray(z) / temperature))
  np.testing.assert_allclose(soft_grad(z, v, temperature), temperature * (q - p), rtol=1e-4, atol=1e-6)


def test_at_high_temperature_the_soft_gradient_tends_to_logit_matching():
  # Hinton et al. eq. 4: with zero-mean logits, T^2 * dKL/dz -> (z - v) / K; T^2 keeps it from vanishing.
  z, v, _ = logits_and_targets(5, k=7)
  z, v = z - z.mean(-1, keepdims=True), v - v.mean(-1, keepdims=True)
  want = (np.asarray(z) - np.asarray(v)) / 7
  errors = [np.abs(soft_grad(z, v, t) - want).max() for t in (20.0, 200.0, 2000.0)]
  assert errors[2] < 1e-3 * np.abs(want).max()
  assert errors[1] < errors[0] / 5 and errors[2] < errors[1] / 5  # the approximation error goes as 1/T


class DropoutBN(nn.Module):
  """A teacher whose training mode differs from its evaluation mode (dropout, batch statistics)."""

  @nn.compact
  def __call__(self, x, *, train):
    x = nn.Dense(16)(x.reshape(x.shape[0], -1))
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.Dropout(0.5, deterministic=not train)(nn.relu(x))
    return nn.Dense(3)(x)


def test_the_teacher_runs_in_evaluation_mode_on_the_batch_inputs_also_under_jit():
  model = DropoutBN()
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 5))
  variables = model.init(jax.random.PRNGKey(1), x, train=False)
  variables = {"params": variables["params"],
               "batch_stats": jax.tree_util.tree_map(lambda a: a + 0.3, variables["batch_stats"])}
  loss_fn = distill.teacher_loss_fn(model.apply, variables, temperature=2.0, alpha=0.6)
  z = jax.random.normal(jax.random.PRNGKey(2), (8, 3))
  batch = {"x": x, "y": jnp.zeros(8, jnp.int32), "targets": jax.nn.one_hot(jnp.arange(8) % 3, 3)}
  want = distill.distillation_loss(z, model.apply(variables, x, train=False), batch["targets"],
                                   temperature=2.0, alpha=0.6)
  np.testing.assert_allclose(np.asarray(loss_fn(z, batch)), np.asarray(want), rtol=1e-6)
  # Jitted, the closed-over variables are constants of the program: the same numbers.
  np.testing.assert_allclose(np.asarray(jax.jit(loss_fn)(z, batch)), np.asarray(want), rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------- config --


@pytest.mark.parametrize("override, words", [
    ("distill.temperature=0.0", ("distill.temperature",)),
    ("distill.alpha=1.5", ("distill.alpha",)),
    ("distill.teacher_steps=-1", ("distill.teacher_steps",)),
])
def test_bad_values_are_one_line_errors(override, words):
  with pytest.raises(JaxdlError, match=words[0]):
    distill.validate(preset("distill_mnist1d", override))


def test_every_key_is_read_the_teacher_options_checked_against_its_model():
  config = preset("distill_mnist1d")
  distill.validate(config)
  with config.distill.teacher_model.unlocked():
    config.distill.teacher_model.widht = 3
  with pytest.raises(JaxdlError, match="teacher_model.*widht"):
    distill.validate(config)
  config = preset("distill_mnist1d")
  with config.distill.unlocked():
    config.distill.temprature = 2.0
  with pytest.raises(JaxdlError, match="distill.temprature"):
    distill.validate(config)
  teacher = distill.teacher_config(preset("distill_mnist1d"))
  assert teacher.loop == "supervised" and "distill" not in teacher
  assert teacher.model.to_dict() == config.distill.teacher_model.to_dict()
  assert teacher.train.steps == config.distill.teacher_steps


# --------------------------------------------------------------- the study --

# A shrunk distill_mnist1d: a narrower teacher, short runs at a higher rate (compiling takes most of the time).
SHRUNK = ("distill.teacher_steps=200", "distill.teacher_model.features=(16, 32)", "distill.teacher_model.hidden=(64,)",
          "train.steps=200", "train.eval_every=100", "train.log_every=50", "optim.learning_rate=5e-3",
          "checkpoint.every_steps=0")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("distill")
  _, metrics = distill.train_and_evaluate(preset("distill_mnist1d", *SHRUNK), workdir)
  return workdir, metrics


def test_shrunk_distill_mnist1d_learns_and_writes_its_outputs(study):
  workdir, metrics = study
  assert metrics == json.loads((workdir / "metrics.json").read_text())
  assert metrics["student_params"] == param_count(supervised.load_run(workdir / "student").variables["params"])
  assert metrics["test_accuracy"] > 0.4 and metrics["scratch_test_accuracy"] > 0.4  # chance is 0.1
  assert metrics["teacher_test_accuracy"] > 0.6
  gap = metrics["teacher_test_accuracy"] - metrics["scratch_test_accuracy"]
  if gap > 0:
    assert metrics["gap_closed"] == pytest.approx((metrics["test_accuracy"] - metrics["scratch_test_accuracy"]) / gap)
  else:
    assert metrics["gap_closed"] is None
  for name in ("teacher", "scratch", "student"):
    assert (workdir / name / "metrics.json").is_file() and (workdir / name / "checkpoints").is_dir()
  assert (workdir / "distill.png").stat().st_size > 10_000
  record = json.loads((workdir / "distill.json").read_text())
  assert record["temperature"] == metrics["temperature"] and record["teacher_workdir"].endswith("teacher")


def test_distill_mnist1d_student_has_at_most_a_tenth_of_the_teachers_parameters():
  config = preset("distill_mnist1d")
  assert config.loop == "distill"
  student, teacher = distill.student_config(config), distill.teacher_config(config)
  assert teacher.augment.shift > 0 and student.augment.shift == 0  # the teacher alone learns with jitter
  ds = data.load_dataset("mnist1d")
  assert 10 * model_params(student, ds, "model") <= model_params(teacher, ds, "teacher")


# ------------------------------------------------------------ bad teachers --


def test_a_teacher_with_other_inputs_is_a_one_line_error_from_the_cli(capsys, tmp_path, study):
  workdir = tmp_path / "run"  # a student on digits (8x8 images), the teacher of MNIST-1D's signals
  code, _, err = run_cli(capsys, "run", "distill_mnist1d", "--workdir", str(workdir), "--set", "data.name=digits",
                         "--set", f"distill.teacher_workdir={study[0] / 'teacher'}")
  assert_one_line_error(code, err, "distill.teacher_workdir", "inputs of shape (40, 1)", "'digits'")
  assert not workdir.exists()  # refused before anything was written


def test_a_teacher_with_other_classes_is_a_one_line_error(study, tmp_path):
  teacher = study[0] / "teacher"
  config = preset("distill_mnist1d", *SHRUNK, f"distill.teacher_workdir={teacher}", "data.num_classes=12")
  with pytest.raises(JaxdlError, match="teacher has 10 classes but the student's data 'mnist1d' has 12"):
    distill.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_a_teacher_workdir_without_a_checkpoint_or_not_supervised_is_refused(study, tmp_path):
  bare = tmp_path / "bare"
  bare.mkdir()
  saved = json.loads((study[0] / "teacher" / "config.json").read_text())
  (tmp_path / "nockpt").mkdir()
  (tmp_path / "nockpt" / "config.json").write_text(json.dumps(saved))
  (tmp_path / "lm").mkdir()
  (tmp_path / "lm" / "config.json").write_text(json.dumps({**saved, "loop": "lm"}))
  for where, words in ((bare, "no config.json"), (tmp_path / "nockpt", "no checkpoint"),
                       (tmp_path / "lm", "holds a 'lm' run")):
    config = preset("distill_mnist1d", *SHRUNK, f"distill.teacher_workdir={where}")
    with pytest.raises(JaxdlError, match=words) as e:
      distill.train_and_evaluate(config, tmp_path / "run")
    assert "\n" not in str(e.value)
  assert not (tmp_path / "run").exists()


def test_a_resume_that_would_distil_differently_is_refused(study):
  workdir, _ = study
  config = preset("distill_mnist1d", *SHRUNK, "distill.temperature=2.0")
  with pytest.raises(JaxdlError, match="temperature"):
    distill.train_and_evaluate(config, workdir)
