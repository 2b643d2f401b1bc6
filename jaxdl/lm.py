"""The earlier home of the language-model loop, kept so that existing code still imports.

The loop lives in :mod:`jaxdl.loops.lm`.
"""

from jaxdl.loops.lm import *  # noqa: F401,F403
from jaxdl.loops.lm import __all__  # noqa: F401
