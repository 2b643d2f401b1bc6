"""Self-play: games in flight, their trajectories, the replay buffer, and one iteration.

Everything is a pytree inside :class:`AZState`, so a chunk of iterations is
one jitted ``while_loop`` and a checkpoint holds all of it: params,
optimizer state, batch-norm statistics, the buffer, the games in flight
with the moves played so far, and the key.

A game's positions wait in :class:`Games` (``obs``, ``policy``, ``player``
per move) until it ends; then each position gets its target, the outcome
for the player who was to move there (``rewards[player]`` of the final
move), and goes into the :class:`Buffer`. The finished game restarts at
once, so every game slot is always playing.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxdl.envs import boardgames
from jaxdl.loops.alphazero.config import Setup
from jaxdl.loops.alphazero.search import make_search
from jaxdl.train.state import TrainState, init_program, step_keys


@struct.dataclass
class Buffer:
  """A circular store of (observation, search policy, outcome) positions.

  Attributes:
    obs: (N, *board) the position, from the mover's side.
    policy: (N, A) the search's policy there (the policy target).
    value: (N,) the game's outcome for the player to move there (the value target).
    size: () positions stored (<= N).
    pos: () the next slot written.
    added: () positions ever added.
  """

  obs: jax.Array
  policy: jax.Array
  value: jax.Array
  size: jax.Array
  pos: jax.Array
  added: jax.Array

  @property
  def capacity(self) -> int:
    return self.value.shape[0]


def init_buffer(capacity: int, obs_example: jax.Array, num_actions: int) -> Buffer:
  zero = jnp.zeros((), jnp.int32)
  return Buffer(obs=jnp.zeros((capacity,) + obs_example.shape, obs_example.dtype),
                policy=jnp.zeros((capacity, num_actions), jnp.float32),
                value=jnp.zeros((capacity,), jnp.float32), size=zero, pos=zero, added=zero)


def add_positions(buf: Buffer, obs: jax.Array, policy: jax.Array, value: jax.Array, keep: jax.Array) -> Buffer:
  """Writes the rows of ``obs``/``policy``/``value`` (M, ...) where ``keep`` (M,), in order.

  Written rows take consecutive slots from ``buf.pos``; if more than the
  capacity arrive at once, the ones past it are dropped.
  """
  n = buf.capacity
  order = jnp.cumsum(keep) - 1  # (M,) the rank of each kept row
  keep = keep & (order < n)
  slot = jnp.where(keep, (buf.pos + order) % n, n)  # n: out of range, dropped
  written = keep.sum().astype(jnp.int32)
  return buf.replace(obs=buf.obs.at[slot].set(obs, mode="drop"),
                     policy=buf.policy.at[slot].set(policy, mode="drop"),
                     value=buf.value.at[slot].set(value, mode="drop"),
                     size=jnp.minimum(buf.size + written, n), pos=(buf.pos + written) % n,
                     added=buf.added + written)


@struct.dataclass
class Games:
  """B games in flight and the moves each has played so far.

  Attributes:
    states: the pgx states, (B,) leading axis.
    obs: (B, L, *board) the position before each move (L: the longest game).
    policy: (B, L, A) the search policy at each move.
    player: (B, L) the player id that moved.
    length: (B,) moves played in the current game.
  """

  states: Any
  obs: jax.Array
  policy: jax.Array
  player: jax.Array
  length: jax.Array


def init_games(env, key: jax.Array, num_games: int, max_length: int) -> Games:
  states = jax.vmap(env.init)(jax.random.split(key, num_games))
  obs = states.observation
  return Games(states=states, obs=jnp.zeros((num_games, max_length) + obs.shape[1:], obs.dtype),
               policy=jnp.zeros((num_games, max_length, env.num_actions), jnp.float32),
               player=jnp.zeros((num_games, max_length), jnp.int32),
               length=jnp.zeros((num_games,), jnp.int32))


class AZState(TrainState):
  """A :class:`jaxdl.train.state.TrainState` plus the games in flight and the buffer.

  ``step`` counts iterations; ``opt_state``'s count the optimizer updates.
  ``games_played`` and ``positions_trained`` are running totals.
  """

  games: Games = None
  buffer: Buffer = None
  games_played: jax.Array = 0
  positions_trained: jax.Array = 0


def create_state(setup: Setup, config, rng: jax.Array | int) -> AZState:
  """Iteration 0: a fresh net, an empty buffer, B new games; one jitted program (``init_program``).

  ``rng`` is the run's root key or an int seed (``PRNGKey(seed)``).
  """
  env, sp = setup.env, config.selfplay

  def create(rng):
    init_rng, run_rng = jax.random.fold_in(rng, 0), jax.random.fold_in(rng, 1)
    games = init_games(env, jax.random.fold_in(rng, 2), num_games=sp.num_games, max_length=setup.max_length)
    variables = setup.net.init(init_rng, games.states.observation[:1], train=False)
    zero = jnp.zeros((), jnp.int32)
    state = AZState.create(apply_fn=setup.net.apply, params=variables["params"], tx=setup.tx,
                           batch_stats=variables["batch_stats"], rng=run_rng, skipped=zero, games=games,
                           buffer=init_buffer(config.buffer.size, games.states.observation[0], env.num_actions),
                           games_played=zero, positions_trained=zero)
    return state.replace(step=zero)

  return init_program(create, rng)


def per_device(fn, mesh, num_out: int):
  """``fn(variables, games, key, *rest)`` run on each device's share of the games, its key folded with the device index.

  The variables, the key and ``rest`` are replicated; the games and every
  output are split over the mesh's data axis.
  """
  from jax.sharding import PartitionSpec as P

  from jaxdl.train.parallel import DATA_AXIS

  def local(variables, games, key, *rest):
    return fn(variables, games, jax.random.fold_in(key, jax.lax.axis_index(DATA_AXIS)), *rest)

  def run(variables, games, key, *rest):
    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(DATA_AXIS), P()) + (P(),) * len(rest),
                         out_specs=(P(DATA_AXIS),) * num_out, check_vma=False)(variables, games, key, *rest)

  return run


def outcome_targets(rewards: jax.Array, player: jax.Array) -> jax.Array:
  """The value target of each stored move: ``rewards`` (B, 2) of the final move, for ``player`` (B, L)."""
  return jnp.take_along_axis(rewards, player, axis=1)


def make_play_move(setup: Setup, config, mesh=None):
  """``play(variables, games, key) -> (games, finished, stats)``: one searched move in every game.

  ``finished`` holds the flattened positions of the games that just ended,
  with their targets and a ``keep`` mask, ready for :func:`add_positions`.
  With a ``mesh``, each device plays its own games (``shard_map``), with its
  own key (``fold_in(key, device index)``) and no collective inside: the
  search's and the games' loops then never wait on another device.
  """
  env, L = setup.env, setup.max_length
  search = make_search(setup.net, env, config.search, num_simulations=config.search.num_simulations, greedy=False)

  def play(variables, games: Games, key):
    k_search, k_reset = jax.random.split(key)
    states = games.states
    action, policy = search(variables, k_search, states)
    b = jnp.arange(action.shape[0])
    t = games.length
    games = games.replace(obs=games.obs.at[b, t].set(states.observation),
                          policy=games.policy.at[b, t].set(policy),
                          player=games.player.at[b, t].set(states.current_player), length=t + 1)
    states = jax.vmap(env.step)(states, action)
    done = states.terminated | states.truncated
    keep = done[:, None] & (jnp.arange(L)[None, :] < games.length[:, None])  # (B, L)
    finished = {
        "obs": games.obs.reshape((-1,) + games.obs.shape[2:]),
        "policy": games.policy.reshape(-1, games.policy.shape[-1]),
        "value": outcome_targets(states.rewards, games.player).reshape(-1),
        "keep": keep.reshape(-1),
    }
    # The first mover's result in each game that ended (+1 win, 0 draw, -1 loss).
    first = games.player[:, 0]
    stats = {"done": done, "length": games.length, "first_result": outcome_targets(states.rewards, first[:, None])[:, 0]}
    fresh = jax.vmap(env.init)(jax.random.split(k_reset, action.shape[0]))
    pick = lambda new, old: jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), new, old)
    states = jax.tree_util.tree_map(pick, fresh, states)
    return games.replace(states=states, length=jnp.where(done, 0, games.length)), finished, stats

  return play if mesh is None else per_device(play, mesh, num_out=3)


def policy_value_loss(setup: Setup, value_weight: float):
  """``loss(params, batch_stats, batch) -> (loss, (metrics, new batch_stats))``: policy CE + w * value MSE."""

  def loss(params, batch_stats, batch):
    (logits, value), updates = setup.net.apply({"params": params, "batch_stats": batch_stats}, batch["obs"],
                                               train=True, mutable=["batch_stats"])
    policy_loss = optax.softmax_cross_entropy(logits, batch["policy"]).mean()
    value_loss = jnp.mean((value - batch["value"]) ** 2)
    total = policy_loss + value_weight * value_loss
    return total, ({"policy_loss": policy_loss, "value_loss": value_loss}, updates["batch_stats"])

  return loss


def make_iteration(setup: Setup, config, mesh=None):
  """``iteration(state, batch) -> (state, metrics)``: self-play moves, then updates. ``batch`` is unused.

  The step protocol of ``jaxdl.train.chunk.make_chunk``: every random
  number comes from ``step_keys(state.rng, state.step)``, so a resumed run
  plays and samples the same. Updates wait until the buffer holds
  ``buffer.min_size`` positions; until then the loss metrics are 0 and
  ``updated`` is 0. The game metrics are counts over the iteration's moves.
  """
  play = make_play_move(setup, config, mesh)
  loss_fn = policy_value_loss(setup, config.train.value_weight)
  t, sp = config.train, config.selfplay
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  transforms = boardgames.symmetries(setup.env) if t.symmetries else []

  def augment(key, obs, policy):  # one random symmetry of each position
    which = jax.random.randint(key, (obs.shape[0],), 0, len(transforms))
    return jax.vmap(lambda i, o, p: jax.lax.switch(i, transforms, o, p))(which, obs, policy)

  def update(state: AZState, key):
    k_idx, k_sym = jax.random.split(key)
    idx = jax.random.randint(k_idx, (t.batch_size,), 0, jnp.maximum(state.buffer.size, 1))
    buf = state.buffer
    obs, policy = buf.obs[idx], buf.policy[idx]
    if transforms:
      obs, policy = augment(k_sym, obs, policy)
    batch = {"obs": obs, "policy": policy, "value": buf.value[idx]}
    (loss, (metrics, batch_stats)), grads = grad_fn(state.params, state.batch_stats, batch)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, **metrics, "grad_norm": optax.global_norm(grads)}
    return state.replace(params=params, opt_state=opt_state, batch_stats=batch_stats,
                         positions_trained=state.positions_trained + t.batch_size), metrics

  def no_update():
    return {k: jnp.zeros((), jnp.float32) for k in ("loss", "policy_loss", "value_loss", "grad_norm")}

  def iteration(state: AZState, batch):
    del batch
    _, key = step_keys(state.rng, state.step)
    k_play, k_train = jax.random.split(key)
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def move(i, carry):
      games, buf, played, wins, draws, lengths = carry
      games, finished, stats = play(variables, games, jax.random.fold_in(k_play, i))
      buf = add_positions(buf, finished["obs"], finished["policy"], finished["value"], finished["keep"])
      done = stats["done"]
      return (games, buf, played + done.sum(), wins + (done & (stats["first_result"] > 0)).sum(),
              draws + (done & (stats["first_result"] == 0)).sum(), lengths + jnp.where(done, stats["length"], 0).sum())

    zero = jnp.zeros((), jnp.int32)
    games, buf, played, wins, draws, lengths = jax.lax.fori_loop(
        0, sp.moves_per_iteration, move, (state.games, state.buffer, zero, zero, zero, zero))
    state = state.replace(games=games, buffer=buf, games_played=state.games_played + played)
    ready = buf.size >= config.buffer.min_size

    def train(state):
      def one(i, carry):
        state, sums = carry
        state, metrics = update(state, jax.random.fold_in(k_train, i))
        return state, jax.tree_util.tree_map(jnp.add, sums, metrics)

      state, sums = jax.lax.fori_loop(0, t.updates_per_iteration, one, (state, no_update()))
      return state, jax.tree_util.tree_map(lambda s: s / t.updates_per_iteration, sums)

    def wait(state):
      return state, no_update()

    state, metrics = jax.lax.cond(ready, train, wait, state)
    # Sums, not ratios: the host divides the chunk's means (jaxdl.loops.alphazero.experiment).
    metrics.update(updated=ready.astype(jnp.float32), games_finished=played.astype(jnp.float32),
                   first_player_wins=wins.astype(jnp.float32), draws=draws.astype(jnp.float32),
                   moves_in_finished=lengths.astype(jnp.float32), buffer_size=buf.size.astype(jnp.float32))
    return state.replace(step=state.step + 1), metrics

  return iteration
