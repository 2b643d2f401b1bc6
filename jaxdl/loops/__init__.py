"""The training loops, one package each; every one trains through ``jaxdl.train.fit``.

Each loop owns its pure step, its config schema (``default_config()``: every
key it reads and no other) and ``train_and_evaluate(config, workdir)``. No
loop imports another, except that the GAN's digit metrics use a classifier
trained by the supervised loop (declared in the import-linter contract).
"""

import importlib
from types import ModuleType

from jaxdl.utils.errors import JaxdlError

# config.loop -> the package whose ``train_and_evaluate(config, workdir)`` runs it.
LOOPS = {
    "supervised": "jaxdl.loops.supervised",
    "lm": "jaxdl.loops.lm",
    "gan": "jaxdl.loops.gan",
    "dqn": "jaxdl.loops.dqn",
    "alphazero": "jaxdl.loops.alphazero",
    "grad_flow": "jaxdl.loops.grad_flow",
    "simclr": "jaxdl.loops.simclr",
    "transfer": "jaxdl.loops.transfer",
    "distill": "jaxdl.loops.distill",
    "recommend": "jaxdl.loops.recommend",
}


def get_loop(name: str) -> ModuleType:
  """The loop package called ``name`` (imported on first use: a run loads only its own loop)."""
  if name not in LOOPS:
    raise JaxdlError(f"unknown loop '{name}' (known: {', '.join(LOOPS)})")
  return importlib.import_module(LOOPS[name])


__all__ = ["LOOPS", "get_loop"]
