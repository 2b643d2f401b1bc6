"""jaxdl.train.cost: a step's FLOPs by its jaxpr, its peak bytes by XLA, and MFU."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring

from jaxdl.configs import apply_overrides, load_preset
from jaxdl.loops.supervised.experiment import SupervisedTask
from jaxdl.models.conv import Conv
from jaxdl.train import cost as cost_lib
from jaxdl.utils import flops as flops_lib

BATCH, IN, HIDDEN, OUT = 16, 12, 24, 5


def mlp_loss(params, x):
  h = jnp.tanh(x @ params["w1"])
  return jnp.sum(h @ params["w2"])


def params():
  return {"w1": jnp.ones((IN, HIDDEN)), "w2": jnp.ones((HIDDEN, OUT))}


def test_a_gradient_counts_forward_and_backward_matmuls_but_no_input_gradient():
  jaxpr = jax.make_jaxpr(jax.grad(mlp_loss))(params(), jnp.ones((BATCH, IN))).jaxpr
  forward = 2 * BATCH * (IN * HIDDEN + HIDDEN * OUT)
  backward = 2 * BATCH * (IN * HIDDEN + HIDDEN * OUT) + 2 * BATCH * HIDDEN * OUT  # dW1, dW2, dh
  assert cost_lib.matmul_flops(jaxpr) == forward + backward


def test_a_scan_counts_its_body_once_per_step_where_xla_counts_it_once():
  steps = 7

  def recurrence(w, h):
    return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), h, None, length=steps)[0]

  w, h = jnp.ones((32, 32)), jnp.ones((4, 32))
  assert cost_lib.matmul_flops(jax.make_jaxpr(recurrence)(w, h).jaxpr) == steps * 2 * 4 * 32 * 32
  xla = jax.jit(recurrence).lower(w, h).cost_analysis()["flops"]
  assert xla < 2 * 2 * 4 * 32 * 32  # the reason the count is jaxdl's own


def test_a_convolution_counts_two_flops_per_multiply_add():
  x, k = jnp.ones((2, 10, 10, 3)), jnp.ones((3, 3, 3, 8))  # NHWC, HWIO
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  flops = cost_lib.matmul_flops(jax.make_jaxpr(conv)(x, k).jaxpr)
  assert flops == 2 * (2 * 8 * 8 * 8) * (3 * 3 * 3)
  assert flops == pytest.approx(jax.jit(conv).lower(x, k).cost_analysis()["flops"], rel=0.01)


def test_a_tasks_chunk_cost_is_one_step_and_compiles_nothing_the_call_does_not_reuse():
  config, _ = load_preset("digits_mlp")
  apply_overrides(config, ["model.hidden=(32,)", "train.batch_size=64", "train.num_devices=2"])
  task = SupervisedTask(config)
  compiles = []
  monitoring.register_event_duration_secs_listener(
      lambda name, *_, **__: compiles.append(name) if name == "/jax/core/compile/backend_compile_duration" else None)
  jitted, args = task.chunk_program(task.state)
  cost = cost_lib.chunk_cost(jitted, *args)
  after_cost = len(compiles)
  batch = {"x": task.dataset.x_train[:64], "y": task.dataset.y_train[:64]}
  step_flops = cost_lib.matmul_flops(jax.make_jaxpr(task.train_step)(task.state, batch).jaxpr)
  assert cost["flops_per_step"] == step_flops == 2 * 64 * (64 * 32 + 32 * 10) * 2 + 2 * 64 * 32 * 10
  assert 0 < cost["peak_bytes"] < 2 ** 30
  task.run_chunk(task.state, np.int32(3))
  assert len(compiles) == after_cost  # the chunk that trains is the program compiled for the cost


def test_mfu_is_reported_for_gpus_of_known_peak_only():
  h100 = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H100 80GB HBM3")
  assert cost_lib.peak_flops(h100, "bfloat16") == 989.4e12
  assert cost_lib.peak_flops(types.SimpleNamespace(platform="gpu", device_kind="Quadro P1000"), "float32") is None
  assert cost_lib.peak_flops(jax.devices()[0], "float32") is None  # the CPU
  assert cost_lib.mfu(1e12, 100.0, 2, 1e14) == pytest.approx(0.5)
  assert cost_lib.mfu(1e12, 100.0, 2, None) is None


def test_the_start_up_line_says_flops_devices_and_peak():
  line = cost_lib.describe({"flops_per_step": 2.5e9, "peak_bytes": 3 * 2 ** 20}, 8)
  assert line.startswith("one step: 2.5 GFLOP") and "over 8 devices" in line and "peak 3.0 MiB per device" in line


def test_winograd_convolutions_count_the_model_flops_of_the_convolution():
  # Winograd does 16 products per 2x2 tile for the 36 multiply-adds of a 3x3 convolution: the count is the
  # convolution's (as im2col's one product and XLA's convolution count it), not the multiplications executed.
  x = jnp.ones((4, 8, 6, 8))

  def step_flops(impl):
    conv = Conv(16, (3, 3), impl=impl)
    params = conv.init(jax.random.PRNGKey(0), x)
    loss = lambda p, x: jnp.sum(conv.apply(p, x) ** 2)
    return cost_lib.matmul_flops(jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1)))(params, x).jaxpr)

  model = 2 * 4 * 8 * 6 * (9 * 8) * 16  # 2 x the multiply-adds of one pass
  assert step_flops("xla") == step_flops("im2col") == 3 * model  # forward, kernel gradient, input gradient
  assert step_flops("winograd") == pytest.approx(3 * model, rel=1e-12)
  assert flops_lib.factor_of("jvp(CNN/Conv_1/model_flops_x2.25)") == 2.25
  assert flops_lib.factor_of("transpose(jvp(model_flops_x2.25/model_flops_x0))") == 0.0  # the innermost scope
  assert flops_lib.factor_of("CNN/Conv_1") == 1.0
