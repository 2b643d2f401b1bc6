"""The AlphaZero config every preset starts from, its checks, and what it builds.

Step units: a *step* of this loop (``train.steps``, ``train.log_every``,
``train.eval_every``, ``checkpoint.every_steps``) is one iteration:
``selfplay.moves_per_iteration`` moves in each of the ``selfplay.num_games``
games in flight, then ``train.updates_per_iteration`` optimizer steps on
batches drawn from the replay buffer.
"""

import dataclasses
from typing import Any

import ml_collections
import optax

from jaxdl import configs
from jaxdl import optim as optim_lib
from jaxdl.envs import boardgames
from jaxdl.models.alphazero import PolicyValueNet
from jaxdl.train import accumulate, parallel, precision, sharding
from jaxdl.train.fit import validate_schedule
from jaxdl.utils.errors import JaxdlError

SEARCHES = ("gumbel", "puct")


def default_config() -> ml_collections.ConfigDict:
  """AlphaZero defaults: tic-tac-toe, a small tower, Gumbel search with 16 simulations."""
  c = ml_collections.ConfigDict()
  c.loop = "alphazero"

  c.game = ml_collections.ConfigDict()
  c.game.name = "tic_tac_toe"  # or connect_four, go (jaxdl.envs.boardgames.GAMES)
  c.game.size = 0  # board size, for the games that have several (go: 5, 7, 9, 13, 19); 0: the game's own

  c.model = ml_collections.ConfigDict()
  c.model.blocks = 2
  c.model.channels = 32
  c.model.value_hidden = 64

  c.search = ml_collections.ConfigDict()
  # 'gumbel': Gumbel MuZero's policy improvement (Danihelka et al. 2022), sound
  # with few simulations; 'puct': AlphaZero's PUCT with Dirichlet noise at the root.
  c.search.algorithm = "gumbel"
  c.search.num_simulations = 16
  c.search.max_considered_actions = 16  # gumbel: actions sampled without replacement at the root
  c.search.gumbel_scale = 1.0  # gumbel: 1 while playing for training (0 is greedy)
  # puct: AlphaZero's values (Silver et al. 2018, Methods) for Dirichlet noise and exploration.
  c.search.dirichlet_alpha = 0.3
  c.search.dirichlet_fraction = 0.25
  c.search.pb_c_init = 1.25
  c.search.temperature = 1.0  # puct: moves are drawn from visit counts ** (1 / temperature)

  c.selfplay = ml_collections.ConfigDict()
  c.selfplay.num_games = 64  # games in flight, split across the devices
  c.selfplay.moves_per_iteration = 4

  c.buffer = ml_collections.ConfigDict()
  c.buffer.size = 20_000  # positions (observation, search policy, outcome)
  c.buffer.min_size = 512  # positions stored before the first update

  c.train = configs.train_section()
  c.train.steps = 300  # iterations
  c.train.batch_size = 256
  c.train.updates_per_iteration = 1
  c.train.value_weight = 1.0  # loss = policy cross-entropy + value_weight * value MSE
  c.train.symmetries = True  # train each position under a random symmetry of the board
  c.train.log_every = 25
  c.train.eval_every = 0  # iterations between evaluations against eval.opponents; 0: only at the end

  c.optim = configs.optim_section()
  c.optim.name = "adamw"
  c.optim.learning_rate = 1e-3
  c.optim.weight_decay = 1e-4

  c.eval = ml_collections.ConfigDict()
  c.eval.opponents = ("random", "heuristic")  # jaxdl.envs.boardgames.OPPONENTS
  c.eval.games = 200  # per opponent, even: the net moves first in half of them
  c.eval.num_simulations = 0  # 0: search.num_simulations; the net plays the search's greedy move

  c.checkpoint = configs.checkpoint_section()
  c.checkpoint.every_steps = 100
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """One-line errors naming the offending key, before anything is built or written."""
  configs.check_keys(c, default_config())
  sharding.check_sharding(c, supported=("replicated",))  # fsdp: the supervised and lm loops
  precision.check_float32(c)  # bfloat16 and accumulation, likewise
  accumulate.check_unsupported(c)
  boardgames.check_game(c.game.name, c.game.size)
  validate_schedule(c, ("steps", "batch_size", "log_every", "updates_per_iteration"))
  s = c.search
  if s.algorithm not in SEARCHES:
    raise JaxdlError(f"search.algorithm='{s.algorithm}' must be one of {', '.join(SEARCHES)}")
  if s.num_simulations < 1:
    raise JaxdlError(f"search.num_simulations={s.num_simulations} must be >= 1")
  if c.eval.num_simulations < 0:
    raise JaxdlError(f"eval.num_simulations={c.eval.num_simulations} must be >= 1 (0: search.num_simulations)")
  if s.max_considered_actions < 1:
    raise JaxdlError(f"search.max_considered_actions={s.max_considered_actions} must be >= 1")
  if s.temperature <= 0:
    raise JaxdlError(f"search.temperature={s.temperature} must be > 0")
  for key in ("num_games", "moves_per_iteration"):
    if c.selfplay[key] < 1:
      raise JaxdlError(f"selfplay.{key}={c.selfplay[key]} must be >= 1")
  if c.buffer.size < c.train.batch_size:
    raise JaxdlError(f"buffer.size={c.buffer.size} is smaller than train.batch_size={c.train.batch_size}; "
                     f"a batch is drawn from the buffer")
  if not c.train.batch_size <= c.buffer.min_size <= c.buffer.size:
    raise JaxdlError(f"buffer.min_size={c.buffer.min_size} must be in [train.batch_size, buffer.size] "
                     f"= [{c.train.batch_size}, {c.buffer.size}]")
  if c.eval.games < 2 or c.eval.games % 2:
    raise JaxdlError(f"eval.games={c.eval.games} must be even and >= 2 (half with each side moving first)")
  for name in c.eval.opponents:
    if name not in boardgames.OPPONENTS:
      raise JaxdlError(f"eval.opponents: unknown opponent '{name}' (known: {', '.join(boardgames.OPPONENTS)})")
    if name == "minimax" and c.game.name != "tic_tac_toe":
      raise JaxdlError(f"eval.opponents: 'minimax' plays only tic_tac_toe, not {c.game.name}")
  for key in ("blocks", "channels", "value_hidden"):
    if c.model[key] < (0 if key == "blocks" else 1):
      raise JaxdlError(f"model.{key}={c.model[key]} must be >= {0 if key == 'blocks' else 1}")


@dataclasses.dataclass
class Setup:
  """What a validated config builds: the game, the network, the optimizer, the mesh.

  Attributes:
    env: the pgx environment.
    max_length: the longest game, in moves.
    net: the policy-value network.
    tx, schedule: the optimizer and its learning-rate schedule.
    mesh: the device mesh; games in flight and evaluation games are split over it.
  """

  env: Any
  max_length: int
  net: PolicyValueNet
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  mesh: Any


def build(c: ml_collections.ConfigDict) -> Setup:
  """Validates ``c`` and builds its :class:`Setup`."""
  validate(c)
  env = boardgames.make_game(c.game.name, c.game.size)
  mesh = parallel.make_mesh(c.train.num_devices)
  parallel.check_divisible(c.selfplay.num_games, mesh, "selfplay.num_games")
  parallel.check_divisible(c.train.batch_size, mesh)
  parallel.check_divisible(c.eval.games, mesh, "eval.games")
  net = PolicyValueNet(env.num_actions, blocks=c.model.blocks, channels=c.model.channels,
                       value_hidden=c.model.value_hidden)
  tx, schedule = optim_lib.from_config(c.optim, c.train.steps * c.train.updates_per_iteration)
  return Setup(env=env, max_length=boardgames.max_game_length(env), net=net, tx=tx, schedule=schedule, mesh=mesh)
