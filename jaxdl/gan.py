"""The earlier home of the GAN loop, kept so that existing code still imports.

The loop lives in :mod:`jaxdl.loops.gan`.
"""

from jaxdl.loops.gan import *  # noqa: F401,F403
from jaxdl.loops.gan import __all__  # noqa: F401
