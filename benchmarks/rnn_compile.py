"""Recurrent layers: compile time against sequence length, and step throughput.

Four measurements, each printed as a table:

  compile   seconds to trace and compile one train step (forward, backward,
            Adam) of a recurrent classifier for T = 40, 400, 4000; the scan
            body is traced once, so this should not grow with T;
  traces    how many times the cell body is traced for each T (1 per layer
            and direction, never once per step);
  cells     ms per train step and recurrent steps per second (batch x T /
            step time) of jaxdl's layers against Flax's own cells in
            ``nn.RNN``;
  hoisting  a GRU in a bare ``lax.scan`` with ``x_t @ W_i`` inside each step
            against the same GRU with the inputs of all steps projected
            before the scan (one large matmul, as cuDNN does), at three
            shapes: what jaxdl's layers chose;
  unroll    ``nn.RNN``'s ``unroll``: step time against compile time;
  executor  steps/s of the MNIST-1D GRU step called from Python against
            ``make_train_chunk``'s on-device loop (known trap 5 in docs/design.md: XLA's CPU
            convolution backward was slow inside ``lax.scan``; this checks
            that a scan nested in a scan is not).

    python benchmarks/rnn_compile.py [--batch 128] [--hidden 64] [--repeats 5]
"""

import argparse
import functools
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdl
from jaxdl.models import rnn


class FlaxCellClassifier(nn.Module):
  """The same classifier on Flax's cells, which project x_t inside the scan."""

  num_classes: int
  cell: str
  hidden: int

  @nn.compact
  def __call__(self, x, *, train):
    del train
    cell = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "tanh": nn.SimpleCell}[self.cell]
    carry, _ = nn.RNN(cell(self.hidden), return_carry=True)(x)
    h = carry[1] if self.cell == "lstm" else carry
    return nn.Dense(self.num_classes)(h)


class ScanGRU(nn.Module):
  """A GRU in a bare ``lax.scan``, its input projection inside or before the scan."""

  num_classes: int
  hidden: int
  hoist: bool

  @nn.compact
  def __call__(self, x, *, train):
    del train
    h_size = self.hidden
    batch, _, c_in = x.shape
    w_i = self.param("w_i", nn.initializers.lecun_normal(), (c_in, 3 * h_size))
    b_i = self.param("b_i", nn.initializers.zeros, (3 * h_size,))
    w_h = self.param("w_h", nn.initializers.orthogonal(), (h_size, 3 * h_size))
    b_h = self.param("b_h", nn.initializers.zeros, (3 * h_size,))
    xs = jnp.swapaxes(x, 0, 1)  # (T, B, C)
    if self.hoist:
      xs = xs @ w_i + b_i  # (T, B, 3H): one matmul for every step

    def step(h, x_t):
      xw = x_t if self.hoist else x_t @ w_i + b_i
      xr, xz, xn = jnp.split(xw, 3, -1)
      hr, hz, hn = jnp.split(h @ w_h + b_h, 3, -1)
      r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
      return (1 - z) * jnp.tanh(xn + r * hn) + z * h, None

    h, _ = jax.lax.scan(step, jnp.zeros((batch, h_size)), xs)
    return nn.Dense(self.num_classes)(h)


def make_step(model, tx):
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = model.apply({"params": p}, x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def setup(model, batch, steps, channels=1, seed=0):
  x = jnp.asarray(np.random.default_rng(seed).standard_normal((batch, steps, channels), np.float32))
  y = jnp.zeros((batch,), jnp.int32)
  params = jax.jit(functools.partial(model.init, train=False))(jax.random.PRNGKey(0), x)["params"]
  tx = optax.adam(1e-3)
  return params, tx.init(params), x, y, make_step(model, tx)


def compile_seconds(model, batch, steps):
  params, opt_state, x, y, step = setup(model, batch, steps)
  t = time.perf_counter()
  jax.jit(step).lower(params, opt_state, x, y).compile()
  return time.perf_counter() - t


def ms_per_step(model, batch, steps, repeats, iters=20, channels=1):
  params, opt_state, x, y, step = setup(model, batch, steps, channels)
  step = jax.jit(step, donate_argnums=(0, 1))
  params, opt_state, loss = step(params, opt_state, x, y)
  loss.block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(iters):
      params, opt_state, loss = step(params, opt_state, x, y)
    loss.block_until_ready()
    times.append((time.perf_counter() - t) / iters * 1e3)
  return statistics.median(times)


def count_traces(cell_kind, hidden, steps):
  """Traces of the cell body while jitting a forward pass over ``steps`` steps."""
  calls = []
  original = rnn.RecurrentCell.__call__

  def counting(self, carry, xw):
    calls.append(1)
    return original(self, carry, xw)

  rnn.RecurrentCell.__call__ = counting
  try:
    model = jaxdl.get_model(cell_kind, 10, hidden=hidden)
    x = jnp.zeros((2, steps, 1))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    calls.clear()
    jax.jit(functools.partial(model.apply, train=False)).lower(variables, x)
    return len(calls)
  finally:
    rnn.RecurrentCell.__call__ = original


def executor_steps_per_second(batch, hidden, steps=200, repeats=3):
  ds = jaxdl.load_dataset("mnist1d")
  model = jaxdl.get_model("gru", ds.num_classes, hidden=hidden)
  tx = optax.adam(1e-3)
  state = jaxdl.create_train_state(model, tx, jax.random.PRNGKey(0), ds.x_train[:2])
  train_step = functools.partial(jaxdl.train_step, num_classes=ds.num_classes)
  data = {"x": jnp.asarray(ds.x_train), "y": jnp.asarray(ds.y_train)}
  order = np.random.default_rng(0).integers(0, ds.num_train, (steps, batch))
  batches = [{"x": data["x"][i], "y": data["y"][i]} for i in order]

  step = jax.jit(train_step, donate_argnums=0)
  s, m = step(state, batches[0])
  jax.block_until_ready(m)
  loop_times = []
  for _ in range(repeats):
    t = time.perf_counter()
    for b in batches:
      s, m = step(s, b)
    jax.block_until_ready(m)
    loop_times.append(time.perf_counter() - t)

  n = min(steps, ds.num_train // batch)  # a chunk is at most one epoch
  chunk = jax.jit(jaxdl.make_train_chunk(train_step, num_examples=ds.num_train, batch_size=batch),
                  donate_argnums=0)
  state = jaxdl.create_train_state(model, tx, jax.random.PRNGKey(0), ds.x_train[:2])
  s, m = chunk(state, data, np.int32(n))
  jax.block_until_ready(m)
  chunk_times = []
  for _ in range(repeats):
    t = time.perf_counter()
    s, m = chunk(s, data, np.int32(n))
    jax.block_until_ready(m)
    chunk_times.append((time.perf_counter() - t) * steps / n)
  return steps / statistics.median(loop_times), steps / statistics.median(chunk_times)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--hidden", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--lengths", type=int, nargs="+", default=[40, 400, 4000])
  args = parser.parse_args()
  print(f"jax {jax.__version__}, {jax.default_backend()}, {len(jax.devices())} device(s); "
        f"batch {args.batch}, hidden {args.hidden}\n")

  print("compile: seconds to trace + compile one train step (jaxdl layers, unroll 1)")
  print("| cell | " + " | ".join(f"T={t}" for t in args.lengths) + " |")
  print("|---|" + "---|" * len(args.lengths))
  for kind in ("rnn", "lstm", "gru"):
    secs = [compile_seconds(jaxdl.get_model(kind, 10, hidden=args.hidden), args.batch, t)
            for t in args.lengths]
    print(f"| {kind} | " + " | ".join(f"{s:.2f}" for s in secs) + " |", flush=True)

  print("\ntraces: cell-body traces while jitting a forward pass")
  print("| model | " + " | ".join(f"T={t}" for t in args.lengths) + " |")
  print("|---|" + "---|" * len(args.lengths))
  for kind in ("lstm", "gru"):
    print(f"| {kind} | " + " | ".join(str(count_traces(kind, args.hidden, t))
                                      for t in args.lengths) + " |", flush=True)

  print("\ncells: train step (forward + backward + Adam) at T=40, median of repeats")
  print("| cell | jaxdl ms/step | Flax cell ms/step | speed-up | jaxdl recurrent steps/s |")
  print("|---|---|---|---|---|")
  for kind, flax_kind in (("rnn", "tanh"), ("lstm", "lstm"), ("gru", "gru")):
    ours = ms_per_step(jaxdl.get_model(kind, 10, hidden=args.hidden), args.batch, 40, args.repeats)
    theirs = ms_per_step(FlaxCellClassifier(10, flax_kind, args.hidden), args.batch, 40,
                         args.repeats)
    print(f"| {kind} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f}x | "
          f"{args.batch * 40 / ours * 1e3:,.0f} |", flush=True)

  print("\nhoisting: GRU train step at T=40 (ms), input projection inside / before the scan")
  print("| batch, C, H | inside | before | before / inside |")
  print("|---|---|---|---|")
  for batch, channels, hidden in ((128, 1, 64), (32, 64, 256), (32, 256, 256)):
    inside, before = (ms_per_step(ScanGRU(10, hidden, hoist), batch, 40, args.repeats,
                                  channels=channels) for hoist in (False, True))
    print(f"| {batch}, {channels}, {hidden} | {inside:.2f} | {before:.2f} | {before / inside:.2f}x |",
          flush=True)

  print("\nunroll: jaxdl GRU train step at T=40 and compile at T=4000")
  print("| unroll | ms/step | compile T=4000 (s) |")
  print("|---|---|---|")
  for unroll in (1, 2, 4, 8):
    model = jaxdl.get_model("gru", 10, hidden=args.hidden, unroll=unroll)
    print(f"| {unroll} | {ms_per_step(model, args.batch, 40, args.repeats):.2f} | "
          f"{compile_seconds(model, args.batch, 4000):.2f} |", flush=True)

  loop, chunk = executor_steps_per_second(args.batch, args.hidden)
  print("\nexecutor: MNIST-1D GRU train step, steps/s")
  print("| python loop of jit(step) | make_train_chunk (lax.fori_loop) | ratio |")
  print("|---|---|---|")
  print(f"| {loop:.1f} | {chunk:.1f} | {chunk / loop:.2f}x |")


if __name__ == "__main__":
  main()
