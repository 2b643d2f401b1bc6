"""jaxdl's train step vs a minimal hand-written ``jax.jit`` + Optax step, per model family.

For each family, the model of its preset (mlp: digits_mlp, cnn: digits_cnn,
resnet: mnist1d_resnet, gru: mnist1d_gru, lstm: mnist1d_lstm, transformer:
mnist1d_transformer), with the preset's dropout and batch norm, on the
preset's data, with Adam at 1e-3 and the same on-device batches. Three ways
to run N steps:

  hand      a hand-written jitted step (loss, grad, optax update, BN stats
            where the model has them), called from a Python loop;
  jaxdl     ``jaxdl.train_step`` (which also reports accuracy and the
            gradient norm), jitted with the state donated, same Python loop;
  chunk     ``jaxdl.make_train_chunk``: the data on the device and N steps in
            one jitted call, as ``jaxdl run`` trains.

Prints steps/s (median of interleaved repeats) and the ratios to ``hand``.

    python benchmarks/step_overhead.py [FAMILY ...] [--steps 200] [--repeats 5] [--batch 128]
"""

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdl
from jaxdl.models import options_from_config


FAMILIES = {"mlp": "digits_mlp", "cnn": "digits_cnn", "resnet": "mnist1d_resnet", "gru": "mnist1d_gru",
            "lstm": "mnist1d_lstm", "transformer": "mnist1d_transformer"}


def bench(family: str, steps: int, repeats: int, batch_size: int) -> dict[str, float]:
  """Steps/s of the three paths on one family's model."""
  config, _ = jaxdl.load_preset(FAMILIES[family])
  ds = jaxdl.load_dataset(config.data.name)
  model = jaxdl.get_model(config.model.name, ds.num_classes, **options_from_config(config.model))
  tx = jaxdl.make_optimizer("adam", 1e-3)
  rng = jax.random.PRNGKey(0)
  x_all, y_all = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  order = np.random.default_rng(0).integers(0, len(ds.x_train), (steps, batch_size))
  batches = [{"x": x_all[i], "y": y_all[i]} for i in order]
  initial = jaxdl.create_train_state(model, tx, rng, ds.x_train[:2])
  new_state = lambda: jax.tree_util.tree_map(jnp.copy, initial)  # a fresh copy per run: the steps donate it
  has_bn = bool(initial.batch_stats)

  # ---- hand-written: the smallest correct step for this model.
  def hand_step(params, batch_stats, opt_state, step, batch):
    dropout_rng = jax.random.fold_in(rng, step)

    def loss_fn(p):
      variables = {"params": p, **({"batch_stats": batch_stats} if has_bn else {})}
      logits, updates = model.apply(variables, batch["x"], train=True, rngs={"dropout": dropout_rng},
                                    mutable=["batch_stats"] if has_bn else [])
      labels = jax.nn.one_hot(batch["y"], ds.num_classes)
      return optax.softmax_cross_entropy(logits, labels).mean(), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    upd, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, upd), updates.get("batch_stats", batch_stats), opt_state, step + 1, loss

  hand = jax.jit(hand_step, donate_argnums=(0, 1, 2))

  def run_hand():
    state = new_state()
    p, bs, o, s = state.params, state.batch_stats, state.opt_state, state.step
    for b in batches:
      p, bs, o, s, loss = hand(p, bs, o, s, b)
    return loss

  step = jax.jit(functools.partial(jaxdl.train_step, num_classes=ds.num_classes), donate_argnums=0)

  def run_jaxdl():
    state = new_state()
    for b in batches:
      state, metrics = step(state, b)
    return metrics["loss"]

  chunk = jax.jit(jaxdl.make_train_chunk(
      functools.partial(jaxdl.train_step, num_classes=ds.num_classes),
      num_examples=len(ds.x_train), batch_size=batch_size), donate_argnums=0)
  data = {"x": x_all, "y": y_all}
  steps_per_epoch = len(ds.x_train) // batch_size

  def run_chunk():
    state = new_state()
    done = 0
    while done < steps:
      n = min(steps_per_epoch, steps - done)
      state, metrics = chunk(state, data, np.int32(n))
      done += n
    return metrics["loss"]

  paths = {"hand": run_hand, "jaxdl": run_jaxdl, "chunk": run_chunk}
  for fn in paths.values():
    jax.block_until_ready(fn())  # compile
  # Interleaved repeats: drift in the machine's speed hits every path alike.
  times = {name: [] for name in paths}
  for _ in range(repeats):
    for name, fn in paths.items():
      t = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - t)
  return {name: steps / statistics.median(ts) for name, ts in times.items()}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("families", nargs="*", help=f"default: all of {', '.join(FAMILIES)}")
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--batch", type=int, default=128)
  args = parser.parse_args()
  unknown = [f for f in args.families if f not in FAMILIES]
  if unknown:
    parser.error(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {unknown}; choose from {', '.join(FAMILIES)}")
  print(f"backend={jax.default_backend()} devices={jax.device_count()} batch={args.batch} steps={args.steps} "
        f"repeats={args.repeats}; steps/s, and the ratio to the hand-written step")
  print(f"{'family':<12}{'hand':>9}{'jaxdl':>9}{'chunk':>9}{'jaxdl/hand':>12}{'chunk/hand':>12}", flush=True)
  for family in args.families or FAMILIES:
    r = bench(family, args.steps, args.repeats, args.batch)
    print(f"{family:<12}{r['hand']:>9.1f}{r['jaxdl']:>9.1f}{r['chunk']:>9.1f}"
          f"{r['jaxdl'] / r['hand']:>12.3f}{r['chunk'] / r['hand']:>12.3f}", flush=True)


if __name__ == "__main__":
  main()
