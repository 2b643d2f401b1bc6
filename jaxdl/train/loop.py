"""The generic host loop: chunks of jitted steps, logging, evaluation, hooks.

The host only decides *when* things happen. All training work runs in
``chunk_fn(state, n)``, one jitted call that advances ``n`` optimizer steps on
the device; the host waits for results once per chunk (to log), never per step.
"""

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxdl.train.writers import MetricWriter, StepUnit, progress_bar
from jaxdl.utils.errors import JaxdlError

ChunkFn = Callable[[Any, int], tuple[Any, Mapping[str, jax.Array]]]
EvalFn = Callable[[Any], Mapping[str, float]]
Hook = Callable[[int, Any, Mapping[str, float]], None]


class Diverged(JaxdlError):
  """A non-finite loss, gradient or parameter under ``train.nan_policy=halt``.

  Attributes:
    step: the step whose update was non-finite (not applied).
    leaf: index, in ``tree_leaves(params)`` order, of the first parameter
      that went non-finite (-1 if only the loss did).
  """

  exit_code = 3

  def __init__(self, step: int, leaf: int, message: str = ""):
    super().__init__(message or f"non-finite loss or parameters at step {step}")
    self.step, self.leaf = step, leaf


def _boundaries(start: int, total: int, every: Sequence[int]) -> list[int]:
  """Sorted steps in (start, total] where a chunk must end."""
  stops = {total}
  for period in every:
    if period > 0:
      stops.update(range((start // period + 1) * period, total, period))
  return sorted(s for s in stops if s > start)


def run(
    state: Any,
    *,
    total_steps: int,
    chunk_fn: ChunkFn,
    eval_fn: EvalFn | None,
    writer: MetricWriter,
    log_every: int,
    eval_every: int,
    max_chunk: int,
    checkpoint_every: int = 0,
    hooks: Sequence[Hook] = (),
    desc: str = "train",
    unit: StepUnit = StepUnit(),
    stop_requested: Callable[[], bool] = lambda: False,
) -> tuple[Any, dict]:
  """Trains from ``state.step`` to ``total_steps``.

  Args:
    state: a pytree with an integer ``step`` field.
    total_steps: the step at which training ends.
    chunk_fn: advances the state by ``n`` steps and returns mean metrics.
    eval_fn: returns evaluation metrics (keys without prefix) or None.
    writer: receives ``train/*`` and ``test/*`` scalars.
    log_every: steps between training logs.
    eval_every: steps between evaluations (the final step is always evaluated).
    max_chunk: the longest chunk ``chunk_fn`` supports (e.g. one epoch).
    checkpoint_every: steps between checkpoints; chunks end there too, so a
      resumed run splits the rest of training exactly as the original did.
    hooks: called as ``hook(step, state, metrics)`` after every chunk.
    desc: the progress bar's label.
    unit: what the progress bar counts (``unit.per_step`` per step).
    stop_requested: asked after every chunk; True ends training there (a
      preemption signal arrived), and the summary's ``stopped_at`` says where.

  Returns:
    The final state and a summary: the last train and test metrics,
    ``wall_seconds``, ``first_chunk_seconds`` (compile included) and
    ``steps_per_second`` measured after the first chunk.
  """
  start = int(jax.device_get(state.step))
  stops = _boundaries(start, total_steps, (log_every, eval_every, checkpoint_every))
  summary: dict[str, float] = {}
  t_start = time.perf_counter()
  t_first = None
  scale = unit.per_step
  bar = progress_bar(total_steps * scale, initial=start * scale, desc=desc, unit=unit.name)
  step = start
  try:
    for stop in stops:
      while step < stop:
        n = min(stop - step, max_chunk)
        state, metrics = chunk_fn(state, np.int32(n))
        step += n
        metrics = dict(metrics)
        bad_step, bad_leaf = metrics.pop("nonfinite_step", None), metrics.pop("nonfinite_leaf", None)
        if bad_step is not None and int(bad_step) >= 0:  # one host sync per chunk, not per step
          raise Diverged(int(bad_step), int(bad_leaf))
        if step < stop and stop_requested():  # mid-interval: no log record here
          summary["stopped_at"] = step
          break
      if "stopped_at" in summary:
        break
      metrics = jax.device_get(metrics)
      metrics = {f"train/{k}": float(v) for k, v in metrics.items()}
      if t_first is None:
        t_first = time.perf_counter() - t_start
        step_first = step
      bar.update(stop * scale - bar.n)
      bar.set_postfix({k.split("/")[1]: f"{v:.4g}" for k, v in metrics.items()
                       if k in ("train/loss", "train/accuracy")}, refresh=False)
      if eval_fn is not None and (stop == total_steps or (eval_every > 0 and stop % eval_every == 0)):
        metrics.update({f"test/{k}": float(v) for k, v in eval_fn(state).items()})
      writer.write(stop, metrics)
      summary.update(metrics)
      for hook in hooks:
        hook(stop, state, metrics)
      if stop < total_steps and stop_requested():
        summary["stopped_at"] = stop
        break
  finally:
    bar.close()
  wall = time.perf_counter() - t_start
  summary["wall_seconds"] = wall
  summary["first_chunk_seconds"] = t_first or 0.0
  timed_steps = step - step_first if t_first is not None else 0
  if timed_steps > 0:
    summary["steps_per_second"] = timed_steps / max(wall - t_first, 1e-9)
  return state, summary
