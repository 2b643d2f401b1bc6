"""Self-play positions per second: the jitted loop against a Python loop over pgx's ``step``.

    python benchmarks/selfplay_throughput.py [--preset alphazero_connect4] [--seconds 20] [--out FILE.json]

Both sides play with the same network (the preset's, freshly initialised)
and the same search (the preset's simulations). The jitted side is the
loop's own ``make_play_move``: ``selfplay.num_games`` games, many moves in
one compiled ``fori_loop``. The Python side plays one game at a time: a
jitted search on a batch of one, then a jitted ``env.step``, from a Python
``while`` loop, as a hand-written self-play script would. Compile time is
excluded from both.
"""

import argparse
import json
import time

import jax

from jaxdl import configs
from jaxdl.loops.alphazero.config import build
from jaxdl.loops.alphazero.search import make_search
from jaxdl.loops.alphazero.selfplay import create_state, make_play_move


def jitted_rate(setup, config, state, seconds: float) -> float:
  play = make_play_move(setup, config)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  moves = 16

  @jax.jit
  def many(games, key):
    def body(i, games):
      return play(variables, games, jax.random.fold_in(key, i))[0]
    return jax.lax.fori_loop(0, moves, body, games)

  games = jax.block_until_ready(many(state.games, jax.random.PRNGKey(0)))  # compile
  done, start, i = 0, time.perf_counter(), 1
  while time.perf_counter() - start < seconds:
    games = jax.block_until_ready(many(games, jax.random.PRNGKey(i)))
    done += moves * config.selfplay.num_games
    i += 1
  return done / (time.perf_counter() - start)


def python_rate(setup, config, state, seconds: float) -> float:
  env = setup.env
  search = jax.jit(make_search(setup.net, env, config.search, num_simulations=config.search.num_simulations,
                               greedy=False))
  step, init = jax.jit(env.step), jax.jit(env.init)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  batch = lambda s: jax.tree_util.tree_map(lambda x: x[None], s)
  s = init(jax.random.PRNGKey(0))
  jax.block_until_ready(step(s, search(variables, jax.random.PRNGKey(0), batch(s))[0][0]))  # compile
  done, start, game = 0, time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    s = init(jax.random.PRNGKey(game))
    t = 0
    while not bool(s.terminated | s.truncated):
      action, _ = search(variables, jax.random.fold_in(jax.random.PRNGKey(game), t), batch(s))
      s = step(s, action[0])
      done, t = done + 1, t + 1
    game += 1
  return done / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="alphazero_connect4")
  parser.add_argument("--seconds", type=float, default=20.0)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  config, _ = configs.load_preset(args.preset)
  setup = build(config)
  state = create_state(setup, config, jax.random.PRNGKey(0))
  jitted = jitted_rate(setup, config, state, args.seconds)
  python = python_rate(setup, config, state, args.seconds)
  result = {"preset": args.preset, "num_games": config.selfplay.num_games,
            "num_simulations": config.search.num_simulations, "backend": jax.default_backend(),
            "jitted_positions_per_second": jitted, "python_positions_per_second": python,
            "ratio": jitted / python}
  print(f"{args.preset}: jitted {jitted:,.0f} positions/s ({config.selfplay.num_games} games at once), "
        f"Python loop {python:,.1f} positions/s (one game at a time): {jitted / python:.1f}x")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
