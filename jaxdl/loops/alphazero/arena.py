"""Matches of the net (with greedy search) against the opponents, batched under ``jit``.

The net moves first in the first half of the games and second in the other
half. pgx draws which player id moves first at ``init``; the net takes that
id, or the other one. A game's result, from the net's side, is the sum of
what the game paid the net's id (non-zero only on the final move).
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import PartitionSpec as P

from jaxdl.envs.boardgames import Policy
from jaxdl.loops.alphazero.search import make_search
from jaxdl.train.parallel import DATA_AXIS


def make_match(env, net, search_config, opponents: Sequence[Policy], *, num_games: int, num_simulations: int,
               max_length: int, mesh=None):
  """``match(variables, key, which) -> dict`` of G games against ``opponents[which]``.

  ``which`` is traced: one compiled program plays every opponent (``lax.switch``).
  The dict holds ``result`` (G,) from the net's side, ``net_first`` (G,) and
  ``moves`` (G,), and game 0 (the net moving first) move by move, for plots:
  ``obs`` (L + 1, *board) each position from the mover's side, ``mover``
  (L + 1,) the player id to move there, and ``net_id``.
  """
  search = make_search(net, env, search_config, num_simulations=num_simulations, greedy=True)

  def opponent(which, keys, states):
    branches = [lambda k, s, p=p: jax.vmap(p)(k, s) for p in opponents]
    return jax.lax.switch(which, branches, keys, states)

  devices = 1 if mesh is None else mesh.devices.size
  local_games = num_games // devices

  def local_match(variables, key, which):
    index = 0 if mesh is None else jax.lax.axis_index(DATA_AXIS)
    key = jax.random.fold_in(key, index)
    k_init, k_play = jax.random.split(key)
    states = jax.vmap(env.init)(jax.random.split(k_init, local_games))
    net_first = index * local_games + jnp.arange(local_games) < num_games // 2
    net_id = jnp.where(net_first, states.current_player, 1 - states.current_player)
    g = jnp.arange(local_games)
    obs0 = jnp.zeros((max_length + 1,) + states.observation.shape[1:], states.observation.dtype)
    mover0 = jnp.zeros((max_length + 1,), jnp.int32)

    def body(carry):
      states, result, moves, t, obs0, mover0 = carry
      obs0, mover0 = obs0.at[t].set(states.observation[0]), mover0.at[t].set(states.current_player[0])
      k_net, k_opp = jax.random.split(jax.random.fold_in(k_play, t))
      net_action, _ = search(variables, k_net, states)
      opp_action = opponent(which, jax.random.split(k_opp, local_games), states)
      action = jnp.where(states.current_player == net_id, net_action, opp_action)
      live = ~(states.terminated | states.truncated)
      states = jax.vmap(env.step)(states, action)
      return states, result + states.rewards[g, net_id], moves + live, t + 1, obs0, mover0

    def playing(carry):
      states, _, _, t, _, _ = carry
      return (t < max_length) & ~jnp.all(states.terminated | states.truncated)

    zeros = jnp.zeros((local_games,), jnp.float32)
    states, result, moves, t, obs0, mover0 = jax.lax.while_loop(
        playing, body, (states, zeros, jnp.zeros((local_games,), jnp.int32), jnp.zeros((), jnp.int32), obs0, mover0))
    obs0, mover0 = obs0.at[t].set(states.observation[0]), mover0.at[t].set(states.current_player[0])
    return {"result": result, "net_first": net_first, "moves": moves, "obs": obs0, "mover": mover0,
            "net_id": net_id[:1]}

  if mesh is None:
    return local_match

  def match(variables, key, which):
    out = jax.shard_map(local_match, mesh=mesh, in_specs=(P(), P(), P()), out_specs=P(DATA_AXIS),
                        check_vma=False)(variables, key, which)
    # Game 0 of the first device: its L + 1 positions lead the concatenated records.
    return {**out, "obs": out["obs"][:max_length + 1], "mover": out["mover"][:max_length + 1]}

  return match


def match_rates(name: str, result: np.ndarray, net_first: np.ndarray) -> dict[str, float]:
  """``win_rate/<name>``, ``draw_rate/<name>``, ``loss_rate/<name>``, and the win rates by side."""
  result, net_first = np.asarray(result), np.asarray(net_first)
  return {
      f"win_rate/{name}": float((result > 0).mean()),
      f"draw_rate/{name}": float((result == 0).mean()),
      f"loss_rate/{name}": float((result < 0).mean()),
      f"win_rate_first/{name}": float((result[net_first] > 0).mean()),
      f"win_rate_second/{name}": float((result[~net_first] > 0).mean()),
  }


def board_planes(obs: np.ndarray, mover: int, first_id: int) -> np.ndarray:
  """(H, W) int board from one position: 1 the first mover's stones, -1 the second's, 0 empty."""
  mine, theirs = np.asarray(obs[..., 0], bool), np.asarray(obs[..., 1], bool)
  sign = 1 if mover == first_id else -1
  return sign * mine.astype(np.int8) - sign * theirs.astype(np.int8)


def describe(match: dict[str, Any]) -> dict[str, Any]:
  """Game 0 of a match on the host: its moves, positions, the final board and the net's result."""
  match = jax.device_get(match)
  n = int(match["moves"][0])
  first_id = int(match["mover"][0])
  return {"moves": n, "first_id": first_id, "obs": np.asarray(match["obs"][:n + 1]),
          "mover": np.asarray(match["mover"][:n + 1]),
          "final_board": board_planes(match["obs"][n], int(match["mover"][n]), first_id),
          "net_first": int(np.asarray(match["net_id"]).reshape(-1)[0]) == first_id, "result": float(match["result"][0])}
