"""The earlier home of the DQN loop (``jaxdl.rl.make_train`` and the rest), kept so that existing code still imports.

The loop lives in :mod:`jaxdl.loops.dqn`.
"""

from jaxdl.loops.dqn import *  # noqa: F401,F403
from jaxdl.loops.dqn import __all__  # noqa: F401
