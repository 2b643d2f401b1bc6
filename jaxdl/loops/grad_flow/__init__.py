"""The grad_flow loop: a study of how gradients reach each layer, across variants of a classifier.

Each variant (``study.variants``: a name and ``--set`` overrides) trains as a
supervised run in ``WORKDIR/<variant>``; the study measures every layer's
gradient norm at initialisation and after training (``jaxdl.diagnostics``)
and plots them (``grad_flow.png``, ``training.png``).
"""

from jaxdl.loops.grad_flow.config import default_config, parse_variants, validate, variant_config
from jaxdl.loops.grad_flow.experiment import prepare_variant, run_variant, summarize, train_and_evaluate

__all__ = ["default_config", "parse_variants", "prepare_variant", "run_variant", "summarize", "train_and_evaluate",
           "validate", "variant_config"]
