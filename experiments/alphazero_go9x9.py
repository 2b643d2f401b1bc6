"""AlphaZero on 9x9 Go, sized for a GPU: a 6-block, 128-channel tower and 512 games in flight.

    jaxdl run alphazero_go9x9                       # on a GPU
    jaxdl run alphazero_go9x9 --set train.steps=2 --set selfplay.num_games=16 \\
        --set model.channels=16 --set model.blocks=1   # a smoke run on a CPU

Target (GPU): a win rate of at least 0.95 against the random player over 200
games, and the rate against the heuristic reported. pgx's rules: area
scoring, komi 7.5, a game ends after two passes or 2 x 81 = 162 moves.
Result: not run as sized, for no GPU was lent. Shrunk to the CPU with --set
alone (a 2x32 tower, 64 games, 8 simulations, 1,500 iterations; the README
gives the command), it won 1.00 against the random player and 1.00 against
the heuristic over 200 games each, in 25 minutes on 2 cores (2026-12-03).
The tests run a smaller version still.
"""

from jaxdl.loops.alphazero import default_config


def get_config():
  config = default_config()
  config.game.name = "go"
  config.game.size = 9
  config.model.blocks = 6
  config.model.channels = 128
  config.model.value_hidden = 128
  config.search.algorithm = "gumbel"
  config.search.num_simulations = 32
  config.selfplay.num_games = 512
  config.selfplay.moves_per_iteration = 8
  config.buffer.size = 400_000  # about 100 iterations of positions
  config.buffer.min_size = 16_384
  config.train.steps = 3000
  config.train.batch_size = 1024
  config.train.updates_per_iteration = 4
  config.train.log_every = 25
  config.train.eval_every = 250
  config.optim.schedule = "cosine"
  config.optim.learning_rate = 2e-3
  config.eval.opponents = ("random", "heuristic")
  config.eval.games = 200
  config.eval.num_simulations = 64
  config.checkpoint.every_steps = 250
  return config
