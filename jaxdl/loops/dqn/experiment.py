"""``train_and_evaluate(config, workdir)`` for DQN: either executor, checkpoints, outputs.

Both executors resume bit-exactly after a kill: the jitted one keeps its
environments in the checkpointed state, the host loop snapshots its Gymnasium
envs beside every checkpoint (``jaxdl.loops.dqn.host``).
"""

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl.loops.dqn.jitted import RunState, commit, keep_best
from jaxdl.loops.dqn.plots import plot_returns
from jaxdl.loops.dqn.runner import DQNRunner, make_runner
from jaxdl.train import compile as compile_lib
from jaxdl.train.fit import TaskBase, fit
from jaxdl.train.writers import StepUnit, console, write_json
from jaxdl.utils.tree import param_count, tree_sha256


def _per_seed(prefix: str, values) -> dict[str, float]:
  values = np.asarray(values, np.float64)
  return {f"{prefix}/seed{i}": float(v) for i, v in enumerate(values)}


class DQNTask(TaskBase):
  """What ``jaxdl.train.fit`` drives for DQN: a runner's chunks, validation and evaluation.

  A step of this loop is an *iteration* (``env.num_envs`` env steps of every
  seed, then the updates); a chunk is at most one log interval long.
  ``train.eval_every=0`` evaluates only at the end. The progress bar and
  TensorBoard count environment steps per seed, the unit of
  ``train.env_steps`` (``unit``).
  """

  desc = "dqn"

  def __init__(self, config: ml_collections.ConfigDict, runner: DQNRunner):
    self.config, self.runner = config, runner
    t, self.setup = config.train, runner.setup
    self.state = runner.init()
    self.total_steps, self.max_chunk, self.eval_every = self.setup.iterations, t.log_every, t.eval_every
    self.unit = StepUnit("env_steps", self.setup.num_envs)  # per seed, as train.env_steps counts
    self.select_best = config.eval.select == "best"
    self.validate_every = config.eval.validate_every or t.log_every
    self.last_returns = None  # (S, episodes) of the newest evaluation
    self.n_params = param_count(jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                                                       self.state.seeds.learner.params))  # no device work

  def run_chunk(self, state: RunState, n) -> tuple[RunState, dict]:
    before = int(jax.device_get(state.step))
    state, metrics = self.runner.chunk(state, int(n))
    metrics = jax.device_get(metrics)  # one transfer per chunk, for the log
    out = {}
    for key, values in metrics.items():
      with np.errstate(all="ignore"):
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
      if key == "episode_return":
        out.update(_per_seed("episode_return", values))
    after = before + int(n)
    if self.select_best and (after // self.validate_every > before // self.validate_every
                             or after == self.setup.iterations):
      scores = np.asarray(jax.device_get(self.runner.validate(state)), np.float64).mean(axis=1)  # (S,)
      best = keep_best(state.best, state.seeds.learner.params, jnp.asarray(scores, jnp.float32), state.step)
      state = state.replace(best=best)
      out["validation_return"] = float(scores.mean())
      out.update(_per_seed("validation_return", scores))
    return state, out

  def evaluate(self, state: RunState) -> dict[str, float]:
    returns = np.asarray(jax.device_get(self.runner.evaluate(state)), np.float64)  # (S, episodes)
    self.last_returns = returns
    return {"return": float(returns.mean()), **_per_seed("return", returns.mean(axis=1))}

  def headline(self, state: RunState) -> str:
    c, t, setup = self.config, self.config.train, self.setup
    return (f"jaxdl: DQN ({c.model.name}, {self.n_params:,} params) on {c.env.id} ({c.env.backend}), "
            f"{t.num_seeds} seed(s) x {c.env.num_envs} envs, {setup.iterations * setup.num_envs} env "
            f"steps per seed, {jax.default_backend()}")

  def param_path(self, state: RunState, leaf: int) -> str:
    del state
    return f"leaf {leaf}"  # DQN's chunks have no NaN guard: fit never asks

  def on_checkpoint(self, step: int, state: RunState, directory: pathlib.Path) -> None:
    self.runner.save_envs(step, state, directory)

  def place_restored(self, host_state: Any, checkpoint_dir: pathlib.Path) -> RunState:
    # The host loop's env snapshots lie beside fit's checkpoints.
    return self.runner.after_restore(commit(host_state), checkpoint_dir)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
  """Trains DQN as the config says (``train.num_seeds`` seeds at once) and evaluates it greedily.

  Writes into ``workdir``: ``config.json``, ``metrics.jsonl`` (per-seed
  training returns per log, greedy returns per evaluation; each record's
  ``step`` is the iteration and ``env_steps`` the env steps per seed),
  TensorBoard events (against env steps per seed), ``checkpoints/``, ``learning_curves.png`` (with the reported return marked) and ``metrics.json`` with
  ``eval_return_mean`` (over seeds of each seed's mean over
  ``eval.episodes`` greedy episodes), ``eval_return_std`` (across seeds),
  ``eval_return_per_seed``, ``env_steps`` (all seeds), ``env_steps_per_second``,
  ``wall_seconds`` and ``params_sha256`` (every seed's final online params).

  The evaluated policy is the last one, or with ``eval.select='best'`` each
  seed's policy that scored highest on validation episodes (seeded apart
  from the evaluation ones) during training; metrics.json then also has
  ``selected_env_steps_per_seed``, ``selected_validation_return_per_seed``
  and ``last_policy_return_per_seed`` (the last policy on the evaluation
  episodes), and metrics.jsonl the validation returns.

  A workdir that already holds this run resumes from its newest intact
  checkpoint, and the result is bit-identical to an uninterrupted run, replay
  buffer and environments included: on the jitted path (``env.backend=jax``)
  the environments are part of the checkpointed state; on the host loop
  (``env.backend=gym``) they are snapshotted beside each checkpoint under
  ``checkpoints_envs/`` (see ``jaxdl.loops.dqn.host``). Where a host env cannot be
  snapshotted exactly, or its snapshot is missing or damaged, a one-line
  warning says so and the resumed run starts fresh episodes.

  Returns:
    The final state (``jitted.RunState``) and the final metrics dict.
  """
  t0 = time.perf_counter()
  with compile_lib.compiling(config.train.compile_cache) as clock:
    runner = make_runner(config)  # every bad input fails here, before anything is written
    try:
      task = DQNTask(config, runner)
      fitted = fit(task, workdir)
    finally:
      runner.close()
  fitted.compiles = clock.record()
  t, setup = config.train, runner.setup
  workdir = pathlib.Path(workdir)
  select_best = config.eval.select == "best"
  if fitted.finished is not None:  # a rerun of a finished run: nothing trained, nothing written
    return fitted.state, fitted.finished
  state, summary, start = fitted.state, fitted.summary, fitted.start
  if task.last_returns is None:  # nothing left to train after a resume: evaluate now
    task.evaluate(state)
  last_returns = task.last_returns
  # The policy the run reports: the last one, or each seed's best-validated one.
  returns = (np.asarray(jax.device_get(runner.evaluate(state, state.best["params"])), np.float64)
             if select_best else last_returns)
  per_seed = returns.mean(axis=1)
  env_steps = int(jax.device_get(state.step)) * setup.num_envs * t.num_seeds
  trained = (int(jax.device_get(state.step)) - start) * setup.num_envs * t.num_seeds
  final = {
      "eval_return_mean": float(per_seed.mean()),
      "eval_return_std": float(per_seed.std()),
      "eval_return_per_seed": [float(v) for v in per_seed],
      "eval_return_min_episode": float(returns.min()),
      "eval_episodes_per_seed": int(returns.shape[1]),
      "eval_select": config.eval.select,
      # With select='best': the env steps (per seed) at which each seed's reported policy
      # was taken, its validation score, and what the last policy scores on the same episodes.
      **({"selected_env_steps_per_seed": [int(v) * setup.num_envs for v in jax.device_get(state.best["step"])],
          "selected_validation_return_per_seed": [float(v) for v in jax.device_get(state.best["score"])],
          "last_policy_return_per_seed": [float(v) for v in last_returns.mean(axis=1)],
          "last_policy_return_mean": float(last_returns.mean())} if select_best else {}),
      "env_steps": env_steps,
      "env_steps_per_seed": env_steps // t.num_seeds,
      "env_steps_per_second": trained / max(summary["wall_seconds"], 1e-9),
      "updates_per_seed": int(jax.device_get(state.seeds.learner.updates)[0]),
      **fitted.record(t0),
      "params_sha256": tree_sha256(state.seeds.learner.params),
      "state_sha256": tree_sha256(state.seeds),
      "param_count": task.n_params,
      "num_seeds": t.num_seeds,
      "env_id": config.env.id,
      "env_backend": config.env.backend,
  }
  if jax.process_index() == 0:
    write_json(workdir / "metrics.json", final)
    plot_returns(fitted.history, workdir / "learning_curves.png", num_seeds=t.num_seeds,
                 env_steps_per_step=setup.num_envs, title=f"DQN on {config.env.id} ({t.num_seeds} seeds)",
                 reported=final["eval_return_mean"],
                 reported_label="reported (best-validated policies)" if select_best else "reported (last policies)")
  console(f"eval_return_mean={final['eval_return_mean']:.1f} +- {final['eval_return_std']:.1f} per seed "
          f"{[round(v, 1) for v in final['eval_return_per_seed']]} ({env_steps} env steps, "
          f"{final['wall_seconds']:.1f} s) -> {workdir}/metrics.json")
  return state, final
