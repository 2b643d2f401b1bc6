"""Conv implementations in a CNN train step: Python loop vs inside ``lax.scan``.

XLA's CPU backend was measured running a convolution's backward pass about 8x
slower inside ``lax.scan`` than called from Python; ``jaxdl.models.Conv`` can
express the conv as shifted slices plus one matmul (im2col) instead. This
script times one train step (forward, backward, Adam update) of
``jaxdl.models.CNN`` (conv-relu-max_pool x2 with 32 and 64 channels, a
128-unit hidden layer, 10 classes) at batch 128 for both implementations,
called two ways:

  loop: a jitted step called from a Python loop (one dispatch per step);
  scan: one jitted ``lax.scan`` over 50 steps (how jaxdl runs whole epochs and
        vmapped seeds).

The numbers behind ``conv.resolve_conv_impl``'s 'auto' rule come from here;
rerun it on a new backend or JAX version before changing that rule.

  python -m benchmarks.conv_in_scan [--repeats 5] [--steps 50]   # repo root

It takes about 6 minutes on a 2-core CPU, most of it in the one scan of
XLA's conv at 28x28.
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.models import CNN

# (label, per-example input shape)
CASES = (
    ('1-D (40, 1)', (40, 1)),
    ('2-D (8, 8, 1)', (8, 8, 1)),
    ('2-D (28, 28, 1)', (28, 28, 1)),
)
IMPLS = ('xla', 'im2col')
BATCH = 128
NUM_CLASSES = 10


def make_step(model, tx):
  """A pure train step: (params, opt_state), (x, y) -> new state, loss."""

  def loss_fn(params, x, y):
    logits = model.apply({'params': params}, x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(state, batch):
    params, opt_state = state
    loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  return step


def _best_of(fn, repeats: int, budget_s: float) -> float:
  """Minimum wall time of ``fn()`` over up to ``repeats`` runs.

  The minimum, not the mean: on a shared machine noise only ever adds time.
  Stops early once ``budget_s`` of timed runs is spent, since one scan of the
  slowest case (XLA's conv inside scan, 28x28) takes minutes on a 2-core CPU.
  """
  times = []
  while len(times) < repeats and sum(times) < budget_s:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return min(times)


def time_case(shape, impl: str, steps: int, repeats: int,
              budget_s: float) -> tuple[float, float]:
  """Returns (loop, scan) milliseconds per step for one input shape and impl."""
  model = CNN(NUM_CLASSES, conv_impl=impl)
  tx = optax.adam(1e-3)
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.standard_normal((steps, BATCH, *shape), np.float32))
  ys = jnp.asarray(rng.integers(0, NUM_CLASSES, (steps, BATCH)))
  params = model.init(jax.random.PRNGKey(0), xs[0], train=False)['params']
  state = (params, tx.init(params))
  step = make_step(model, tx)
  batches = [(xs[i], ys[i]) for i in range(steps)]  # sliced once, off the clock

  # Compiled ahead of time, so no timed run (and no warm-up run) compiles.
  jit_step = jax.jit(step).lower(state, batches[0]).compile()
  scanned = jax.jit(lambda s, xs, ys: jax.lax.scan(step, s, (xs, ys))[1])
  scanned = scanned.lower(state, xs, ys).compile()

  def loop():
    s = state
    for batch in batches:
      s, loss = jit_step(s, batch)
    return loss

  t_loop = _best_of(loop, repeats, budget_s)
  t_scan = _best_of(functools.partial(scanned, state, xs, ys), repeats, budget_s)
  return 1e3 * t_loop / steps, 1e3 * t_scan / steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=50)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--budget', type=float, default=10.0,
                      help='seconds of timed runs per measurement, at most')
  args = parser.parse_args()

  print(f'backend {jax.default_backend()} ({jax.devices()[0].device_kind}), '
        f'jax {jax.__version__}, batch {BATCH}, {args.steps} steps, '
        f'best of up to {args.repeats} runs; ms/step')
  header = (f"{'case':16} {'impl':7} {'loop':>8} {'scan':>8} {'scan/loop':>10}")
  print(header)
  print('-' * len(header))
  results = {}
  for label, shape in CASES:
    for impl in IMPLS:
      loop_ms, scan_ms = time_case(shape, impl, args.steps, args.repeats,
                                    args.budget)
      results[label, impl] = loop_ms, scan_ms
      print(f'{label:16} {impl:7} {loop_ms:8.2f} {scan_ms:8.2f} '
            f'{scan_ms / loop_ms:10.2f}', flush=True)
  print()
  print(f"{'case':16} {'xla/im2col loop':>16} {'xla/im2col scan':>16}  fastest in scan")
  for label, _ in CASES:
    (xl, xs), (il, is_) = results[label, 'xla'], results[label, 'im2col']
    print(f'{label:16} {xl / il:16.2f} {xs / is_:16.2f}  '
          f"{'im2col' if is_ < xs else 'xla'}")


if __name__ == '__main__':
  main()
