"""``train_and_evaluate(config, workdir)`` for AlphaZero: self-play chunks through ``fit``, matches, plots.

A chunk is ``make_chunk`` over the self-play iteration of
``jaxdl.loops.alphazero.selfplay`` (the NaN guard included); the state holds
the games in flight and the buffer, so a killed run resumes bit-exactly.
"""

import pathlib
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxdl.envs.boardgames import make_opponent
from jaxdl.loops.alphazero import arena
from jaxdl.loops.alphazero.config import build
from jaxdl.loops.alphazero.plots import plot_game, plot_training
from jaxdl.loops.alphazero.selfplay import AZState, create_state, make_iteration
from jaxdl.train import parallel
from jaxdl.train.chunk import make_chunk, no_batches
from jaxdl.train.fit import TaskBase, build_and_fit
from jaxdl.train.writers import console, write_json
from jaxdl.utils.tree import param_count, tree_sha256


def place(state: AZState, mesh) -> AZState:
  """Puts a host state on ``mesh``: the games in flight split over the devices, the rest replicated."""
  return parallel.put(state, state_shardings(state, mesh))


def state_shardings(state: AZState, mesh) -> AZState:
  rep, split = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  shardings = jax.tree_util.tree_map(lambda _: rep, state)
  return shardings.replace(games=jax.tree_util.tree_map(lambda _: split, state.games))


class AlphaZeroTask(TaskBase):
  """What ``jaxdl.train.fit`` drives for AlphaZero: self-play iterations and matches.

  Building it validates the config, makes the game, the net and the first
  state, so every bad input fails before anything is written.
  """

  desc = "alphazero"

  def __init__(self, config: ml_collections.ConfigDict):
    self.setup = setup = build(config)
    self.config, self.mesh, t = config, setup.mesh, config.train
    host_state = create_state(setup, config, t.seed)
    self.state = place(host_state, self.mesh)
    self.n_params = param_count(host_state.params)
    shardings = state_shardings(host_state, self.mesh)
    iteration = make_iteration(setup, config, mesh=self.mesh)
    chunk = make_chunk(iteration, no_batches, nan_policy=t.nan_policy, watch=("loss", "grad_norm"))
    self._chunk = jax.jit(lambda state, n: chunk(state, None, n), donate_argnums=(0,),
                          out_shardings=(shardings, None))
    self.total_steps, self.max_chunk, self.eval_every = t.steps, t.log_every, t.eval_every
    sims = config.eval.num_simulations or config.search.num_simulations
    self.opponents = {name: make_opponent(name, setup.env) for name in config.eval.opponents}
    self._match = jax.jit(arena.make_match(setup.env, setup.net, config.search, list(self.opponents.values()),
                                           num_games=config.eval.games, num_simulations=sims,
                                           max_length=setup.max_length, mesh=self.mesh))
    self.eval_key = jax.random.fold_in(jax.random.PRNGKey(t.seed), 7)  # apart from the state's streams
    self.last_games: dict[str, dict] = {}  # opponent -> game 0 of the newest match, described

  def chunk_program(self, state: AZState):
    return self._chunk, (state, np.int32(1))

  def run_chunk(self, state: AZState, n) -> tuple[AZState, dict]:
    state, metrics = self._chunk(state, n)
    m = {k: float(v) for k, v in jax.device_get(metrics).items()}  # one transfer per chunk
    updated = m.pop("updated")
    for key in ("loss", "policy_loss", "value_loss", "grad_norm"):  # means over the iterations that updated
      value = m.pop(key)
      if updated > 0:  # absent until the buffer holds buffer.min_size positions
        m[key] = value / updated
    games = m.pop("games_finished")
    wins, draws, moves = m.pop("first_player_wins"), m.pop("draws"), m.pop("moves_in_finished")
    if games > 0:
      m.update(first_player_win_rate=wins / games, selfplay_draw_rate=draws / games, game_length=moves / games)
    m["games_finished_per_iteration"] = games
    return state, m

  def variables(self, state: AZState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}

  def evaluate(self, state: AZState) -> dict[str, float]:
    key = jax.random.fold_in(self.eval_key, state.step)
    out = {}
    for i, name in enumerate(self.opponents):
      match = jax.device_get(self._match(self.variables(state), jax.random.fold_in(key, i), i))
      out.update(arena.match_rates(name, match["result"], match["net_first"]))
      self.last_games[name] = arena.describe(match)
    return out

  def headline(self, state: AZState) -> str:
    c, s = self.config, self.config.search
    return (f"jaxdl: AlphaZero on {c.game.name} ({self.n_params:,} params, {s.algorithm} search with "
            f"{s.num_simulations} simulations), {c.selfplay.num_games} games in flight, {c.train.steps} "
            f"iterations, {jax.default_backend()}")

  def place_restored(self, host_state: Any, checkpoint_dir: pathlib.Path) -> AZState:
    del checkpoint_dir
    return place(host_state, self.mesh)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
  """Trains AlphaZero by self-play as the config says, then plays the opponents.

  Writes into ``workdir``: ``config.json``, ``metrics.jsonl`` (losses and
  self-play counts per log, match rates per evaluation), TensorBoard events,
  ``checkpoints/``, ``learning_curves.png`` (losses, and win/draw/loss rates
  per opponent over training), ``game.png`` (a game of the trained net
  against the heuristic opponent, or the first one listed) and
  ``metrics.json``: ``win_rate/<opponent>``, ``draw_rate/<opponent>``,
  ``loss_rate/<opponent>`` (over ``eval.games`` games, half with the net
  moving first), ``games_played``, ``positions_trained``, ``wall_seconds``,
  ``selfplay_positions_per_second`` and ``params_sha256``.

  Returns:
    The final state and the final metrics dict.
  """
  task, fitted, t0 = build_and_fit(lambda: AlphaZeroTask(config), config, workdir)
  if fitted.finished is not None:  # a rerun of a finished run: nothing trained, nothing written
    return fitted.state, fitted.finished
  workdir = pathlib.Path(workdir)
  state = fitted.state
  test = fitted.test_metrics(task.evaluate)
  moves = int(jax.device_get(state.step) - fitted.start) * config.selfplay.moves_per_iteration
  final = {
      **test,
      "games_played": int(jax.device_get(state.games_played)),
      "positions_trained": int(jax.device_get(state.positions_trained)),
      "positions_stored": int(jax.device_get(state.buffer.added)),
      "selfplay_positions_per_second": moves * config.selfplay.num_games / max(fitted.summary["wall_seconds"], 1e-9),
      "eval_games": config.eval.games,
      **fitted.record(t0),
      "params_sha256": tree_sha256(state.params),
      "state_sha256": tree_sha256(jax.device_get(state)),
      "param_count": task.n_params,
      "game": config.game.name,
  }
  if jax.process_index() == 0:
    write_json(workdir / "metrics.json", final)
    opponents = list(config.eval.opponents)
    plot_training(fitted.history, workdir / "learning_curves.png", opponents=opponents,
                  title=f"AlphaZero on {config.game.name}")
    shown = "heuristic" if "heuristic" in opponents else opponents[0]
    if shown not in task.last_games:  # nothing left to train after a resume: no match was played here
      task.evaluate(state)
    plot_game(task.last_games[shown], workdir / "game.png", game_name=config.game.name, opponent=shown)
  rates = ", ".join(f"{o}: {test[f'win_rate/{o}']:.2f}/{test[f'draw_rate/{o}']:.2f}/{test[f'loss_rate/{o}']:.2f}"
                    for o in config.eval.opponents)
  console(f"win/draw/loss {rates} ({final['games_played']} self-play games, {final['wall_seconds']:.1f} s) "
          f"-> {workdir}/metrics.json")
  return state, final
