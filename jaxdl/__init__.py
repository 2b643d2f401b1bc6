"""jaxdl: a JAX functional research toolkit.

Flax (Linen) models, Optax optimizers, and training loops whose every step is
a pure function ``state, metrics = step(state, batch)``, jit-compiled and
data-parallel over all devices.

    >>> import jaxdl
    >>> config = jaxdl.base_config()
    >>> state, metrics = jaxdl.train_and_evaluate(config, "runs/quick")  # doctest: +SKIP

The layers, each importing only those before it: ``jaxdl.utils``; the
leaves ``models``, ``optim``, ``data``, ``envs``, ``checkpoint`` and
``configs``; the engine ``jaxdl.train``; the loops ``jaxdl.loops.*``; the
command line ``jaxdl.cli``.
"""

from jaxdl.utils import cpu_runtime

CPU_RUNTIME = cpu_runtime.configure()  # before any backend starts: see jaxdl.utils.cpu_runtime

from jaxdl import loops  # noqa: E402
from jaxdl.configs import apply_overrides, load_preset
from jaxdl.data import DATASETS, Dataset, load_dataset, make_augment
from jaxdl.loops.supervised import default_config as base_config
from jaxdl.loops.supervised import Run, eval_step, load_run, train_and_evaluate, train_step
from jaxdl.models import MODELS, get_model, register_model
from jaxdl.optim import make_optimizer, make_schedule
from jaxdl.train import TrainState, plot_learning_curves
from jaxdl.train.chunk import make_train_chunk
from jaxdl.train.evaluate import make_evaluate
from jaxdl.train.fit import Task, fit
from jaxdl.train.state import create_train_state
from jaxdl.utils import JaxdlError, param_count, tree_sha256

__version__ = "0.1.0"

# Submodules that load on first use: ``import jaxdl; jaxdl.rl.make_train`` works
# without paying for every loop at import time.
_LAZY_SUBMODULES = ("checkpoint", "cli", "configs", "data", "envs", "gan", "interpret", "lm", "models", "optim",
                    "rl", "supervised", "utils")


def __getattr__(name):
  if name in _LAZY_SUBMODULES:
    import importlib

    return importlib.import_module(f"jaxdl.{name}")
  raise AttributeError(f"module 'jaxdl' has no attribute {name!r}")

__all__ = [
    "DATASETS", "Dataset", "JaxdlError", "MODELS", "Run", "Task", "TrainState", "apply_overrides",
    "base_config", "create_train_state", "eval_step", "fit", "get_model", "load_dataset", "load_run", "loops",
    "load_preset", "make_augment", "make_evaluate", "make_optimizer", "make_schedule",
    "make_train_chunk", "param_count", "plot_learning_curves", "register_model", "train_and_evaluate",
    "train_step", "tree_sha256",
]
