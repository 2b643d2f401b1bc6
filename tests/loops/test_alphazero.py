"""The AlphaZero loop: opponents, search, value targets, resume after a kill, learning, bad input."""

import json
import pathlib
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_helpers import assert_one_line_error, killed_after_save, run_cli
from jaxdl import cli, configs
from jaxdl.envs import boardgames
from jaxdl.loops.alphazero import default_config
from jaxdl.loops.alphazero import selfplay
from jaxdl.loops.alphazero.config import build
from jaxdl.loops.alphazero.search import make_search

EXPERIMENTS = pathlib.Path(__file__).parents[2] / "experiments"

# A tic-tac-toe run small enough for the suite; the learning and the resume
# tests share its compiled programs (through the persistent cache).
TINY = ["model.channels=16", "model.blocks=1", "model.value_hidden=32", "search.num_simulations=8",
        "selfplay.num_games=32", "selfplay.moves_per_iteration=3", "buffer.size=4096", "buffer.min_size=256",
        "train.batch_size=128", "train.updates_per_iteration=2", "train.log_every=20", "train.eval_every=0",
        "optim.schedule=constant", "eval.games=96", "eval.opponents=('random',)", "eval.num_simulations=16",
        "checkpoint.every_steps=20", "checkpoint.max_to_keep=5"]


def set_args(overrides):
  return [a for o in overrides for a in ("--set", o)]


def random_positions(env, n, key, plies):
  """n positions after up to ``plies`` random legal moves (a move that would end the game is not made)."""
  return jax.jit(_random_positions, static_argnums=(0, 1, 3))(env, n, key, plies)


def _random_positions(env, n, key, plies):
  rand = jax.vmap(boardgames.random_player(env))
  depth = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, plies + 1)

  def ply(t, states):
    action = rand(jax.random.split(jax.random.fold_in(key, 10 + t), n), states)
    stepped = jax.vmap(env.step)(states, action)
    go = (t < depth) & ~stepped.terminated
    return jax.tree_util.tree_map(lambda a, b: jnp.where(go.reshape(go.shape + (1,) * (a.ndim - 1)), a, b),
                                  stepped, states)

  return jax.lax.fori_loop(0, plies, ply, jax.vmap(env.init)(jax.random.split(key, n)))


@pytest.mark.parametrize("game, size, opponents", [
    ("tic_tac_toe", 0, ("random", "heuristic", "minimax")),
    ("connect_four", 0, ("random", "heuristic")),
    ("go", 5, ("random", "heuristic")),
])
def test_opponents_play_legal_moves_only(game, size, opponents):
  env = boardgames.make_game(game, size)
  n = 48
  states = random_positions(env, n, jax.random.PRNGKey(0), plies=8 if game != "go" else 12)
  assert not bool(states.terminated.any())
  policies = [jax.vmap(boardgames.make_opponent(name, env)) for name in opponents]
  # Every opponent, three draws each, in one compiled program.
  play = jax.jit(lambda keys: jnp.stack([jax.vmap(p, in_axes=(0, None))(keys, states) for p in policies]))
  actions = np.asarray(play(jax.random.split(jax.random.PRNGKey(1), 3 * n).reshape(3, n, 2)))  # (O, 3, n)
  legal = np.asarray(states.legal_action_mask)
  assert legal[np.arange(n), actions].all()


def play_games(env, first, second, n, key):
  """Results (n,) for ``first`` (+1 win), which moves first in every game."""
  def one(key):
    state = env.init(key)
    first_id = state.current_player

    def body(carry):
      state, key, result = carry
      key, k1, k2 = jax.random.split(key, 3)
      action = jnp.where(state.current_player == first_id, first(k1, state), second(k2, state))
      state = env.step(state, action)
      return state, key, result + state.rewards[first_id]

    return jax.lax.while_loop(lambda c: ~c[0].terminated, body, (state, key, 0.0))[2]

  return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, n)))


def test_minimax_never_loses_to_random_in_1000_games():
  env = boardgames.make_game("tic_tac_toe")
  minimax, rand = boardgames.minimax_player(env), boardgames.random_player(env)
  as_first = play_games(env, minimax, rand, 500, jax.random.PRNGKey(0))
  as_second = -play_games(env, rand, minimax, 500, jax.random.PRNGKey(1))
  results = np.concatenate([as_first, as_second])
  assert (results >= 0).all()
  assert (results > 0).mean() > 0.7  # it also wins most of them
  # And perfect play against itself is always a draw.
  assert (play_games(env, minimax, minimax, 200, jax.random.PRNGKey(2)) == 0).all()


def test_heuristic_wins_at_once_and_blocks_an_immediate_loss():
  env = boardgames.make_game("connect_four")
  heuristic = jax.jit(boardgames.heuristic_player(env))
  step = jax.jit(env.step)
  state = env.init(jax.random.PRNGKey(0))
  for column in (0, 6, 0, 6, 0):  # the first mover has three in column 0; the second must block
    state = step(state, column)
  assert {int(heuristic(jax.random.PRNGKey(k), state)) for k in range(20)} == {0}
  state = step(state, 5)  # the second mover did not block: the first wins at once
  assert {int(heuristic(jax.random.PRNGKey(k), state)) for k in range(20)} == {0}


def test_minimax_table_values_known_positions():
  table = boardgames.tic_tac_toe_table()
  assert (table[0] == 0).all()  # every first move of tic-tac-toe draws with perfect play
  # The mover has two in the top row (cells 0, 1); the opponent has 3 and 4: cell 2 wins at once.
  index = 1 * 3**0 + 1 * 3**1 + 2 * 3**3 + 2 * 3**4
  assert table[index, 2] == 1.0
  assert table[index, 0] == -2.0  # occupied


SMALL_NET = ["model.channels=8", "model.blocks=1", "model.value_hidden=8"]


# Gumbel search while playing is checked in the value-target test below (the stored policies).
@pytest.mark.parametrize("algorithm, greedy", [("puct", True)])
def test_search_returns_a_distribution_over_legal_moves_only(algorithm, greedy):
  config = configs.apply_overrides(default_config(), SMALL_NET + [
      f"search.algorithm={algorithm}", "search.num_simulations=8", "selfplay.num_games=16"])
  setup = build(config)
  state = selfplay.create_state(setup, config, jax.random.PRNGKey(0))
  positions = random_positions(setup.env, 16, jax.random.PRNGKey(3), plies=6)
  assert not bool(positions.legal_action_mask.all())  # some cells are taken
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  search = jax.jit(make_search(setup.net, setup.env, config.search, num_simulations=8, greedy=greedy))
  action, policy = search(variables, jax.random.PRNGKey(1), positions)
  legal = np.asarray(positions.legal_action_mask)
  np.testing.assert_allclose(np.asarray(policy).sum(-1), 1.0, rtol=1e-5)
  assert (np.asarray(policy)[~legal] == 0).all()
  assert legal[np.arange(16), np.asarray(action)].all()


def test_value_targets_carry_the_sign_of_the_player_to_move():
  config = configs.apply_overrides(default_config(), SMALL_NET + ["search.num_simulations=16", "selfplay.num_games=8"])
  setup = build(config)
  env = setup.env
  state = selfplay.create_state(setup, config, jax.random.PRNGKey(0))
  # Game 0: the mover (X) has cells 0 and 1, O has 3 and 4; X to move wins at cell 2, and the search finds it.
  # Game 1: the same, but O to move (O wins at 5).
  boards = []
  init, step = jax.jit(env.init), jax.jit(env.step)  # pgx's ops one by one cost seconds per move
  for moves in ((0, 3, 1, 4), (0, 3, 1, 4, 8)) * 4:
    s = init(jax.random.PRNGKey(0))
    for m in moves:
      s = step(s, m)
    boards.append(s)
  games = state.games
  states = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *boards)
  mover = states.current_player
  # Two earlier moves on record per game: the opponent's, then the mover's.
  games = games.replace(states=states, length=jnp.full((8,), 2),
                        player=games.player.at[:, 0].set(1 - mover).at[:, 1].set(mover))
  play = jax.jit(selfplay.make_play_move(setup, config))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  games, finished, stats = play(variables, games, jax.random.PRNGKey(0))
  assert bool(stats["done"].all())
  keep = np.asarray(finished["keep"]).reshape(8, -1)
  value = np.asarray(finished["value"]).reshape(8, -1)
  for g in range(8):
    np.testing.assert_array_equal(value[g][keep[g]], [-1.0, 1.0, 1.0])  # the opponent lost, the mover won twice
  # The Gumbel search's policy at the position played: a distribution over its legal moves only.
  policy = np.asarray(finished["policy"]).reshape(8, -1, 9)[:, 2]
  np.testing.assert_allclose(policy.sum(-1), 1.0, rtol=1e-5)
  assert (policy[~np.asarray(states.legal_action_mask)] == 0).all()
  assert (np.asarray(games.length) == 0).all()  # both games restarted


def test_buffer_keeps_order_and_wraps():
  buf = selfplay.init_buffer(5, jnp.zeros((2,), jnp.float32), 3)
  obs = jnp.arange(8, dtype=jnp.float32)[:, None] * jnp.ones((8, 2))
  keep = jnp.array([True, False, True, True, False, True, True, True])
  buf = selfplay.add_positions(buf, obs, jnp.zeros((8, 3)), jnp.arange(8.0), keep)
  # Six kept rows into 5 slots: the sixth is dropped rather than overwrite in the same write.
  assert int(buf.size) == 5 and int(buf.added) == 5 and int(buf.pos) == 0
  np.testing.assert_array_equal(np.asarray(buf.value), [0, 2, 3, 5, 6])
  buf = selfplay.add_positions(buf, obs[:2], jnp.zeros((2, 3)), jnp.array([9.0, 10.0]), jnp.array([True, True]))
  np.testing.assert_array_equal(np.asarray(buf.value), [9, 10, 3, 5, 6])
  assert int(buf.pos) == 2


def test_symmetries_map_moves_with_the_board():
  env = boardgames.make_game("tic_tac_toe")
  state = env.step(env.init(jax.random.PRNGKey(0)), 1)  # an edge cell
  policy = jnp.zeros(9).at[1].set(1.0)
  seen = set()
  for f in boardgames.symmetries(env):
    obs, p = f(state.observation, policy)
    cell = int(jnp.argmax(obs[..., 1].reshape(-1)))  # the mark, now the opponent's
    assert int(jnp.argmax(p)) == cell
    seen.add(cell)
  assert seen == {1, 3, 5, 7}  # the four edges
  c4 = boardgames.make_game("connect_four")
  assert len(boardgames.symmetries(c4)) == 2


def test_tiny_tictactoe_beats_random_and_resumes_bit_exactly_after_a_kill(tmp_path):
  overrides = TINY + ["train.steps=60"]
  reference = tmp_path / "reference"
  cmd = [sys.executable, "-m", "jaxdl", "run", "alphazero_tictactoe", *set_args(overrides)]
  done = subprocess.run(cmd + ["--workdir", str(reference)], capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  final = json.loads((reference / "metrics.json").read_text())
  # Random against random wins about 44% of tic-tac-toe games moving either side (first 58%, second 29%).
  assert final["win_rate/random"] >= 0.7, final
  # 2 updates of 128 per iteration once the buffer holds 256 positions (after a few iterations).
  assert final["games_played"] > 0 and final["positions_trained"] % 256 == 0
  assert 50 * 256 <= final["positions_trained"] < 60 * 256
  assert (reference / "learning_curves.png").stat().st_size > 0 and (reference / "game.png").stat().st_size > 0

  workdir = tmp_path / "killed"
  killed = subprocess.run(killed_after_save(cmd + ["--workdir", str(workdir)], 40), capture_output=True, text=True,
                          timeout=600)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert not (workdir / "metrics.json").exists()
  resumed = subprocess.run(cmd + ["--workdir", str(workdir)], capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  again = json.loads((workdir / "metrics.json").read_text())
  assert again["resumed_from_step"] in (20, 40)
  for key in ("params_sha256", "state_sha256", "win_rate/random", "games_played", "positions_trained"):
    assert again[key] == final[key], key


@pytest.mark.parametrize("overrides, named", [
    (["game.name=chess"], "game.name='chess'"),
    (["search.num_simulations=0"], "search.num_simulations=0"),
    (["game.size=4"], "game.size=4"),
    (["game.name=go", "game.size=8"], "game.size=8"),
    (["buffer.size=100", "train.batch_size=128"], "buffer.size=100"),
    (["eval.games=7"], "eval.games=7"),
    (["game.name=connect_four"], "minimax"),
    (["search.algorithm=mcts"], "search.algorithm='mcts'"),
    (["selfplay.num_gams=4"], "selfplay.num_gams"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, overrides, named):
  workdir = tmp_path / "run"
  code, _, err = run_cli(capsys, "run", "alphazero_tictactoe", "--workdir", str(workdir), *set_args(overrides))
  assert_one_line_error(code, err, named)
  assert not workdir.exists()


def preset(name, overrides=()):
  config, _ = configs.load_preset(EXPERIMENTS / f"{name}.py")
  return configs.apply_overrides(config, list(overrides))


def test_shrunk_connect4_beats_random_by_a_clear_margin(tmp_path):
  from jaxdl.loops.alphazero import train_and_evaluate

  config = preset("alphazero_connect4", SMALL_NET[:2] + [
      "train.steps=40", "selfplay.num_games=32", "search.num_simulations=8", "eval.num_simulations=8",
      "buffer.size=4096", "buffer.min_size=512", "train.batch_size=128", "train.updates_per_iteration=2",
      "train.log_every=20", "train.eval_every=0", "eval.games=64", "eval.opponents=('random',)",
      "checkpoint.every_steps=0"])
  _, final = train_and_evaluate(config, tmp_path)
  # Random against random wins about half of the games; the shrunk net wins most of them.
  assert final["win_rate/random"] >= 0.75, final
  assert final["win_rate/random"] + final["draw_rate/random"] + final["loss_rate/random"] == pytest.approx(1.0)


def test_go9x9_smoke_run_on_the_cpu(tmp_path):
  from jaxdl.loops.alphazero import train_and_evaluate

  config = preset("alphazero_go9x9", [
      "model.channels=8", "model.blocks=1", "model.value_hidden=8", "train.steps=2", "selfplay.num_games=8",
      "selfplay.moves_per_iteration=2", "search.num_simulations=4", "eval.num_simulations=4", "buffer.size=512",
      "buffer.min_size=128", "train.batch_size=64", "train.log_every=1", "train.eval_every=0", "eval.games=8",
      "eval.opponents=('random',)", "checkpoint.every_steps=0"])
  _, final = train_and_evaluate(config, tmp_path)
  assert final["game"] == "go" and final["positions_stored"] == 0  # no 162-move game ended in 4 moves
  assert 0.0 <= final["win_rate/random"] <= 1.0
  assert (tmp_path / "game.png").stat().st_size > 0


def test_pgx_is_the_pinned_release_with_the_signatures_used():
  import inspect

  import pgx

  assert pgx.__version__ == "2.6.0"  # pyproject.toml pins it: its State fields moved between releases
  for game, size in (("tic_tac_toe", 0), ("connect_four", 0), ("go", 9)):
    env = boardgames.make_game(game, size)
    inner = getattr(env, "_env", env)
    assert list(inspect.signature(inner.init).parameters) == ["key"]
    assert list(inspect.signature(inner.step).parameters) == ["state", "action", "key"]
    state = env.init(jax.random.PRNGKey(0))
    for field in ("current_player", "observation", "legal_action_mask", "rewards", "terminated", "truncated"):
      assert hasattr(state, field), field
    assert state.rewards.shape == (2,) and state.legal_action_mask.shape == (env.num_actions,)
  assert boardgames.max_game_length(boardgames.make_game("go", 9)) == 162
