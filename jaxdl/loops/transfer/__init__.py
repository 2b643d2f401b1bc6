"""The transfer study: pretrain, restore the backbone under a new head, fine-tune on few labels, vs scratch.

``default_config()`` is its schema (the supervised one plus ``transfer.*``),
``train_and_evaluate(config, workdir)`` the study (three supervised runs in
``WORKDIR/{pretrain,finetune,scratch}``).
"""

from jaxdl.loops.transfer.config import default_config, validate
from jaxdl.loops.transfer.experiment import build_data, train_and_evaluate

__all__ = ["build_data", "default_config", "train_and_evaluate", "validate"]
