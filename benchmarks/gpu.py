"""jaxdl on one GPU: bfloat16 throughput and MFU, the compile cache, and jaxdl's step against a hand-written one.

Two models at sizes a GPU is bought for, bfloat16 compute with float32
parameters, optimizer state and loss (what ``train.dtype=bfloat16`` gives):

  resnet50  ``get_model('resnet50')`` with the ImageNet stem (7x7 stride 2,
            max-pool) on (B, 224, 224, 3) images, 1000 classes, batch norm;
  lm        ``get_model('transformer_lm')``, 12 layers of width 768, 12 heads,
            a 32,768-token vocabulary, windows of 1,024 tokens: 110M
            parameters, about GPT-2 small.

For each, two jitted steps on the same batches with AdamW, state donated:

  jaxdl     the loop's own step (``jaxdl.train_step``, or the LM loop's
            ``lm_train_step``), which also reports accuracy and the gradient
            norm;
  hand      the smallest correct ``jax.jit`` + Optax step for the model.

It reports steps/s, examples (or tokens) per second, the step's model FLOPs
(``jaxdl.train.cost.matmul_flops`` of the step's jaxpr: 2 per multiply-add of
every matmul and convolution, forward and backward), MFU against the
device's dense bfloat16 peak (``jaxdl.train.cost.PEAK_FLOPS``; none on a
CPU), and the ratio jaxdl / hand. The compile cache: the LM step is compiled
in two fresh processes sharing an empty persistent cache, and both compile
times are reported.

    python benchmarks/gpu.py --out DIR              # on the GPU: about 5 minutes
    python benchmarks/gpu.py --smoke --out DIR      # tiny sizes, any machine (the test suite runs this)

Writes ``gpu.json`` to ``--out`` and prints a table. ``benchmarks/gpu.sh``
runs it on a lent device machine.
"""

import argparse
import functools
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import jaxdl  # noqa: F401  (first: its CPU runtime settings, see jaxdl.utils.cpu_runtime)
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.loops.lm.step import lm_train_step
from jaxdl.train import cost as cost_lib

# name -> (model, model options, batch, input shape per example, classes or vocabulary)
FULL = {
    "resnet50": ("resnet50", {"stem_kernel": 7, "stem_stride": 2, "stem_pool": True}, 256, (224, 224, 3), 1000),
    "lm": ("transformer_lm", {"width": 768, "num_layers": 12, "num_heads": 12, "max_len": 1024}, 32, (1024,), 32768),
}
SMOKE = {
    "resnet50": ("resnet1", {}, 4, (16, 16, 3), 10),
    "lm": ("transformer_lm", {"width": 32, "num_layers": 1, "num_heads": 2, "max_len": 16}, 4, (16,), 64),
}


def make_case(spec, dtype):
  """(model, initial TrainState, batch) for one case, on the default device."""
  name, options, batch_size, shape, classes = spec
  model = jaxdl.get_model(name, classes, **options, dtype=dtype)
  rng = np.random.default_rng(0)
  if name == "transformer_lm":
    tokens = rng.integers(0, classes, (batch_size, shape[0] + 1))
    batch = {"x": jnp.asarray(tokens[:, :-1], jnp.int32), "y": jnp.asarray(tokens[:, 1:], jnp.int32)}
  else:
    batch = {"x": jnp.asarray(rng.standard_normal((batch_size, *shape)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, classes, batch_size), jnp.int32)}
  tx = jaxdl.make_optimizer("adamw", 1e-4, weight_decay=0.01)
  state = jaxdl.create_train_state(model, tx, jax.random.PRNGKey(0), batch["x"][:1])
  return model, state, batch, classes


def hand_step(model):
  """The smallest correct step: cross-entropy, gradient, AdamW, batch-norm statistics where the model has them."""
  def step(state, batch):
    has_bn = bool(state.batch_stats)

    def loss_fn(params):
      variables = {"params": params, **({"batch_stats": state.batch_stats} if has_bn else {})}
      out = model.apply(variables, batch["x"], train=True, mutable=["batch_stats"] if has_bn else False,
                        rngs={"dropout": jax.random.fold_in(state.rng, state.step)})
      logits, updates = out if has_bn else (out, {})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["y"]).mean()
      return loss, updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats))
    return state, {"loss": loss}

  return step


def jaxdl_step(classes, is_lm):
  return lm_train_step if is_lm else functools.partial(jaxdl.train_step, num_classes=classes)


# One program for the whole state: an eager tree_map would compile a copy per leaf shape (dozens for ResNet-50).
_copy = jax.jit(lambda tree: jax.tree_util.tree_map(jnp.copy, tree))


def steps_per_second(step, state, batch, seconds: float, repeats: int) -> tuple[float, object]:
  """Median steps/s over ``repeats`` timed blocks of about ``seconds`` each, after a warm-up."""
  state = _copy(state)  # the step donates its state
  for _ in range(2):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  t = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  n = max(2, int(seconds / max(time.perf_counter() - t, 1e-6)))
  rates = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(n):
      state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    rates.append(n / (time.perf_counter() - t))
  return statistics.median(rates), metrics


def bench_case(case: str, spec, args) -> dict:
  is_lm = spec[0] == "transformer_lm"
  model, state, batch, classes = make_case(spec, jnp.bfloat16)
  device = jax.devices()[0]
  row = {"case": case, "model": spec[0], "batch": spec[2], "params": int(jaxdl.param_count(state.params)),
         "device": device.device_kind}
  per_example = batch["x"].shape[1] if is_lm else 1  # tokens per window, or one image
  for name, fn in (("jaxdl", jaxdl_step(classes, is_lm)), ("hand", hand_step(model))):
    step = jax.jit(fn, donate_argnums=0)
    t = time.perf_counter()
    traced = step.trace(state, batch)
    traced.lower().compile()
    row[f"{name}_compile_s"] = time.perf_counter() - t
    if name == "jaxdl":
      row["flops_per_step"] = cost_lib.matmul_flops(traced.jaxpr.jaxpr)
    rate, metrics = steps_per_second(step, state, batch, args.seconds, args.repeats)
    row[f"{name}_steps_per_s"] = rate
    row[f"{name}_loss"] = float(metrics["loss"])
  row["examples_per_s" if not is_lm else "tokens_per_s"] = row["jaxdl_steps_per_s"] * spec[2] * per_example
  row["jaxdl_over_hand"] = row["jaxdl_steps_per_s"] / row["hand_steps_per_s"]
  row["mfu"] = cost_lib.mfu(row["flops_per_step"], row["jaxdl_steps_per_s"], 1,
                            cost_lib.peak_flops(device, "bfloat16"))
  return row


def compile_probe(case: str, smoke: bool) -> None:
  """In this (fresh) process: the LM's jaxdl step compiled once; prints its seconds and the cache's hits as JSON."""
  from jaxdl.train.compile import CompileClock, configure_cache
  configure_cache(True)
  spec = (SMOKE if smoke else FULL)[case]
  _, state, batch, classes = make_case(spec, jnp.bfloat16)
  with CompileClock() as clock:
    jax.jit(jaxdl_step(classes, spec[0] == "transformer_lm"), donate_argnums=0).lower(state, batch).compile()
  print(json.dumps(clock.record()))


def compile_cache(case: str, smoke: bool) -> dict:
  """Compile seconds of the same step in two fresh processes sharing a new persistent cache."""
  runs = []
  with tempfile.TemporaryDirectory() as cache:
    env = {**os.environ, "JAXDL_CACHE_DIR": cache}
    env = {k: v for k, v in env.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    for _ in range(2):
      cmd = [sys.executable, __file__, "--compile-probe", case] + (["--smoke"] if smoke else [])
      out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
      runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
  return {"case": case, "cold_s": runs[0]["compile_seconds"], "warm_s": runs[1]["compile_seconds"],
          "warm_cache_hits": runs[1]["compile_cache_hits"]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", help="folder for gpu.json")
  parser.add_argument("--smoke", action="store_true", help="tiny models, for a check on any machine")
  parser.add_argument("--cases", nargs="*", default=list(FULL), choices=list(FULL))
  parser.add_argument("--seconds", type=float, default=None, help="each timed block (default 3, smoke 0.2)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--compile-probe", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.compile_probe:
    return compile_probe(args.compile_probe, args.smoke)
  args.seconds = args.seconds or (0.2 if args.smoke else 3.0)
  specs = SMOKE if args.smoke else FULL
  started = time.perf_counter()
  result = {"device": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform,
            "jax": jax.__version__, "smoke": args.smoke, "rows": [], "compile_cache": None}

  def save():  # after each measurement, so a run cut short keeps what it measured
    result["wall_s"] = time.perf_counter() - started
    if args.out:
      out = pathlib.Path(args.out)
      out.mkdir(parents=True, exist_ok=True)
      (out / "gpu.json").write_text(json.dumps(result, indent=1))

  for case in args.cases:
    r = bench_case(case, specs[case], args)
    result["rows"].append(r)
    save()
    mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a (no known peak)"
    print(f"{case}: {r['params']:,} params, batch {r['batch']}, {r['device']}: jaxdl {r['jaxdl_steps_per_s']:.2f} "
          f"steps/s, hand {r['hand_steps_per_s']:.2f} (jaxdl/hand {r['jaxdl_over_hand']:.3f}), "
          f"{r['flops_per_step'] / 1e12:.3g} TFLOP per step, MFU {mfu}", flush=True)
  cache = result["compile_cache"] = compile_cache("lm", args.smoke)
  save()
  print(f"compile cache, lm step: {cache['cold_s']:.2f} s with an empty cache, {cache['warm_s']:.2f} s warm "
        f"({cache['warm_cache_hits']} hit)", flush=True)
  print(f"done in {result['wall_s']:.0f} s")


if __name__ == "__main__":
  main()
