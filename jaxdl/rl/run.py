"""``train_and_evaluate(config, workdir)`` for DQN: either executor, checkpoints, outputs.

Both executors resume bit-exactly after a kill: the jitted one keeps its
environments in the checkpointed state, the host loop snapshots its Gymnasium
envs beside every checkpoint (``jaxdl.rl.host``).
"""

import dataclasses
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import envs as envs_lib
from jaxdl.rl.anakin import keep_best
from jaxdl.rl.config import validate
from jaxdl.rl.plots import plot_returns
from jaxdl.supervised import fit
from jaxdl.train.writers import console, write_json
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256


def make_runner(config: ml_collections.ConfigDict):
  """The executor the config asks for: ``anakin.Runner`` (jax) or ``host.HostRunner`` (gym).

  Raises:
    JaxdlError: an unknown id, an id with no JAX port under ``env.backend=jax``,
      or a non-discrete action space.
  """
  validate(config)
  env_id = config.env.id
  if config.env.backend == "jax":
    if env_id not in envs_lib.JAX_ENVS:
      envs_lib.check_env_id(env_id)  # unknown anywhere: say so first
      raise JaxdlError(f"env.id='{env_id}' has no JAX-native port (those are: {', '.join(envs_lib.JAX_ENVS)}); "
                       f"run it on the host with --set env.backend=gym")
    from jaxdl.rl.anakin import Runner
    return Runner(config)
  from jaxdl.rl.host import HostRunner
  return HostRunner(config)


@dataclasses.dataclass
class _Experiment:
  """What ``supervised.fit`` drives: the config, the initial state, the chunk and the save hook."""

  config: ml_collections.ConfigDict
  state: Any
  run_chunk: Callable[[Any, int], tuple[Any, dict]]
  steps_per_epoch: int
  on_checkpoint: Callable[[int, Any, pathlib.Path], None] | None = None


def _per_seed(prefix: str, values) -> dict[str, float]:
  values = np.asarray(values, np.float64)
  return {f"{prefix}/seed{i}": float(v) for i, v in enumerate(values)}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
  """Trains DQN as the config says (``train.num_seeds`` seeds at once) and evaluates it greedily.

  Writes into ``workdir``: ``config.json``, ``metrics.jsonl`` (per-seed
  training returns per log, greedy returns per evaluation), TensorBoard
  events, ``checkpoints/``, ``learning_curve.png`` and ``metrics.json`` with
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
  ``checkpoints_envs/`` (see ``jaxdl.rl.host``). Where a host env cannot be
  snapshotted exactly, or its snapshot is missing or damaged, a one-line
  warning says so and the resumed run starts fresh episodes.

  Returns:
    The final state (``anakin.RunState``) and the final metrics dict.
  """
  t0 = time.perf_counter()
  runner = make_runner(config)  # every bad input fails here, before anything is written
  t, setup = config.train, runner.setup
  workdir = pathlib.Path(workdir)
  last_eval = {}

  select_best = config.eval.select == "best"
  validate_every = config.eval.validate_every or t.log_every

  def chunk_fn(state, n):
    before = int(jax.device_get(state.step))
    state, metrics = runner.chunk(state, int(n))
    metrics = jax.device_get(metrics)  # one transfer per chunk, for the log
    out = {}
    for key, values in metrics.items():
      with np.errstate(all="ignore"):
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
      if key == "episode_return":
        out.update(_per_seed("episode_return", values))
    after = before + int(n)
    if select_best and (after // validate_every > before // validate_every or after == setup.iterations):
      scores = np.asarray(jax.device_get(runner.validate(state)), np.float64).mean(axis=1)  # (S,)
      best = keep_best(state.best, state.seeds.learner.params, jnp.asarray(scores, jnp.float32), state.step)
      state = state.replace(best=best)
      out["validation_return"] = float(scores.mean())
      out.update(_per_seed("validation_return", scores))
    return state, out

  def eval_fn(state):
    returns = np.asarray(jax.device_get(runner.evaluate(state)), np.float64)  # (S, episodes)
    last_eval["returns"] = returns
    return {"return": float(returns.mean()), **_per_seed("return", returns.mean(axis=1))}

  def place(host_state):
    state = jax.device_put(host_state)
    # fit's Checkpointer writes into workdir/checkpoints; the host loop's env
    # snapshots lie beside it.
    return runner.after_restore(state, workdir / "checkpoints") if hasattr(runner, "after_restore") else state

  state = runner.init()
  n_params = param_count(jax.tree_util.tree_map(lambda x: x[0], state.seeds.learner.params))
  # Iterations (num_envs env steps of every seed each) are this loop's steps;
  # a chunk is at most one log interval long.
  exp = _Experiment(config=config, state=state, run_chunk=chunk_fn, steps_per_epoch=max(t.log_every, 1),
                    on_checkpoint=getattr(runner, "save_envs", None))
  try:
    fitted = fit(exp, workdir, eval_fn=eval_fn, total_steps=setup.iterations, eval_every=t.eval_every,
                 place=place, desc="dqn", headline=lambda state: (
        f"jaxdl: DQN ({config.model.name}, {n_params:,} params) on {config.env.id} ({config.env.backend}), "
        f"{t.num_seeds} seed(s) x {config.env.num_envs} envs, {setup.iterations * setup.num_envs} env "
        f"steps per seed, {jax.default_backend()}"))
  finally:
    if hasattr(runner, "close"):
      runner.close()
  state, summary, start = fitted.state, fitted.summary, fitted.start
  last_returns = last_eval.get("returns")
  if last_returns is None:  # nothing left to train after a resume: evaluate now
    eval_fn(state)
    last_returns = last_eval["returns"]
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
      "wall_seconds": time.perf_counter() - t0,
      "train_seconds": summary["wall_seconds"],
      "first_chunk_seconds": summary["first_chunk_seconds"],
      "updates_per_seed": int(jax.device_get(state.seeds.learner.updates)[0]),
      "resumed_from_step": start,
      "checkpoint_saves": fitted.checkpoint_saves,
      "checkpoint_seconds": fitted.checkpoint_seconds,
      "params_sha256": tree_sha256(state.seeds.learner.params),
      "state_sha256": tree_sha256(state.seeds),
      "param_count": n_params,
      "num_seeds": t.num_seeds,
      "env_id": config.env.id,
      "backend": config.env.backend,
      "seed": t.seed,
  }
  write_json(workdir / "metrics.json", final)
  plot_returns(fitted.history, workdir / "learning_curve.png", num_seeds=t.num_seeds,
               env_steps_per_step=setup.num_envs, title=f"DQN on {config.env.id} ({t.num_seeds} seeds)")
  console(f"eval_return_mean={final['eval_return_mean']:.1f} +- {final['eval_return_std']:.1f} per seed "
          f"{[round(v, 1) for v in final['eval_return_per_seed']]} ({env_steps} env steps, "
          f"{final['wall_seconds']:.1f} s) -> {workdir}/metrics.json")
  return state, final
