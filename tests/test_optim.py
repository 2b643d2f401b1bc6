import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import optim
from jaxdl.utils.errors import JaxdlError

PARAMS = {"dense": {"kernel": jnp.full((3, 2), 2.0), "bias": jnp.full((2,), 2.0)}}


def _one_update(tx, grads, params=PARAMS):
  state = tx.init(params)
  updates, _ = tx.update(grads, state, params)
  return updates


def test_clipping_bounds_global_norm():
  tx = optim.make_optimizer("sgd", 1.0, clip_norm=0.5)
  grads = jax.tree_util.tree_map(lambda p: jnp.full(p.shape, 10.0), PARAMS)
  updates = _one_update(tx, grads)
  assert float(optax.tree.norm(updates)) == pytest.approx(0.5, rel=1e-5)
  small = jax.tree_util.tree_map(lambda p: jnp.full(p.shape, 0.01), PARAMS)
  np.testing.assert_allclose(optax.tree.norm(_one_update(tx, small)), optax.tree.norm(small), rtol=1e-6)


def test_l2_is_coupled_and_skips_biases():
  # SGD with lr 1: update = -(g + wd * w) on kernels, -g on biases.
  tx = optim.make_optimizer("sgd", 1.0, weight_decay=0.1)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)
  updates = _one_update(tx, zeros)
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.2)
  np.testing.assert_allclose(updates["dense"]["bias"], 0.0)


def test_l1_adds_sign_subgradient_on_kernels_only():
  tx = optim.make_optimizer("sgd", 1.0, l1=0.05)
  params = {"k": jnp.array([[1.0, -3.0], [0.0, 2.0]]), "b": jnp.array([5.0, -5.0])}
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates = _one_update(tx, zeros, params)
  np.testing.assert_allclose(updates["k"], -0.05 * np.sign(params["k"]))
  np.testing.assert_allclose(updates["b"], 0.0)


def test_adamw_decay_is_decoupled():
  # With zero gradients Adam's step is 0, so only the decoupled decay moves
  # the kernel: -lr * wd * w.
  tx = optim.make_optimizer("adamw", 0.1, weight_decay=0.5)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)
  updates = _one_update(tx, zeros)
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.1 * 0.5 * 2.0, rtol=1e-6)
  np.testing.assert_allclose(updates["dense"]["bias"], 0.0)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_descends_a_quadratic(name):
  lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 0.1, "adamw": 0.1, "rmsprop": 0.02}[name]
  tx = optim.make_optimizer(name, lr)
  params = {"w": jnp.array([3.0, -2.0])}
  state = tx.init(params)
  loss = lambda p: jnp.sum(p["w"] ** 2)
  for _ in range(50):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < 0.1 * 13.0


def test_nesterov_differs_from_momentum():
  grads = {"w": jnp.array([1.0])}
  params = {"w": jnp.array([0.0])}
  outs = []
  for name in ("momentum", "nesterov"):
    tx = optim.make_optimizer(name, 1.0, momentum=0.9)
    updates = _one_update(tx, grads, params)
    outs.append(float(updates["w"][0]))
  assert outs[0] == pytest.approx(-1.0)
  assert outs[1] == pytest.approx(-1.9)  # g + mu * (mu * 0 + g)


def test_schedules():
  cos = optim.make_schedule("cosine", 1.0, 100)
  assert float(cos(0)) == pytest.approx(1.0)
  assert float(cos(50)) == pytest.approx(0.5, abs=1e-6)
  assert float(cos(100)) == pytest.approx(0.0, abs=1e-6)
  warm = optim.make_schedule("warmup_cosine", 2.0, 100, warmup_steps=10, final_fraction=0.1)
  assert float(warm(0)) == 0.0
  assert float(warm(5)) == pytest.approx(1.0)
  assert float(warm(10)) == pytest.approx(2.0)
  assert float(warm(100)) == pytest.approx(0.2, rel=1e-5)
  step = optim.make_schedule("step", 1.0, 100, boundaries=(0.5, 0.75), decay_factor=0.1)
  assert [float(step(s)) for s in (0, 49, 51, 76)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
  assert float(optim.make_schedule("constant", 0.3, 10)(7)) == pytest.approx(0.3)
  linear = optim.make_schedule("linear", 1.0, 100, final_fraction=0.1)
  assert [float(linear(s)) for s in (0, 50, 100, 200)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


@pytest.mark.parametrize("name, options", [
    ("cosine", {"final_fraction": 0.1}), ("warmup_cosine", {"warmup_steps": 5, "final_fraction": 0.1}),
    ("linear", {"final_fraction": 0.2}), ("step", {"boundaries": (0.5, 0.75), "decay_factor": 0.5}),
])
def test_an_extended_schedule_keeps_the_first_segment_and_goes_on(name, options):
  original = optim.make_schedule(name, 1.0, 40, **options)
  constant = optim.extended_schedule(name, 1.0, 40, 100, "constant", **options)
  restart = optim.extended_schedule(name, 1.0, 40, 100, "restart", **options)
  # The original run's steps get the original rates (the runs themselves are compared in test_checkpoint).
  for extended in (constant, restart):
    assert [float(extended(s)) for s in range(40)] == [float(original(s)) for s in range(40)]
  # 'constant': continuous at the boundary, then the rate the original ends at.
  end = float(original(40))
  assert [float(constant(s)) for s in (40, 41, 70, 99)] == [end] * 4
  assert abs(float(constant(39)) - end) <= abs(float(original(38)) - float(original(39))) + 1e-7
  # 'restart': the schedule again, laid out over the 60 new steps.
  fresh = optim.make_schedule(name, 1.0, 60, **options)
  assert [float(restart(40 + s)) for s in (0, 5, 30, 59)] == [float(fresh(s)) for s in (0, 5, 30, 59)]


def test_an_extension_that_makes_no_sense_is_a_one_line_error():
  with pytest.raises(JaxdlError, match="final_fraction=0.*restart"):  # the cosine ends at 0: 'constant' is no use
    optim.extended_schedule("cosine", 1.0, 40, 80, "constant")
  with pytest.raises(JaxdlError, match=r"optim.extend_from=80 must be in \(0, train.steps=80\)"):
    optim.extended_schedule("cosine", 1.0, 80, 80, "restart")
  with pytest.raises(JaxdlError, match="'constant' extends as it is"):
    optim.extended_schedule("constant", 1.0, 40, 80, "restart")
  with pytest.raises(JaxdlError, match="optim.extend_mode='sgdr'"):
    optim.extended_schedule("cosine", 1.0, 40, 80, "sgdr")


@pytest.mark.parametrize("call, words", [
    (lambda: optim.make_optimizer("adagrad", 0.1), ["adagrad", "adamw"]),
    (lambda: optim.make_schedule("exponential", 0.1, 10), ["exponential", "warmup_cosine"]),
    (lambda: optim.make_schedule("warmup_cosine", 0.1, 10, warmup_steps=10), ["warmup_steps=10"]),
    (lambda: optim.make_optimizer("sgd", 0.1, clip_norm=-1.0), ["clip_norm"]),
])
def test_bad_names_are_one_line_errors(call, words):
  with pytest.raises(JaxdlError) as info:
    call()
  message = str(info.value)
  assert "\n" not in message
  for word in words:
    assert word in message
