"""The engine every loop trains through; it imports no loop.

- ``state``: ``TrainState``, ``step_keys``, ``create_train_state``;
- ``chunk``: many steps in one jitted ``while_loop``, the NaN guard, batch sources;
- ``evaluate``: batched evaluation of a held-out set;
- ``fit``: the ``Task`` protocol and ``fit(task, workdir)``: workdir check,
  resume, checkpoints, divergence, the shared final record;
- ``loop``: the host loop that decides when chunks, logs, evaluations and
  checkpoints happen;
- ``parallel``, ``losses``, ``workdir``, ``writers``, ``plots``.
"""

from jaxdl.train import losses, parallel
from jaxdl.train.chunk import epoch_batches, fresh_batches, make_chunk, make_train_chunk, sharded_epoch_batches
from jaxdl.train.evaluate import make_evaluate
from jaxdl.train.fit import Fitted, Task, TaskBase, fit
from jaxdl.train.loop import Diverged, run
from jaxdl.train.plots import figure, plot_attention_maps, plot_gradient_norms, plot_learning_curves
from jaxdl.train.state import TrainState, create_train_state, step_keys
from jaxdl.train.writers import MetricWriter, StepUnit, write_json

__all__ = [
    "Diverged", "Fitted", "MetricWriter", "Task", "TaskBase", "TrainState", "create_train_state",
    "epoch_batches", "figure", "fit", "fresh_batches", "losses", "make_chunk", "make_evaluate",
    "make_train_chunk", "parallel", "plot_attention_maps", "plot_gradient_norms", "plot_learning_curves",
    "run", "sharded_epoch_batches", "StepUnit", "step_keys", "write_json",
]
