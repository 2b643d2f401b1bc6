"""The supervised run: a classifier trained on device-resident data, then tested.

:class:`SupervisedTask` builds everything from a config (so every bad input
fails before anything is written) and is what ``jaxdl.train.fit`` drives;
:func:`train_and_evaluate` adds the outputs.
"""

import functools
import pathlib

import jax
import ml_collections
import numpy as np
import optax

from jaxdl import checkpoint as checkpoint_lib
from jaxdl import data as data_lib
from jaxdl import models as models_lib
from jaxdl import optim as optim_lib
from jaxdl.loops.supervised.config import validate
from jaxdl.loops.supervised.step import LossFn, eval_step, train_step
from jaxdl.train import parallel
from jaxdl.train import workdir as workdir_lib
from jaxdl.train.chunk import make_train_chunk
from jaxdl.train.evaluate import make_evaluate
from jaxdl.train.fit import TaskBase, build_and_fit, optimizer_or
from jaxdl.train.plots import plot_attention_maps, plot_gradient_norms, plot_learning_curves
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.writers import console, write_json
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256


def build_model_state(config: ml_collections.ConfigDict, dataset: data_lib.Dataset, mesh,
                      tx) -> tuple:
  """The config's model for ``dataset`` and its initial state, replicated over ``mesh``.

  A model that cannot take the data's inputs is a one-line error.
  """
  model = models_lib.get_model(config.model.name, dataset.num_classes,
                               **models_lib.options_from_config(config.model))
  try:
    state = create_train_state(model, tx, jax.random.PRNGKey(config.train.seed), dataset.x_train[:2])
  except JaxdlError:
    raise
  except Exception as e:  # shape errors from inside Flax/XLA, made one line
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise JaxdlError(
        f"model '{config.model.name}' cannot take data '{dataset.name}' with inputs of shape "
        f"{dataset.input_shape}: {first}") from e
  return model, parallel.put_replicated(state, mesh)


def restore_init(config: ml_collections.ConfigDict, state: TrainState, mesh) -> tuple[TrainState, dict]:
  """``init.*``: ``state`` with the chosen parameters (and their BatchNorm statistics) of another run.

  Returns:
    (the state, replicated over ``mesh``; what ``metrics.json`` records of
    the source: ``init_from`` and ``init_restored``, or {} without ``init.workdir``).

  Raises:
    JaxdlError: no checkpoint in ``init.workdir``, a pattern that matches
      no parameter, or a chosen parameter the source lacks or has in another shape.
  """
  init = config.get("init")
  if init is None or not init.workdir:
    return state, {}
  source = pathlib.Path(init.workdir)
  directory = source / "checkpoints"
  if not checkpoint_lib.Checkpointer(directory, log=lambda _: None).steps():
    raise JaxdlError(f"init.workdir={source}: no checkpoint there (expected the workdir of a trained run, "
                     f"with checkpoints/)")
  host = jax.device_get(state)
  paths = optim_lib.param_paths(host.params)
  include, exclude = tuple(init.include), tuple(init.exclude)
  optim_lib.check_patterns(include, paths, "init.include")
  optim_lib.check_patterns(exclude, paths, "init.exclude")
  try:
    params, restored = checkpoint_lib.restore_params(directory, host.params, include=include, exclude=exclude)
    if not restored:
      raise JaxdlError(f"init.include={include} with init.exclude={exclude} choose no parameter")
    batch_stats = host.batch_stats
    if batch_stats:  # the running statistics of the layers copied, which their outputs depend on
      batch_stats, _ = checkpoint_lib.restore_params(directory, batch_stats, include=include, exclude=exclude,
                                                     collection="batch_stats", strict=False)
  except JaxdlError as e:
    raise JaxdlError(f"init.workdir={source}: {e} (leave parameters out with init.exclude)") from None
  console(f"jaxdl: init: {len(restored)} of {len(paths)} parameter arrays from {directory}")
  state = parallel.put_replicated(host.replace(params=params, batch_stats=batch_stats), mesh)
  return state, {"init_from": str(source.absolute()), "init_restored": len(restored)}


class SupervisedTask(TaskBase):
  """Everything a supervised run needs, built from a config and checked.

  Building it validates the config, loads the data, builds the model and
  initialises it, so every bad input fails here, before anything is written.

  Attributes:
    config, dataset, model, mesh, state, schedule, train_step (bound, pure),
    chunk (jitted, donating the state), evaluate, steps_per_epoch, and the
    :class:`jaxdl.train.fit.Task` fields.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, data: data_lib.Dataset | None = None,
               loss_fn: LossFn | None = None, tx: optax.GradientTransformation | None = None):
    validate(config)
    t = config.train
    if data is None:
      self.dataset = ds = data_lib.load_dataset(
          config.data.name, config.data.path or None, num_classes=config.data.num_classes)
    else:
      self.dataset = ds = _check_data(config, data)
      config = _config_for_data(config, data)
    self.config = config
    self.mesh = parallel.make_mesh(t.num_devices)
    parallel.check_divisible(t.batch_size, self.mesh)
    tx, self.schedule = optimizer_or(tx, config.optim, t.steps)
    self.model, self.state = build_model_state(config, ds, self.mesh, tx)
    self.state, self.init_record = restore_init(config, self.state, self.mesh)
    augment = data_lib.make_augment(
        shift=config.augment.shift, flip=config.augment.flip, noise=config.augment.noise,
        mixup=config.augment.mixup, scale=config.augment.scale)
    # Trace the augmentation once now, so an option that does not fit the
    # data (a shift on vector inputs, say) fails before anything is written.
    jax.eval_shape(augment, jax.random.PRNGKey(0), ds.x_train[:2],
                   np.zeros((2, ds.num_classes), np.float32))
    self.train_step = functools.partial(
        train_step, num_classes=ds.num_classes, augment=augment,
        label_smoothing=t.label_smoothing, schedule=self.schedule, loss_fn=loss_fn,
        log_layer_stats=t.log_layer_stats)
    chunk = make_train_chunk(
        self.train_step, num_examples=ds.num_train, batch_size=t.batch_size,
        batch_sharding=parallel.batch_sharded(self.mesh), nan_policy=t.nan_policy)
    self.steps_per_epoch = chunk.steps_per_epoch
    self.chunk = jax.jit(chunk, donate_argnums=(0,))
    self.train_data = parallel.put_replicated({"x": ds.x_train, "y": ds.y_train}, self.mesh)
    self.evaluate = make_evaluate(
        functools.partial(eval_step, loss_fn=loss_fn), ds.x_test, ds.y_test, mesh=self.mesh,
        batch_size=t.eval_batch_size)
    self.total_steps, self.max_chunk = t.steps, self.steps_per_epoch
    self.eval_every = t.eval_every or self.steps_per_epoch  # 0: once per epoch

  def run_chunk(self, state: TrainState, n) -> tuple[TrainState, dict]:
    return self.chunk(state, self.train_data, n)

  def on_start(self, workdir: pathlib.Path, resuming: bool) -> None:
    """Writes ``data.json`` (what the run trains on), or on resume refuses data that changed."""
    workdir_lib.record_dataset(workdir, self.dataset, resuming=resuming)

  def headline(self, state: TrainState) -> str:
    ds, t = self.dataset, self.config.train
    return (f"jaxdl: {self.config.model.name} ({param_count(state.params):,} params) on {ds.name} "
            f"({ds.num_train} train / {ds.num_test} test, inputs {ds.input_shape}, "
            f"{ds.num_classes} classes), {self.mesh.devices.size} {jax.default_backend()} device(s), "
            f"{t.steps} steps of batch {t.batch_size}")


# Kept for code written against the earlier name.
Experiment = SupervisedTask

# What a run trained on, for resume checks and for ``load_run`` (written by record_dataset).
DATA_FILE = workdir_lib.DATA_FILE


def _check_data(config: ml_collections.ConfigDict, data: data_lib.Dataset) -> data_lib.Dataset:
  if not isinstance(data, data_lib.Dataset):
    raise JaxdlError(f"data must be a jaxdl.Dataset (jaxdl.Dataset.from_arrays(name, x_train, y_train, "
                     f"x_test, y_test)), not {type(data).__name__}")
  if config.data.num_classes and config.data.num_classes != data.num_classes:
    raise JaxdlError(f"data.num_classes={config.data.num_classes} but the data passed in has "
                     f"{data.num_classes} classes")
  return data


def _config_for_data(config: ml_collections.ConfigDict, data: data_lib.Dataset) -> ml_collections.ConfigDict:
  """A copy of ``config`` whose ``data`` section names the arrays passed in (for config.json)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.name, config.data.path, config.data.num_classes = data.name, "", data.num_classes
  return config


def _plot_sequence_model(task: SupervisedTask, state: TrainState, workdir: pathlib.Path) -> None:
  """``input_gradients.png`` for a recurrent classifier, ``attention.png`` for a Transformer.

  The first shows how much gradient reaches each input step (the vanishing
  gradient of a tanh RNN), on the first 256 test examples; the second each
  layer's and head's attention on the first test example.
  """
  model, ds, name = task.model, task.dataset, task.config.model.name
  variables = jax.device_get(state.variables())
  if isinstance(model, models_lib.RNNClassifier):
    x, y = ds.x_test[:256], ds.y_test[:256]
    norms = jax.jit(functools.partial(models_lib.input_gradient_norms, model.apply))(variables, x, y)
    plot_gradient_norms({name: np.asarray(norms)}, workdir / "input_gradients.png",
                        title=f"{name} on {ds.name}: gradient reaching each input step")
  elif isinstance(model, models_lib.TransformerClassifier):
    maps = jax.jit(functools.partial(models_lib.attention_maps, model))(variables, ds.x_test[:1])
    plot_attention_maps(np.stack([np.asarray(m[0]) for m in maps]), workdir / "attention.png",
                        title=f"{name} on {ds.name}: attention on test example 0 "
                              f"(label {int(ds.y_test[0])})")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       data: data_lib.Dataset | None = None, loss_fn: LossFn | None = None,
                       tx: optax.GradientTransformation | None = None) -> tuple[TrainState, dict]:
  """Trains a classifier as the config says and evaluates it on the test set.

  Writes into ``workdir``: ``config.json`` (the resolved config),
  ``metrics.jsonl`` (one record per log), TensorBoard events under ``tb/``,
  ``checkpoints/`` (Orbax), ``learning_curves.png``, ``input_gradients.png``
  (recurrent models) or ``attention.png`` (Transformers), and
  ``metrics.json`` (the final metrics, one flat object, including
  ``params_sha256``).

  A workdir that already holds this run resumes from its newest intact
  checkpoint and ends exactly where an uninterrupted run would have.

  Args:
    config: a config from ``jaxdl.loops.supervised.default_config()`` or a preset.
    workdir: the run's output directory.
    data: arrays in memory (``jaxdl.Dataset.from_arrays``) instead of
      ``data.name``; ``config.json`` then names them, and ``data.json``
      holds their hash, so a resume with other arrays is refused.
    loss_fn: your own ``(logits, batch) -> (B,)`` loss (``step.LossFn``), for
      training and the test loss; default softmax cross-entropy.
    tx: your own Optax optimizer instead of the ``optim`` section (the
      optimizer is not in ``config.json``: resume with the same one).

  Returns:
    The final state and the final metrics dict.

  Raises:
    JaxdlError: bad input (before anything is written), or
      ``jaxdl.train.loop.Diverged`` under ``train.nan_policy=halt``.
  """
  task, fitted, t0 = build_and_fit(lambda: SupervisedTask(config, data=data, loss_fn=loss_fn, tx=tx), config, workdir)
  workdir = pathlib.Path(workdir)
  ds = task.dataset
  if fitted.finished is not None:  # a rerun of a finished run: nothing trained, nothing written
    return fitted.state, fitted.finished
  state, test = fitted.state, fitted.test_metrics(task.evaluate)
  last_train = fitted.last("train/loss")
  steps_done = int(jax.device_get(state.step))
  final = {
      "test_accuracy": test["accuracy"],
      "test_loss": test["loss"],
      "train_loss": last_train.get("train/loss", float("nan")),
      "train_accuracy": last_train.get("train/accuracy", float("nan")),
      "steps": steps_done,
      "epochs": steps_done / task.steps_per_epoch,
      "skipped_steps": int(jax.device_get(state.skipped)),
      **fitted.record(t0),
      "params_sha256": tree_sha256(state.params),
      "param_count": param_count(state.params),
      "num_devices": int(task.mesh.devices.size),
      "dataset": ds.name,
      "model": config.model.name,
      **task.init_record,
  }
  if jax.process_index() == 0:
    write_json(workdir / "metrics.json", final)
    where = pathlib.Path(config.data.path).name if config.data.path else ds.name  # the file, if one
    plot_learning_curves(fitted.history, workdir / "learning_curves.png",
                         title=f"{task.config.model.name} on {where}")
    _plot_sequence_model(task, state, workdir)
  console(f"test_accuracy={final['test_accuracy']:.4f} test_loss={final['test_loss']:.4f} "
          f"({final['steps']} steps, {final['wall_seconds']:.1f} s) -> {workdir}/metrics.json")
  return state, final
