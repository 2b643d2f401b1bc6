"""Training by path: frozen and slowed layers (jaxdl.optim.per_path), and partial restore (init.*)."""

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cli_helpers import assert_one_line_error, run_cli
from jaxdl import configs, models, optim
from jaxdl.loops import supervised
from jaxdl.train import create_train_state
from jaxdl.utils.errors import JaxdlError

REPO = pathlib.Path(__file__).resolve().parents[1]
X = jnp.zeros((2, 8, 8, 1))


def _state(tx, hidden=(16,)):
  return create_train_state(models.get_model("mlp", 10, hidden=hidden), tx, jax.random.PRNGKey(0), X)


def _grads(params, value=1.0):
  return jax.tree_util.tree_map(lambda p: jnp.full(p.shape, value, p.dtype), params)


def _optim(**changes):
  section = configs.optim_section(per_path=True)
  section.update(changes)
  return section


def test_frozen_layers_do_not_move_and_the_others_do():
  # adamw with decoupled weight decay: a frozen kernel must not even decay.
  tx, _ = optim.from_config(_optim(name="adamw", weight_decay=0.1, clip_norm=1.0, frozen=("Dense_0.*",)), 10)
  state = _state(tx)
  new = state.apply_gradients(grads=_grads(state.params))
  for leaf in ("kernel", "bias"):
    np.testing.assert_array_equal(new.params["Dense_0"][leaf], state.params["Dense_0"][leaf])
    assert not np.allclose(new.params["Dense_1"][leaf], state.params["Dense_1"][leaf])
  # Frozen parameters keep no optimizer state: Adam's moments cover only Dense_1.
  moments = sum(leaf.size for leaf in jax.tree_util.tree_leaves(state.opt_state) if leaf.dtype == jnp.float32)
  assert moments == 2 * sum(p.size for p in jax.tree_util.tree_leaves(state.params["Dense_1"]))


def test_frozen_parameters_do_not_count_in_the_clipping_norm():
  params = {"a": jnp.zeros(4), "b": jnp.zeros(4)}
  tx = optim.per_path(optim.make_optimizer("sgd", 1.0, clip_norm=1.0), frozen=("a",))
  grads = {"a": jnp.full(4, 100.0), "b": jnp.full(4, 0.1)}  # b's norm, 0.2, is under the clip alone
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["b"], -0.1, rtol=1e-6)
  np.testing.assert_array_equal(updates["a"], 0.0)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_an_lr_multiplier_scales_that_layers_update(name):
  plain, _ = optim.from_config(_optim(name=name, learning_rate=0.1, weight_decay=0.01), 10)
  slowed, _ = optim.from_config(_optim(name=name, learning_rate=0.1, weight_decay=0.01,
                                       lr_multipliers=("Dense_0.*=0.25", "*=1.0")), 10)
  params = _state(plain).params
  grads = jax.tree_util.tree_map(lambda p: jnp.linspace(-1.0, 2.0, p.size).reshape(p.shape), params)
  u_plain, _ = plain.update(grads, plain.init(params), params)
  u_slow, _ = slowed.update(grads, slowed.init(params), params)
  for leaf in ("kernel", "bias"):
    np.testing.assert_allclose(u_slow["Dense_0"][leaf], 0.25 * u_plain["Dense_0"][leaf], rtol=1e-6)
    np.testing.assert_array_equal(u_slow["Dense_1"][leaf], u_plain["Dense_1"][leaf])


def test_the_first_matching_multiplier_wins():
  params = {"head": jnp.zeros(2), "body": jnp.zeros(2)}
  tx = optim.per_path(optax.sgd(1.0), lr_multipliers=("head=1.0", "*=0.1"))
  updates, _ = tx.update(_grads(params), tx.init(params), params)
  np.testing.assert_allclose(updates["head"], -1.0)
  np.testing.assert_allclose(updates["body"], -0.1, rtol=1e-6)


def test_without_per_path_keys_the_optimizer_is_the_same():
  # What keeps every existing preset's params_sha256: no wrapper, the same state tree.
  section = _optim(name="adamw", weight_decay=1e-4, clip_norm=1.0)
  tx, _ = optim.from_config(section, 10)
  reference = optim.make_optimizer("adamw", optim.schedule_from_config(section, 10), weight_decay=1e-4, clip_norm=1.0)
  params = _state(tx).params
  assert jax.tree_util.tree_structure(tx.init(params)) == jax.tree_util.tree_structure(reference.init(params))


@pytest.mark.parametrize("changes, words", [
    ({"frozen": ("Conv_0.*",)}, ["optim.frozen", "'Conv_0.*'", "Dense_0.kernel"]),
    ({"lr_multipliers": ("Conv_*=0.1",)}, ["optim.lr_multipliers", "'Conv_*'", "Dense_1.bias"]),
    ({"frozen": ("Dense_0.*",), "lr_multipliers": ("Dense_0.*=0.1",)}, ["'Dense_0.*'", "trained parameter"]),
    ({"frozen": ("*",)}, ["freezes every parameter"]),
    ({"lr_multipliers": ("Dense_0.*",)}, ["PATTERN=FACTOR"]),
    ({"lr_multipliers": ("Dense_0.*=0",)}, ["optim.frozen"]),
])
def test_a_pattern_that_matches_nothing_is_a_one_line_error(changes, words):
  with pytest.raises(JaxdlError) as info:
    tx, _ = optim.from_config(_optim(**changes), 10)
    _state(tx)
  message = str(info.value)
  assert "\n" not in message
  for word in words:
    assert word in message, message


def test_the_cli_refuses_a_frozen_pattern_that_matches_nothing(capsys, tmp_path):
  code, _, err = run_cli(capsys, "run", "digits_mlp", "--workdir", str(tmp_path / "run"),
                         "--set", "optim.frozen=('Conv_0.*',)")
  assert_one_line_error(code, err, "optim.frozen", "Conv_0.*", "Dense_0.kernel")
  assert not (tmp_path / "run" / "config.json").exists()


# ------------------------------------------------------------ partial restore --


def _config(**init):
  config = supervised.default_config()
  config.model.hidden = (16,)
  config.train.steps, config.train.batch_size, config.train.log_every = 4, 64, 2
  config.checkpoint.async_save = False
  config.init.update(init)
  return config


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A trained run's workdir and final state (an MLP on digits, 4 steps)."""
  workdir = tmp_path_factory.mktemp("pretrained")
  state, _ = supervised.train_and_evaluate(_config(), workdir)
  return workdir, jax.device_get(state)


def test_partial_restore_copies_exactly_the_included_params(pretrained):
  workdir, source = pretrained
  fresh = jax.device_get(supervised.SupervisedTask(_config()).state)
  task = supervised.SupervisedTask(_config(workdir=str(workdir), exclude=("Dense_1.*",)))
  started = jax.device_get(task.state)
  for leaf in ("kernel", "bias"):
    np.testing.assert_array_equal(started.params["Dense_0"][leaf], source.params["Dense_0"][leaf])
    np.testing.assert_array_equal(started.params["Dense_1"][leaf], fresh.params["Dense_1"][leaf])
  assert not np.array_equal(source.params["Dense_0"]["kernel"], fresh.params["Dense_0"]["kernel"])
  assert task.init_record == {"init_from": str(workdir.absolute()), "init_restored": 2}
  # The optimizer starts afresh: the source's Adam moments are not copied.
  assert int(jax.device_get(task.state.step)) == 0


def test_the_source_is_recorded_in_metrics_json(pretrained, tmp_path):
  workdir, _ = pretrained
  _, metrics = supervised.train_and_evaluate(_config(workdir=str(workdir), include=("Dense_0.*",)), tmp_path)
  assert metrics["init_from"] == str(workdir.absolute()) and metrics["init_restored"] == 2


@pytest.mark.parametrize("init, hidden, words", [
    ({"exclude": ("Dense_9.*",)}, (16,), ["init.exclude", "'Dense_9.*'", "Dense_1.kernel"]),
    ({"include": ("Conv_*",)}, (16,), ["init.include", "'Conv_*'", "Dense_0.bias"]),
    ({}, (32,), ["Dense_0.kernel (checkpoint (64, 16), model (64, 32))", "init.exclude"]),
    ({"include": ("Dense_0.*",), "exclude": ("Dense_0.*",)}, (16,), ["choose no parameter"]),
])
def test_partial_restore_bad_input_is_a_one_line_error(pretrained, init, hidden, words):
  workdir, _ = pretrained
  config = _config(workdir=str(workdir), **init)
  config.model.hidden = hidden
  with pytest.raises(JaxdlError) as info:
    supervised.SupervisedTask(config)
  assert "\n" not in str(info.value)
  for word in words:
    assert word in str(info.value), str(info.value)


def test_an_init_workdir_without_a_checkpoint_is_a_one_line_error(tmp_path):
  with pytest.raises(JaxdlError, match=r"init.workdir=.*empty: no checkpoint there") as info:
    supervised.SupervisedTask(_config(workdir=str(tmp_path / "empty")))
  assert "\n" not in str(info.value)


def test_init_patterns_without_a_workdir_are_refused():
  with pytest.raises(JaxdlError, match="init.workdir, which is empty"):
    supervised.validate(_config(exclude=("Dense_1.*",)))


def test_the_init_keys_parse_from_the_command_line():
  config = configs.apply_overrides(_config(), ["init.exclude=('Dense_1.*',)",
                                               "optim.lr_multipliers=('Dense_0.*=0.1',)"])
  assert config.init.exclude == ("Dense_1.*",) and config.optim.lr_multipliers == ("Dense_0.*=0.1",)
  assert isinstance(config.init, ml_collections.ConfigDict)
