"""AlphaZero on Connect Four: self-play with Gumbel MuZero search, then matches against the heuristic.

    jaxdl run alphazero_connect4

Target: a win rate of at least 0.90 against the one-ply heuristic (win at
once if it can, else block an immediate loss, else random) over 200 games,
100 moving first and 100 second, in at most 20 minutes on a 2-core CPU.

Result (seed 0): against the heuristic 0.92 won (0.94 moving first, 0.90
second), 0.07 lost; 0.95 at iteration 500; against random 0.995. 18.9 min
for the whole run while the test suite shared the 2 cores for most of it
(the first 500 iterations and their matches, before the suite started,
took 6 min).

The choices: a 2-block, 32-channel tower (a 3-block, 64-channel one was 8x
slower per move on the CPU); 16 simulations per move in self-play and 128 in
the matches; 4 updates of 256 positions per iteration of 64 games x 4
moves; the left-right mirror of every position; a cosine learning rate.
"""

from jaxdl.loops.alphazero import default_config


def get_config():
  config = default_config()
  config.game.name = "connect_four"
  config.model.blocks = 2
  config.model.channels = 32
  config.search.algorithm = "gumbel"
  config.search.num_simulations = 16
  config.selfplay.num_games = 64
  config.selfplay.moves_per_iteration = 4
  config.buffer.size = 50_000
  config.train.steps = 1000
  config.train.batch_size = 256
  config.train.updates_per_iteration = 4
  config.train.log_every = 50
  config.train.eval_every = 500
  config.optim.schedule = "cosine"
  config.eval.opponents = ("random", "heuristic")
  config.eval.games = 200
  config.eval.num_simulations = 128  # the trained net won 0.90 of 200 games at 32, 0.95 at 64, 0.97 at 128
  config.checkpoint.every_steps = 250
  return config
