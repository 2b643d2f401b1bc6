"""Self-play: AlphaZero (Silver et al. 2017) with mctx's tree search on pgx's board games.

    jaxdl run alphazero_tictactoe      # never loses to perfect play
    jaxdl run alphazero_connect4
    jaxdl run alphazero_go9x9          # GPU-scale

The pieces: ``config`` (the schema and what it builds), ``search`` (mctx's
Gumbel MuZero or PUCT search with the real game as the model), ``selfplay``
(games in flight, the replay buffer, one iteration: moves, then updates),
``arena`` (matches against ``jaxdl.envs.boardgames``' opponents), ``plots``
and ``experiment`` (``AlphaZeroTask`` and ``train_and_evaluate``).
"""

from jaxdl.loops.alphazero.config import default_config, validate
from jaxdl.loops.alphazero.experiment import AlphaZeroTask, train_and_evaluate

__all__ = ["AlphaZeroTask", "default_config", "train_and_evaluate", "validate"]
