"""The supervised loop: classifiers (and regressions) on arrays (images, signals, sequences, tables).

    state, metrics = train_step(state, {"x": (B, ...), "y": (B,)})

``default_config()`` is its schema, ``SupervisedTask`` what ``jaxdl.train.fit``
drives, ``train_and_evaluate(config, workdir)`` the whole run.
"""

from jaxdl.loops.supervised.config import default_config, study_schema, supervised_part, validate, validate_study
from jaxdl.loops.supervised.experiment import (Experiment, SupervisedTask, build_model_state,
                                               train_and_evaluate)
from jaxdl.loops.supervised.load import Run, load_run
from jaxdl.loops.supervised.step import LossFn, Regression, eval_step, train_step

__all__ = ["Experiment", "LossFn", "Regression", "Run", "SupervisedTask", "build_model_state", "default_config",
           "eval_step", "load_run", "study_schema", "supervised_part", "train_and_evaluate", "train_step", "validate",
           "validate_study"]
