"""Two-player board games from pgx, and the opponents jaxdl evaluates against.

pgx (https://github.com/sotetsuk/pgx, pinned in ``pyproject.toml``) gives the
games as pure JAX functions: ``env.init(key) -> State`` and
``env.step(state, action) -> State``, both ``vmap``- and ``jit``-able. A
``State`` has ``current_player`` (0 or 1; which id moves first is drawn at
``init``), ``observation`` (the board from the mover's side: channel 0 holds
the mover's stones), ``legal_action_mask``, ``rewards`` ((2,) by player id,
non-zero only on the step that ends the game), ``terminated`` and
``truncated``. Stepping a finished game changes nothing.

The opponents are pure functions ``policy(key, state) -> action`` of one
game's state (``vmap`` them over a batch). Nothing is downloaded: pgx's own
baseline networks are fetched at run time, so jaxdl writes its own:

- :func:`random_player`: uniform over the legal moves;
- :func:`heuristic_player`: wins at once if it can; else plays a move after
  which the opponent cannot win at once (this blocks an immediate loss); else
  plays at random;
- :func:`minimax_player` (tic-tac-toe): perfect play from a solved table, at
  random among the moves of the best value, so it never loses.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.utils.errors import JaxdlError

Policy = Callable[[jax.Array, Any], jax.Array]  # (key, one game's State) -> action, () int32


@dataclass(frozen=True)
class GameSpec:
  """A game jaxdl plays: its pgx id, the board sizes it has, its longest game.

  Attributes:
    name: the config name (``game.name``).
    sizes: the board sizes the game has (the first is the default).
    description: one line for listings.
  """

  name: str
  sizes: tuple[int, ...]
  description: str


GAMES: dict[str, GameSpec] = {
    "tic_tac_toe": GameSpec("tic_tac_toe", (3,), "3x3, three in a row"),
    "connect_four": GameSpec("connect_four", (7,), "7 columns x 6 rows, four in a row"),
    # pgx's Go takes any size; 9 and 19 are its registered ids, 5 and 7 suit a CPU.
    "go": GameSpec("go", (9, 5, 7, 13, 19), "Go, area scoring, komi 7.5, ends after 2 x size^2 moves"),
}

OPPONENTS = ("random", "heuristic", "minimax")


def check_game(name: str, size: int = 0) -> int:
  """The board size to use (``size``, or the game's default for 0); a one-line error for a bad pair."""
  if name not in GAMES:
    raise JaxdlError(f"game.name='{name}' is not a game jaxdl plays (known: {', '.join(GAMES)})")
  sizes = GAMES[name].sizes
  if size == 0:
    return sizes[0]
  if size not in sizes:
    raise JaxdlError(f"game.size={size}: {name} has no such board (sizes: {', '.join(map(str, sorted(sizes)))})")
  return size


def make_game(name: str, size: int = 0):
  """The pgx environment for ``name`` at board ``size`` (0: the game's default)."""
  size = check_game(name, size)
  import pgx  # a heavy import, paid only by the runs that play games
  if name == "go":
    from pgx.go import Go
    return _RankPromotionAllowed(Go(size=size))
  return pgx.make(name)


class _RankPromotionAllowed:
  """A pgx env whose ``init`` and ``step`` trace with implicit rank promotion allowed.

  pgx 2.6's Go broadcasts (N, 1) against (4,) arrays, which fails under
  ``jax_numpy_rank_promotion='raise'`` (the test suite's setting). The rest
  of the program keeps whatever setting the caller chose.
  """

  def __init__(self, env):
    self._env = env

  def __getattr__(self, name):
    return getattr(self._env, name)

  def init(self, key):
    with jax.numpy_rank_promotion("allow"):
      return self._env.init(key)

  def step(self, state, action, key=None):
    with jax.numpy_rank_promotion("allow"):
      return self._env.step(state, action, key)


def max_game_length(env) -> int:
  """The most moves a game of ``env`` can last (Go ends by rule after 2 x size^2)."""
  if env.id == "tic_tac_toe":
    return 9
  if env.id == "connect_four":
    return 42
  if env.id.startswith("go"):
    return int(env._game.max_termination_steps)
  raise JaxdlError(f"no known game length for pgx game '{env.id}'")


def _uniform(key: jax.Array, mask: jax.Array) -> jax.Array:
  """A uniform draw among the True entries of ``mask`` (A,) (any entry if none is True)."""
  logits = jnp.where(mask, 0.0, -jnp.inf)
  logits = jnp.where(mask.any(), logits, 0.0)
  return jax.random.categorical(key, logits).astype(jnp.int32)


def random_player(env) -> Policy:
  """Uniform over the legal moves."""
  del env

  def policy(key, state):
    return _uniform(key, state.legal_action_mask)

  return policy


def heuristic_player(env) -> Policy:
  """Win at once if possible; else a move after which the opponent cannot win at once; else random.

  It looks two plies ahead with ``vmap``: every legal move, then every reply.
  In Go only a pass can end the game before the move limit, so there the
  replies looked at are the pass alone (A + A steps a move instead of A x A;
  at the move limit itself, where any reply ends the game, it misses the rest).
  """
  actions = jnp.arange(env.num_actions, dtype=jnp.int32)
  replies = actions[-1:] if env.id.startswith("go") else actions  # pgx's pass is Go's last action

  def wins_now(state, player, moves):  # (M,): the move ends the game with ``player`` winning
    after = jax.vmap(env.step, in_axes=(None, 0))(state, moves)
    return after, state.legal_action_mask[moves] & after.terminated & (after.rewards[:, player] > 0)

  def policy(key, state):
    me = state.current_player
    after, win = wins_now(state, me, actions)
    # For each of my moves, can the opponent then win at once?
    _, their_win = jax.vmap(wins_now, in_axes=(0, None, None))(after, 1 - me, replies)  # (A, R)
    loses = their_win.any(axis=1) & ~after.terminated
    safe = state.legal_action_mask & ~loses
    choice = jnp.where(win.any(), win, jnp.where(safe.any(), safe, state.legal_action_mask))
    return _uniform(key, choice)

  return policy


@functools.lru_cache(maxsize=1)
def tic_tac_toe_table() -> np.ndarray:
  """(3^9, 9) float32: the value of each move for the player to move, by perfect play.

  A position is indexed by its cells in the mover's view (0 empty, 1 the
  mover's mark, 2 the opponent's), ``sum(cell[i] * 3**i)`` over the cells in
  pgx's action order. Values are +1 (the mover wins), 0 (draw), -1 (loss);
  illegal moves are -2.
  """
  lines = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]
  table = np.full((3**9, 9), -2.0, np.float32)
  powers = 3 ** np.arange(9)
  cache: dict[tuple, float] = {}

  def value(cells: tuple) -> float:  # the value for the player to move (whose marks are 1)
    if cells in cache:
      return cache[cells]
    moves = [i for i in range(9) if cells[i] == 0]
    if any(all(cells[i] == 2 for i in line) for line in lines):
      best = -1.0  # the opponent just completed a line
    elif not moves:
      best = 0.0
    else:
      move_values = []
      for i in moves:
        after = list(cells)
        after[i] = 1
        flipped = tuple({0: 0, 1: 2, 2: 1}[c] for c in after)  # the opponent's view
        move_values.append(-value(flipped))
      table[int(np.dot(cells, powers)), moves] = move_values
      best = max(move_values)
    cache[cells] = best
    return best

  value((0,) * 9)
  return table


def minimax_player(env) -> Policy:
  """Perfect tic-tac-toe: uniform among the moves of the best value in the solved table."""
  if env.id != "tic_tac_toe":
    raise JaxdlError(f"the minimax opponent plays only tic_tac_toe, not {env.id}")
  table = jnp.asarray(tic_tac_toe_table())
  powers = jnp.asarray(3 ** np.arange(9), jnp.int32)

  def policy(key, state):
    board = state.observation.reshape(9, 2).astype(jnp.int32)
    index = jnp.sum((board[:, 0] + 2 * board[:, 1]) * powers)
    values = jnp.where(state.legal_action_mask, table[index], -2.0)
    return _uniform(key, values >= values.max())

  return policy


def make_opponent(name: str, env) -> Policy:
  """The opponent called ``name`` (one of :data:`OPPONENTS`) for ``env``."""
  makers = {"random": random_player, "heuristic": heuristic_player, "minimax": minimax_player}
  if name not in makers:
    raise JaxdlError(f"unknown opponent '{name}' (known: {', '.join(OPPONENTS)})")
  return makers[name](env)


def symmetries(env) -> list[Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]]:
  """The board symmetries of ``env`` as ``f(obs (H, W, C), policy (A,)) -> (obs, policy)``.

  Square boards whose moves are cells (tic-tac-toe; Go, whose last move is
  the pass) have the 8 rotations and reflections of the square; Connect
  Four, whose moves are columns, has the left-right mirror. The identity is
  first. Training on a random one per position is AlphaGo Zero's data
  augmentation (Silver et al. 2017, Methods).
  """
  if env.id == "connect_four":
    return [lambda obs, policy: (obs, policy), lambda obs, policy: (obs[:, ::-1], policy[::-1])]

  def dihedral(k: int, flip: bool):
    def f(obs, policy):
      n = obs.shape[0]
      cells, rest = policy[:n * n].reshape(n, n), policy[n * n:]
      if flip:
        obs, cells = obs[:, ::-1], cells[:, ::-1]
      obs, cells = jnp.rot90(obs, k, axes=(0, 1)), jnp.rot90(cells, k, axes=(0, 1))
      return obs, jnp.concatenate([cells.reshape(-1), rest])
    return f

  return [dihedral(k, flip) for flip in (False, True) for k in range(4)]
