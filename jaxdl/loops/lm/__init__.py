"""The language-model loop: next-character prediction on a text, sampling, loading a run.

    state, metrics = lm_train_step(state, {"x": (B, T), "y": (B, T)})
"""

from jaxdl.loops.lm.config import AUTO, AUTO_KEYS, default_config, derive, validate
from jaxdl.loops.lm.experiment import (END_SAMPLE_LENGTH, END_SAMPLE_TEMPERATURE, LMExperiment, LMTask,
                                       train_and_evaluate)
from jaxdl.loops.lm.sampling import build_model, generate, load_run, sample_from_workdir
from jaxdl.loops.lm.step import (LN2, eval_windows, lm_eval_step, lm_train_step, make_lm_chunk,
                                 take_windows, token_cross_entropy)

__all__ = ["AUTO", "AUTO_KEYS", "END_SAMPLE_LENGTH", "END_SAMPLE_TEMPERATURE", "LMExperiment", "LMTask", "LN2", "build_model", "default_config", "derive", "eval_windows",
           "generate", "lm_eval_step", "lm_train_step", "load_run", "make_lm_chunk",
           "sample_from_workdir", "take_windows", "token_cross_entropy", "train_and_evaluate",
           "validate"]
