"""The simclr loop: contrastive pretraining without labels (Chen et al. 2020), then linear probes.

    state, metrics = simclr_step(state, {"x": (B, ...)})

``config`` (schema), ``augment`` (the views, on the device), ``losses``
(NT-Xent), ``model`` (encoder + projection head), ``step``, ``probe``
(linear probe, k-NN), ``plots`` and ``experiment`` (``SimCLRTask``,
``train_and_evaluate``).
"""

from jaxdl.loops.simclr.augment import make_views
from jaxdl.loops.simclr.config import default_config, validate
from jaxdl.loops.simclr.experiment import SimCLRTask, linear_probes, train_and_evaluate
from jaxdl.loops.simclr.losses import contrastive_accuracy, nt_xent
from jaxdl.loops.simclr.model import ContrastiveNet, build_model, has_features
from jaxdl.loops.simclr.probe import Probe, fit_linear_probe, knn_accuracy, probe_accuracy
from jaxdl.loops.simclr.step import make_pair, simclr_step, two_views

__all__ = ["ContrastiveNet", "Probe", "SimCLRTask", "build_model", "contrastive_accuracy", "default_config",
           "fit_linear_probe", "has_features", "knn_accuracy", "linear_probes", "make_pair", "make_views",
           "nt_xent", "probe_accuracy", "simclr_step", "train_and_evaluate", "two_views", "validate"]
