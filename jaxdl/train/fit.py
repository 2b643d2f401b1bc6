"""``fit(task, workdir)``: the part of a run every loop shares.

A loop declares its run as a :class:`Task`: the initial state, how to advance
it by a chunk of steps, how to evaluate it, and a few hooks. ``fit`` does the
rest: the one-run-per-workdir check, resume from the newest intact
checkpoint, ``config.json``, the host loop (``jaxdl.train.loop.run``) with
checkpoints every ``checkpoint.every_steps`` and at the end, and a divergence
turned into a one-line error that names the parameter and the last good
checkpoint. :meth:`Fitted.record` is the part of ``metrics.json`` every loop
writes the same way.
"""

import contextlib
import dataclasses
import json
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax
import numpy as np
import ml_collections
import optax

from jaxdl import optim as optim_lib
from jaxdl.checkpoint import Checkpointer
from jaxdl.configs import to_dict
from jaxdl.train import compile as compile_lib
from jaxdl.train import cost as cost_lib
from jaxdl.train import parallel, precision
from jaxdl.train import sharding as sharding_lib
from jaxdl.train import workdir as workdir_lib
from jaxdl.train.loop import Diverged, run
from jaxdl.train.writers import MetricWriter, StepUnit, console, write_atomic
from jaxdl.utils.errors import JaxdlError, Preempted
from jaxdl.utils.tree import param_count, tree_sha256


class Task(Protocol):
  """What a loop hands to :func:`fit`.

  Attributes:
    config: the run's config (its ``train`` and ``checkpoint`` sections are
      read here).
    state: the initial state, where training wants it (on the devices).
    total_steps: the step to train to.
    max_chunk: the most steps one ``run_chunk`` call may take (an epoch, a
      log interval).
    eval_every: steps between evaluations; 0: only at the end.
    desc: the progress bar's label.
    unit: what the progress bar and TensorBoard count (a
      :class:`jaxdl.train.writers.StepUnit`; ``TaskBase``: the steps
      themselves). Checkpoints and ``metrics.jsonl``'s ``step`` always count
      steps.
  """

  config: ml_collections.ConfigDict
  state: Any
  total_steps: int
  max_chunk: int
  eval_every: int
  desc: str
  unit: StepUnit

  def run_chunk(self, state: Any, n) -> tuple[Any, Mapping[str, Any]]:
    """Advances ``state`` by ``n`` steps; returns it and the chunk's mean metrics."""

  def evaluate(self, state: Any) -> Mapping[str, float]:
    """Metrics on the held-out data (keys without a ``test/`` prefix)."""

  def headline(self, state: Any) -> str:
    """The line printed before training starts."""

  def param_path(self, state: Any, leaf: int) -> str:
    """The name of leaf ``leaf`` of the parameters the NaN guard checks."""

  def on_start(self, workdir: pathlib.Path, resuming: bool) -> None:
    """Called once ``workdir`` is accepted (``resuming`` an earlier run or not), before anything is written."""

  def on_checkpoint(self, step: int, state: Any, directory: pathlib.Path) -> None:
    """Called on process 0 just before checkpoint ``step`` is started in ``directory``."""

  def place_restored(self, host_state: Any, checkpoint_dir: pathlib.Path) -> Any:
    """Puts a state restored from ``checkpoint_dir`` where training wants it."""


def leaf_path(tree: Any, leaf: int, prefix: str = "params") -> str:
  """Dotted path (``params.Dense_0.kernel``) of the leaf-th leaf of ``tree``."""
  if leaf < 0:
    return "none (the loss itself)"
  path, _ = jax.tree_util.tree_flatten_with_path(tree)[0][leaf]
  return ".".join([prefix] + [str(getattr(k, "key", getattr(k, "idx", k))) for k in path])


class TaskBase:
  """Defaults for the optional parts of a :class:`Task`.

  A subclass sets ``config``, ``state``, ``total_steps``, ``max_chunk``,
  ``eval_every`` and ``mesh`` (and ``desc`` and ``unit`` where the defaults
  do not fit) and defines ``run_chunk``, ``evaluate`` and
  ``headline``; it overrides the rest where its run differs. A task whose
  state is not replicated sets ``state_shardings``
  (``jaxdl.train.sharding.state_shardings``): a restored state is placed
  with them, whatever the layout and device count it was saved under.
  """

  desc = "train"
  unit = StepUnit()
  mesh: jax.sharding.Mesh
  state_shardings: Any = None  # None: replicated over mesh

  def param_path(self, state: Any, leaf: int) -> str:
    return leaf_path(state.params, leaf)

  def on_start(self, workdir: pathlib.Path, resuming: bool) -> None:
    del workdir, resuming

  def on_checkpoint(self, step: int, state: Any, directory: pathlib.Path) -> None:
    del step, state, directory

  def chunk_program(self, state: Any) -> tuple[Any, tuple] | None:
    """``(jitted chunk, its arguments)`` as ``run_chunk`` calls it on ``state``, for the step's cost.

    The default finds ``self.chunk(state, self.train_data, n)``; a loop whose
    chunk takes other data overrides it, and None leaves the cost unreported.
    """
    chunk, data = getattr(self, "chunk", None), getattr(self, "train_data", None)
    if not (hasattr(chunk, "trace") or hasattr(chunk, "cost")) or data is None:
      return None
    return chunk, (state, data, np.int32(1))

  def place_restored(self, host_state: Any, checkpoint_dir: pathlib.Path) -> Any:
    del checkpoint_dir
    if self.state_shardings is None:
      return parallel.put_replicated(host_state, self.mesh)
    return sharding_lib.place(host_state, self.state_shardings)


def validate_schedule(config: ml_collections.ConfigDict,
                      positive: tuple[str, ...] = ("steps", "batch_size", "log_every")) -> None:
  """One-line errors for the keys :func:`fit` reads, and for ``optim.extend_*``.

  Args:
    config: the run's config.
    positive: the ``train.*`` keys that must be > 0.
  """
  t = config.train
  for key in positive:
    if t[key] <= 0:
      raise JaxdlError(f"train.{key}={t[key]} must be > 0")
  if t.eval_every < 0:
    raise JaxdlError(f"train.eval_every={t.eval_every} must be >= 0")
  if config.checkpoint.every_steps < 0:
    raise JaxdlError(f"checkpoint.every_steps={config.checkpoint.every_steps} must be >= 0 (0: only at the end)")
  if config.optim.learning_rate <= 0:
    raise JaxdlError(f"optim.learning_rate={config.optim.learning_rate} must be > 0")
  if config.optim.get("extend_from", 0):  # an extended run: its schedule's one-line errors, now
    optim_lib.schedule_from_config(config.optim, t.steps)


def optimizer_or(tx: optax.GradientTransformation | None, optim: Mapping[str, Any], total_steps: int,
                 *, name: str = "tx") -> tuple[optax.GradientTransformation, optax.Schedule | None]:
  """``(optimizer, schedule)``: the caller's ``tx`` if given, else the ``optim`` section's over ``total_steps``.

  A Task that takes an optimizer from Python calls this: the caller's
  optimizer has no schedule jaxdl knows of (None: no ``learning_rate``
  metric), and the config's ``optim.*`` keys are not read for it, which is
  said in one line.

  Raises:
    JaxdlError: ``tx`` is not an ``optax.GradientTransformation``.
  """
  if tx is None:
    return optim_lib.from_config(optim, total_steps)
  if not isinstance(tx, optax.GradientTransformation):
    raise JaxdlError(f"{name} must be an optax.GradientTransformation (optax.adam(1e-3), ...), "
                     f"not {type(tx).__name__}")
  console(f"jaxdl: training with the optimizer passed in as {name}; the config's optim.* keys are not used for it")
  return tx, None


class _StopRequest:
  signum = None

  def requested(self) -> bool:
    return self.signum is not None


@contextlib.contextmanager
def _stop_on_signals():
  """SIGTERM and SIGINT ask the host loop to stop after the current chunk.

  A second signal gets the handler that was there before (Ctrl-C twice stops
  at once). Only the main thread can take signals; elsewhere nothing changes.
  """
  stop = _StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return
  previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

  def handler(signum, frame):
    del frame
    stop.signum = signum
    for s, h in previous.items():
      signal.signal(s, h)
    console(f"jaxdl: {signal.Signals(signum).name}: stopping after this chunk to save a checkpoint "
            f"(send it again to stop at once)")

  for s in previous:
    signal.signal(s, handler)
  try:
    yield stop
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


# The final metrics every loop writes; a workdir that has them holds a finished run.
METRICS_FILE = "metrics.json"
# What "already finished" shows of a loop's metrics.json, the first that it has.
_HEADLINE_KEYS = ("test_accuracy", "test_rmse", "best_val_bpc", "val_bpc", "eval_return_mean", "high_quality_fraction",
                  "frechet_distance", "frechet_distance_raw")


@dataclasses.dataclass
class Fitted:
  """What :func:`fit` hands back to a loop's ``train_and_evaluate``.

  Attributes:
    state: the final state (on the devices).
    summary: ``jaxdl.train.loop.run``'s summary (last metrics, timings).
    history: every record written to ``metrics.jsonl`` by this process.
    start: the step this process started from (0 unless it resumed).
    checkpoint_saves, checkpoint_seconds: checkpoints written, and the time
      training waited on them.
    seed: ``train.seed``.
    finished: the saved ``metrics.json`` when the workdir held a run that had
      already finished (nothing was trained or written), else None; the loop
      then returns it as it is.
    best: ``(step, metric)`` of the checkpoint kept under
      ``checkpoints_best/`` by ``checkpoint.keep_best`` (over every
      evaluation of the run, resumed or not), else None.
    compiles: ``jaxdl.train.compile.CompileClock.record()`` of the
      programs built (or loaded from the persistent cache) while the task
      was built and fitted; set by :func:`build_and_fit`.
    cost: ``flops_per_step``, ``peak_bytes`` and on a GPU ``mfu``
      (``jaxdl.train.cost``), where the task's chunk is known.
  """

  state: Any
  summary: dict
  history: list
  start: int
  checkpoint_saves: int
  checkpoint_seconds: float
  seed: int
  finished: dict | None = None
  best: tuple[int, float] | None = None
  compiles: dict = dataclasses.field(default_factory=dict)
  cost: dict = dataclasses.field(default_factory=dict)

  def last(self, key: str) -> dict:
    """The newest ``metrics.jsonl`` record that has ``key`` ({} if none)."""
    return next((r for r in reversed(self.history) if key in r), {})

  def test_metrics(self, evaluate: Callable[[Any], Mapping[str, float]]) -> dict[str, float]:
    """The last evaluation's metrics (without the ``test/`` prefix).

    A process that resumed at the very end ran no evaluation: ``evaluate``
    scores the final state then.
    """
    test = {k[len("test/"):]: v for k, v in self.summary.items() if k.startswith("test/")}
    return test or dict(evaluate(self.state))

  def epoch_record(self, started: float, task: Any) -> dict[str, Any]:
    """:meth:`record` and what a run of a ``TrainState`` over epochs writes the same way.

    That is ``steps``, ``epochs`` (over ``task.steps_per_epoch``), ``skipped_steps``, the params'
    ``params_sha256`` and ``param_count``, and ``num_devices`` (``task.mesh``).
    """
    state = self.state
    steps = int(jax.device_get(state.step))
    return {"steps": steps, "epochs": steps / task.steps_per_epoch,
            "skipped_steps": int(jax.device_get(state.skipped)), **self.record(started),
            "params_sha256": tree_sha256(state.params), "param_count": param_count(state.params),
            "num_devices": int(task.mesh.devices.size)}

  def record(self, started: float) -> dict[str, Any]:
    """The ``metrics.json`` keys every loop writes; ``started`` is the run's ``perf_counter`` start."""
    return {
        "resumed_from_step": self.start,
        "wall_seconds": time.perf_counter() - started,
        "train_seconds": self.summary["wall_seconds"],
        "first_chunk_seconds": self.summary["first_chunk_seconds"],
        **self.compiles,
        **self.cost,
        "steps_per_second": self.summary.get("steps_per_second", 0.0),
        "checkpoint_saves": self.checkpoint_saves,
        "checkpoint_seconds": self.checkpoint_seconds,  # time training waited on checkpoints
        "backend": jax.default_backend(),
        "seed": self.seed,
    }


def build_and_fit(make_task: Callable[[], Task], config: ml_collections.ConfigDict,
                  workdir: str | pathlib.Path) -> tuple[Any, Fitted, float]:
  """What a mesh-based loop's ``train_and_evaluate`` starts with.

  Joins the multi-host job if ``train.distributed``, builds the task (every
  bad input fails there, before anything is written) and fits it.

  Returns:
    (the task, its :class:`Fitted`, the ``perf_counter`` start for
    :meth:`Fitted.record`).
  """
  parallel.maybe_initialize_distributed(config.train.distributed, config.train.distributed_timeout_s)
  started = time.perf_counter()
  with compile_lib.compiling(config.train.compile_cache) as clock:
    task = make_task()
    fitted = fit(task, workdir)
  fitted.compiles = clock.record()
  return task, fitted, started


def fit(task: Task, workdir: str | pathlib.Path) -> Fitted:
  """Trains ``task`` in ``workdir``.

  Checks the workdir (fresh start, resume of the same config, or a one-line
  refusal), restores the newest intact checkpoint, writes ``config.json``,
  runs the host loop over ``task.run_chunk`` with checkpoints every
  ``checkpoint.every_steps`` and at the end, and turns a divergence into a
  one-line error naming the parameter and the last good checkpoint.

  Returns:
    A :class:`Fitted`.
  """
  config, c = task.config, task.config.checkpoint
  workdir = pathlib.Path(workdir)
  workdir_lib.check(workdir, to_dict(config), resume=c.resume)  # one-line refusals before the lock
  with workdir_lib.lock(workdir):
    # Checked again under the lock: another run may have written the workdir meanwhile.
    resuming = workdir_lib.check(workdir, to_dict(config), resume=c.resume)
    return _fit_locked(task, workdir, resuming)


def _fit_locked(task: Task, workdir: pathlib.Path, resuming: bool) -> Fitted:
  config = task.config
  t, c = config.train, config.checkpoint
  task.on_start(workdir, resuming)
  ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=c.max_to_keep, async_save=c.async_save,
                      best_metric=c.keep_best, best_mode=c.best_mode, log=console)
  state, start = task.state, 0
  if resuming:
    restored = ckpt.restore_latest(jax.device_get(task.state))
    if restored is not None:
      host_state, start = restored
      state = task.place_restored(host_state, ckpt.directory)
  if resuming and start == task.total_steps and (workdir / METRICS_FILE).is_file():
    ckpt.close()
    return _already_finished(state, start, workdir, t.seed)  # its one line, nothing else
  if start:
    console(f"jaxdl: resuming from step {start} ({ckpt.directory / str(start)})")
  workdir.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:
    write_atomic(workdir / "config.json", json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")
  console(task.headline(state))
  cost = _step_cost(task, state)
  total_steps, every = task.total_steps, c.every_steps

  saved = []

  def save(step, state, metrics=None):
    if jax.process_index() == 0:
      task.on_checkpoint(step, state, ckpt.directory)
    ckpt.save(step, state, metrics=metrics)
    saved.append(step)

  def save_checkpoint(step, state, metrics):  # the host loop's hook
    if (every > 0 and step % every == 0) or step == total_steps:
      save(step, state, metrics)
    else:  # an evaluation between checkpoints may still be the best (checkpoint.keep_best)
      ckpt.offer_best(step, state, metrics)

  writer = MetricWriter(workdir, resume_step=start, unit=task.unit)
  try:
    with _stop_on_signals() as stop:
      state, summary = run(
          state, total_steps=total_steps, chunk_fn=task.run_chunk, eval_fn=task.evaluate,
          writer=writer, log_every=t.log_every, eval_every=task.eval_every, max_chunk=task.max_chunk,
          checkpoint_every=every, hooks=[save_checkpoint], desc=task.desc, unit=task.unit,
          stop_requested=stop.requested)
    if "stopped_at" in summary:
      at = summary["stopped_at"]
      if at not in saved:
        save(at, state)
      ckpt.close()  # on disk before the process goes
      raise Preempted(stop.signum, f"stopped by {signal.Signals(stop.signum).name} at step {at} of "
                      f"{total_steps}; checkpoint {at} is saved; the same command resumes from it")
  except Diverged as e:
    ckpt.close()  # the saves already started are good: let them land
    kept = ckpt.steps()
    raise Diverged(e.step, e.leaf,
        f"non-finite loss or parameters at step {e.step} (first non-finite parameter: "
        f"{task.param_path(state, e.leaf)}); the update was not applied; last good checkpoint: "
        f"{f'step {kept[-1]}' if kept else 'none'} (train.nan_policy=skip drops such updates)") from None
  finally:
    writer.close()
  ckpt.close()
  if cost:
    utilisation = cost_lib.mfu(cost["flops_per_step"], summary.get("steps_per_second", 0.0), task.mesh.devices.size,
                               cost_lib.peak_flops(task.mesh.devices.flat[0], precision.compute_dtype(config)))
    if utilisation is not None:
      cost["mfu"] = utilisation
  return Fitted(state=state, summary=summary, history=writer.history, start=start,
                checkpoint_saves=ckpt.saves, checkpoint_seconds=ckpt.blocking_seconds, seed=t.seed,
                best=ckpt.best(), cost=cost)


def _step_cost(task: Task, state: Any) -> dict[str, float]:
  """The step's ``flops_per_step`` and ``peak_bytes``, said once in the log; {} where the chunk is unknown."""
  program = task.chunk_program(state) if hasattr(task, "chunk_program") else None
  if program is None:
    return {}
  cost = cost_lib.chunk_cost(program[0], *program[1])
  console(f"jaxdl: {cost_lib.describe(cost, task.mesh.devices.size)}")
  return cost


def _already_finished(state: Any, step: int, workdir: pathlib.Path, seed: int) -> Fitted:
  """A rerun of a finished run: says so and leaves every file as it was."""
  metrics = json.loads((workdir / METRICS_FILE).read_text())
  shown = next((f"{k}={metrics[k]:.4g}" for k in _HEADLINE_KEYS if isinstance(metrics.get(k), (int, float))), "")
  console(f"jaxdl: the run in {workdir} already finished at step {step}{f' ({shown})' if shown else ''}; "
          f"nothing to do (its outputs are unchanged)")
  return Fitted(state=state, summary={}, history=[], start=step, checkpoint_saves=0, checkpoint_seconds=0.0,
                seed=seed, finished=metrics)
