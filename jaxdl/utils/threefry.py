"""Threefry without a loop on the CPU, for programs of many small random draws.

``jax.random``'s default generator is the Threefry-2x32 hash (Salmon et al.
2011, "Parallel random numbers: as easy as 1, 2, 3"): 20 rounds of 32-bit
adds, rotations and xors. JAX lowers it on GPU and TPU as those 20 rounds in
a straight line, and on the CPU as a ``while`` loop of 5 iterations of 4
rounds each. The loop suits big draws (a dropout mask, a dataset
permutation): with the straight line, XLA copies the 20 rounds into every
fusion that reads the draw, and two of this project's supervised preset tests
took 18% and 26% more CPU time that way. It does not suit a DQN iteration, which draws about
25 times from tiny arrays (keys, exploration, environment resets, replay
indices): each draw becomes a loop that XLA compiles on its own and runs with
a loop's overhead at every call.

Inside :func:`straight_line`, programs lowered for the CPU get the straight
line that JAX uses everywhere else. It is the same integer arithmetic, so
every random bit is the same (``tests/test_threefry.py`` compares them); only
compile time and speed change. The jitted DQN path compiles and runs its
programs inside it. Measured on this project's 2-core CPU (jax 0.10.2): the
whole ``dqn_cartpole`` run (10 seeds, compile included) took 36.2, 37.1 and
38.8 s with it against 44.2, 45.7 and 45.8 s without, ending on the same
parameters bit for bit; ``benchmarks/dqn_env_throughput.py`` collected 2.3x
more env steps per second at 8 environments per seed.

The lowering rule it installs is internal to JAX. If a JAX release moves it,
:func:`available` is False and :func:`straight_line` changes nothing (the
test suite then fails, so it is noticed).
"""

import contextlib
import threading

from jax.extend.random import threefry2x32_p
from jax.interpreters import mlir


def _rules():
  """(straight-line rule, loop rule), or None if this JAX does not have them where expected."""
  try:
    from jax._src.random import threefry2x32 as impl
    return impl._threefry2x32_lowering_rule, impl._threefry2x32_cpu_lowering_rule
  except (ImportError, AttributeError):
    return None


_RULES = _rules()
_lock = threading.Lock()
_depth = [0]  # how many straight_line() blocks are open, over all threads


def available() -> bool:
  """Whether this JAX has the two lowering rules where :func:`straight_line` expects them."""
  return _RULES is not None


@contextlib.contextmanager
def straight_line():
  """Programs lowered inside get Threefry as a straight line on the CPU.

  JAX lowers a jitted function at its first call for a given input shape, so
  wrap the calls (not only the definition). Blocks nest and may be open in
  several threads at once: JAX's own CPU rule comes back when the last one
  closes. The rule is global while a block is open, so a program another
  thread lowers meanwhile gets it too (its bits are the same either way).
  """
  if _RULES is None:
    yield
    return
  with _lock:
    if _depth[0] == 0:
      mlir.register_lowering(threefry2x32_p, _RULES[0], platform="cpu")
    _depth[0] += 1
  try:
    yield
  finally:
    with _lock:
      _depth[0] -= 1
      if _depth[0] == 0:
        mlir.register_lowering(threefry2x32_p, _RULES[1], platform="cpu")
