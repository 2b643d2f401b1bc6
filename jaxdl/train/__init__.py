"""Training machinery shared by the loops: state, losses, sharding, the host loop, outputs."""

from jaxdl.train import losses, parallel
from jaxdl.train.loop import run
from jaxdl.train.plots import plot_attention_maps, plot_gradient_norms, plot_learning_curves
from jaxdl.train.state import TrainState, step_keys
from jaxdl.train.writers import MetricWriter, write_json

__all__ = [
    "MetricWriter", "TrainState", "losses", "parallel", "plot_attention_maps",
    "plot_gradient_norms", "plot_learning_curves", "run",
    "step_keys", "write_json",
]
