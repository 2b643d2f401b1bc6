"""The earlier home of the supervised loop, kept so that existing code still imports.

The loop lives in :mod:`jaxdl.loops.supervised`, the machinery it used to
hold (state, chunk, evaluation, ``fit``) in :mod:`jaxdl.train`.
"""

from jaxdl.loops.supervised import (Experiment, SupervisedTask, default_config, eval_step,
                                    train_and_evaluate, train_step)
from jaxdl.loops.supervised import validate as validate_config
from jaxdl.train.chunk import NAN_POLICIES, make_train_chunk
from jaxdl.train.evaluate import make_evaluate
from jaxdl.train.fit import Fitted, fit, validate_schedule
from jaxdl.train.state import TrainState, create_train_state

__all__ = ["Experiment", "Fitted", "NAN_POLICIES", "SupervisedTask", "TrainState", "create_train_state",
           "default_config", "eval_step", "fit", "make_evaluate", "make_train_chunk", "train_and_evaluate",
           "train_step", "validate_config", "validate_schedule"]
