"""jaxdl's train step vs a minimal hand-written ``jax.jit`` + Optax step.

Same model (the digits_cnn preset's CNN, with batch norm and dropout), same
optimizer, same on-device batches. Three ways to run N steps:

  hand      a hand-written jitted step (loss, grad, optax update, BN stats),
            called from a Python loop;
  jaxdl     ``jaxdl.train_step`` (which also reports accuracy and the
            gradient norm), jitted with the state donated, same Python loop;
  chunk     ``jaxdl.make_train_chunk``: the data on the device and N steps in
            one jitted call, as ``jaxdl run`` trains.

Prints steps/s (median of several repeats) and the ratios to ``hand``.

    python benchmarks/step_overhead.py [--steps 200] [--repeats 5] [--batch 128]
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


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--model", default="cnn")
  args = parser.parse_args()

  ds = jaxdl.load_dataset("digits")
  model = jaxdl.get_model(args.model, ds.num_classes, features=(32, 64), hidden=(128,),
                          dropout=0.3, use_batchnorm=True)
  tx = jaxdl.make_optimizer("adam", 1e-3)
  rng = jax.random.PRNGKey(0)
  x_all, y_all = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  order = np.random.default_rng(0).integers(0, len(ds.x_train), (args.steps, args.batch))
  batches = [{"x": x_all[i], "y": y_all[i]} for i in order]

  # ---- hand-written: the smallest correct step for this model.
  def hand_step(params, batch_stats, opt_state, step, batch):
    dropout_rng = jax.random.fold_in(rng, step)

    def loss_fn(p):
      logits, updates = model.apply({"params": p, "batch_stats": batch_stats}, batch["x"], train=True,
                                    rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
      labels = jax.nn.one_hot(batch["y"], ds.num_classes)
      return optax.softmax_cross_entropy(logits, labels).mean(), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    upd, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, upd), updates["batch_stats"], opt_state, step + 1, loss

  hand = jax.jit(hand_step, donate_argnums=(0, 1, 2))

  def run_hand():
    state = jaxdl.create_train_state(model, tx, rng, ds.x_train[:2])
    p, bs, o, s = state.params, state.batch_stats, state.opt_state, state.step
    for b in batches:
      p, bs, o, s, loss = hand(p, bs, o, s, b)
    return loss

  step = jax.jit(functools.partial(jaxdl.train_step, num_classes=ds.num_classes), donate_argnums=0)

  def run_jaxdl():
    state = jaxdl.create_train_state(model, tx, rng, ds.x_train[:2])
    for b in batches:
      state, metrics = step(state, b)
    return metrics["loss"]

  chunk = jax.jit(jaxdl.make_train_chunk(
      functools.partial(jaxdl.train_step, num_classes=ds.num_classes),
      num_examples=len(ds.x_train), batch_size=args.batch), donate_argnums=0)
  data = {"x": x_all, "y": y_all}
  steps_per_epoch = len(ds.x_train) // args.batch

  def run_chunk():
    state = jaxdl.create_train_state(model, tx, rng, ds.x_train[:2])
    done = 0
    while done < args.steps:
      n = min(steps_per_epoch, args.steps - done)
      state, metrics = chunk(state, data, np.int32(n))
      done += n
    return metrics["loss"]

  paths = {"hand": run_hand, "jaxdl": run_jaxdl, "chunk": run_chunk}
  for fn in paths.values():
    jax.block_until_ready(fn())  # compile
  # Interleaved repeats: drift in the machine's speed hits every path alike.
  times = {name: [] for name in paths}
  for _ in range(args.repeats):
    for name, fn in paths.items():
      t = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - t)
  results = {name: args.steps / statistics.median(ts) for name, ts in times.items()}

  print(f"backend={jax.default_backend()} devices={jax.device_count()} model={args.model} "
        f"batch={args.batch} steps={args.steps} repeats={args.repeats}")
  print(f"{'path':<8}{'steps/s':>10}{'vs hand':>10}")
  for name, rate in results.items():
    print(f"{name:<8}{rate:>10.1f}{rate / results['hand']:>10.3f}")


if __name__ == "__main__":
  main()
