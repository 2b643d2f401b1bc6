"""The supervised run: a classifier (or a regression) trained on device-resident data, then tested.

:class:`SupervisedTask` builds everything from a config (so every bad input
fails before anything is written) and is what ``jaxdl.train.fit`` drives;
:func:`train_and_evaluate` adds the outputs.
"""

import functools
import json
import pathlib

import jax
import ml_collections
import numpy as np
import optax

from jaxdl import checkpoint as checkpoint_lib
from jaxdl import data as data_lib
from jaxdl import models as models_lib
from jaxdl import optim as optim_lib
from jaxdl.configs import to_dict
from jaxdl.loops.supervised.config import validate
from jaxdl.loops.supervised.step import LossFn, Regression, eval_step, train_step
from jaxdl.train import accumulate, memory, parallel, precision, programs
from jaxdl.train import sharding as sharding_lib
from jaxdl.train import workdir as workdir_lib
from jaxdl.train.chunk import make_train_chunk
from jaxdl.train.evaluate import make_evaluate
from jaxdl.train.fit import TaskBase, build_and_fit, optimizer_or
from jaxdl.train.plots import plot_attention_maps, plot_gradient_norms, plot_learning_curves
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.writers import console, write_atomic, write_json
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count

# The standardisations a run trains under (inputs, regression targets), for load_run.
SCALING_FILE = "scaling.json"


# Sequences longer than this are checked against the devices' memory before a
# run, by compiling its programs ahead of time (one compile more). Shorter ones
# fit every model here at the presets' batch sizes: mnist1d_transformer's
# training chunk at 512 one-sample tokens and batch 128 needs 2.3 GiB.
LONG_SEQUENCE = 512


def make_model(model_config: ml_collections.ConfigDict, num_classes: int, *, vocab_size: int = 0):
  """The model ``model_config`` names; token ids (``vocab_size`` > 0) reach it through an embedding."""
  model = models_lib.get_model(model_config.name, num_classes, **models_lib.options_from_config(model_config))
  return models_lib.TokenEmbedding(model, vocab_size) if vocab_size else model


def build_model_state(config: ml_collections.ConfigDict, dataset: data_lib.Dataset, mesh,
                      tx) -> tuple:
  """The config's model for ``dataset`` and its initial state, laid out over ``mesh`` as ``train.sharding`` says.

  A model that cannot take the data's inputs is a one-line error.
  """
  model = make_model(precision.model_section(config), dataset.num_classes, vocab_size=dataset.vocab_size)
  if dataset.lengths_train is not None and not models_lib.takes_lengths(model):
    raise JaxdlError(f"model '{config.model.name}' takes no lengths, and data '{dataset.name}' holds padded "
                     f"sequences of different lengths (lengths_train)")
  try:
    state = create_train_state(model, tx, int(config.train.seed), dataset.x_train[:2])
  except JaxdlError:
    raise
  except Exception as e:  # shape errors from inside Flax/XLA, made one line
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise JaxdlError(
        f"model '{config.model.name}' cannot take data '{dataset.name}' with inputs of shape "
        f"{dataset.input_shape}: {first}") from e
  if config.train.sharding == "replicated":
    return model, parallel.put_replicated(state, mesh)
  return model, sharding_lib.place(state, sharding_lib.state_shardings(state, mesh, config.train.sharding))


def restore_init(config: ml_collections.ConfigDict, state: TrainState, mesh,
                 shardings=None) -> tuple[TrainState, dict]:
  """``init.*``: ``state`` with the chosen parameters (and their BatchNorm statistics) of another run.

  Returns:
    (the state, replicated over ``mesh`` or placed with ``shardings``; what ``metrics.json`` records of
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
  host = host.replace(params=params, batch_stats=batch_stats)
  state = parallel.put_replicated(host, mesh) if shardings is None else sharding_lib.place(host, shardings)
  return state, {"init_from": str(source.absolute()), "init_restored": len(restored)}


def fit_scaling(config: ml_collections.ConfigDict, dataset: data_lib.Dataset) -> dict[str, data_lib.Standardizer]:
  """Standardisations fit on the training split: ``inputs`` (``data.normalize=feature``), a regression's ``targets``.

  A regression's targets are always standardised (per output): the loss
  and ``train.huber_delta`` are then in standard deviations, and the
  metrics are turned back into the targets' units.
  """
  scaling = {}
  if config.data.get("normalize", "") == "feature":
    if dataset.vocab_size or dataset.lengths_train is not None:
      raise JaxdlError(f"data.normalize=feature standardises float features; data '{dataset.name}' holds "
                       f"{'token ids' if dataset.vocab_size else 'padded sequences'}: set it to false")
    scaling["inputs"] = data_lib.Standardizer.fit(dataset.x_train)
  if dataset.task == "regression":
    scaling["targets"] = data_lib.Standardizer.fit(_columns(dataset.y_train))
  return scaling


def _columns(y: np.ndarray) -> np.ndarray:
  """Regression targets as (N, K): (N,) becomes one column."""
  return y.reshape(len(y), -1)


class SupervisedTask(TaskBase):
  """Everything a supervised run needs, built from a config and checked.

  Building it validates the config, loads the data, builds the model and
  initialises it, so every bad input fails here, before anything is written.

  Attributes:
    config, dataset, model, mesh, state, schedule, train_step (bound, pure),
    chunk (jitted, donating the state), evaluate, steps_per_epoch, and the
    :class:`jaxdl.train.fit.Task` fields; scaling (``fit_scaling``) and
    regression (a :class:`Regression`, or None for a classifier).
  """

  def __init__(self, config: ml_collections.ConfigDict, *, data: data_lib.Dataset | None = None,
               loss_fn: LossFn | None = None, tx: optax.GradientTransformation | None = None):
    validate(config)
    t = config.train
    # The chunk is kept across runs (jaxdl.train.programs) when all its code is jaxdl's: the config and data decide it.
    own_code = loss_fn is None and tx is None and programs.from_jaxdl(models_lib.constructor_of(config.model.name))
    if data is None:
      self.dataset = ds = data_lib.load_dataset(
          config.data.name, config.data.path or None, num_classes=config.data.num_classes,
          task=config.train.task)
    else:
      self.dataset = ds = _check_data(config, data)
      config = _config_for_data(config, data)
    if config.data.max_length:
      self.dataset = ds = data_lib.with_steps(ds, config.data.max_length)
    if config.data.normalize == "sequence":
      self.dataset = ds = data_lib.normalize_sequences(ds)
    self.config = config
    self.mesh = parallel.make_mesh(t.num_devices)
    parallel.check_divisible(t.batch_size, self.mesh)
    tx, self.schedule = optimizer_or(tx, config.optim, t.steps)
    self.model, self.state = build_model_state(config, ds, self.mesh, tx)
    if t.sharding != "replicated":
      self.state_shardings = sharding_lib.state_shardings(self.state, self.mesh, t.sharding)
    self.state, self.init_record = restore_init(config, self.state, self.mesh, self.state_shardings)
    self.scaling = fit_scaling(config, ds)
    self.regression = None
    if ds.task == "regression":
      self.regression = Regression(loss=t.loss or "mse", huber_delta=t.huber_delta,
                                   target_std=tuple(float(s) for s in self.scaling["targets"].std))
    augment = data_lib.make_augment(
        shift=config.augment.shift, flip=config.augment.flip, noise=config.augment.noise,
        mixup=config.augment.mixup, scale=config.augment.scale, time_mask=config.augment.time_mask,
        freq_mask=config.augment.freq_mask, num_masks=config.augment.num_masks)
    lengths = {} if ds.lengths_train is None else {"lengths": ds.lengths_train}
    # Trace the augmentation once now, so an option that does not fit the
    # data (a shift on vector inputs, say) fails before anything is written.
    try:
      jax.eval_shape(augment, jax.ShapeDtypeStruct((2,), np.uint32), ds.x_train[:2],
                     np.zeros((2, ds.num_classes), np.float32), **{k: v[:2] for k, v in lengths.items()})
    except JaxdlError as e:
      hint = " (tabular data (N, D): start from the tabular_mlp preset)" if ds.kind == "vector" else ""
      raise JaxdlError(f"data '{ds.name}': {e}{hint}") from None
    self.train_step = functools.partial(
        train_step, num_classes=ds.num_classes, augment=augment,
        label_smoothing=t.label_smoothing, schedule=self.schedule, loss_fn=loss_fn,
        log_layer_stats=t.log_layer_stats, regression=self.regression,
        accumulate_steps=accumulate.check_accumulate(t.accumulate_steps, t.batch_size, self.mesh.devices.size))
    # Sharded: every device holds rows_per_shard rows (the last num_train % devices are dropped).
    self.placement = parallel.data_placement(config.data.placement)
    sharded = self.placement == "sharded"
    self.train_rows = (parallel.rows_per_shard(ds.num_train, self.mesh) * self.mesh.devices.size if sharded
                       else ds.num_train)
    chunk = make_train_chunk(
        self.train_step, num_examples=self.train_rows, batch_size=t.batch_size,
        batch_sharding=parallel.batch_sharded(self.mesh), nan_policy=t.nan_policy,
        sharded_over=self.mesh if sharded else None, state_sharding=self.state_shardings)
    self.steps_per_epoch = chunk.steps_per_epoch
    self.chunk = programs.PersistentJit(
        chunk, key=("supervised", to_dict(config), self.dataset.sha256) if own_code else None, donate_argnums=(0,),
        **sharding_lib.jit_out(self.state_shardings, self.mesh))
    x_train, y_train, x_test, y_test = self.arrays()
    train_data = {"x": x_train, "y": y_train, **lengths}
    layout = parallel.batch_sharded(self.mesh) if sharded else parallel.replicated(self.mesh)
    if ds.steps > LONG_SEQUENCE:  # before the data goes onto the devices
      specs = {k: jax.ShapeDtypeStruct((self.train_rows, *v.shape[1:]), v.dtype, sharding=layout)
               for k, v in train_data.items()}
      self._check_fits(self.chunk.lower(self.state, specs, np.int32(1)), "training", "train.batch_size")
    if sharded:  # this process keeps and places only its own rows
      self.train_data = parallel.put_process_rows(parallel.take_process_rows(train_data, self.mesh), self.mesh,
                                                  self.train_rows)
    else:
      self.train_data = parallel.put_replicated(train_data, self.mesh)
    self.evaluate = make_evaluate(
        functools.partial(eval_step, loss_fn=loss_fn, regression=self.regression), x_test, y_test,
        mesh=self.mesh, batch_size=t.eval_batch_size,
        finish=self.regression.summarize if self.regression else None, lengths=ds.lengths_test)
    if ds.steps > LONG_SEQUENCE:
      self._check_fits(self.evaluate.lower(self.state), "evaluating", "train.eval_batch_size")
    self.total_steps, self.max_chunk = t.steps, self.steps_per_epoch
    self.eval_every = t.eval_every or self.steps_per_epoch  # 0: once per epoch

  def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` as the model trains on them: standardised where ``scaling`` says.

    A regression's targets are (N, K), standardised.
    """
    ds, scaling = self.dataset, self.scaling
    xs = [scaling["inputs"].apply(x) if "inputs" in scaling else x for x in (ds.x_train, ds.x_test)]
    ys = [scaling["targets"].apply(_columns(y)) if "targets" in scaling else y for y in (ds.y_train, ds.y_test)]
    return xs[0], ys[0], xs[1], ys[1]

  def _check_fits(self, lowered, doing: str, batch_key: str) -> None:
    """A one-line error, naming the sequence length and the memory free, when ``lowered`` would not fit."""
    ds, config = self.dataset, self.config
    batch = config.train[batch_key.split(".")[1]]
    memory.check_fits(lowered, lambda needed, free: (
        f"data '{ds.name}': sequences of {ds.steps} steps do not fit in memory: {doing} model "
        f"'{config.model.name}' at {batch_key}={batch} needs {memory.gib(needed)} per device, more than the "
        f"{memory.gib(free)} free; set data.max_length to crop them, or lower {batch_key}"))

  def run_chunk(self, state: TrainState, n) -> tuple[TrainState, dict]:
    return self.chunk(state, self.train_data, n)

  def on_start(self, workdir: pathlib.Path, resuming: bool) -> None:
    """Writes ``data.json`` (what the run trains on) and any ``scaling.json``; on resume refuses changed data."""
    workdir_lib.record_dataset(workdir, self.dataset, resuming=resuming)
    if self.scaling and jax.process_index() == 0:  # fit on the data just checked: the same on resume
      record = {"task": self.dataset.task, "target_shape": list(self.dataset.y_train.shape[1:]),
                **{name: s.to_json() for name, s in self.scaling.items()}}
      write_atomic(workdir / SCALING_FILE, json.dumps(record) + "\n")

  def headline(self, state: TrainState) -> str:
    ds, t = self.dataset, self.config.train
    return (f"jaxdl: {self.config.model.name} ({param_count(state.params):,} params) on {ds.name} "
            f"({ds.num_train} train / {ds.num_test} test, inputs {ds.input_shape}, "
            f"{_outputs(ds)}), {self.mesh.devices.size} {jax.default_backend()} device(s), "
            f"{t.steps} steps of batch {t.batch_size}{self._placement_note()}")

  def _placement_note(self) -> str:
    """What the headline says of a sharded training set: rows per device, and the rows dropped."""
    if self.placement != "sharded":
      return ""
    per, dropped = self.train_rows // self.mesh.devices.size, self.dataset.num_train - self.train_rows
    return f", training set sharded ({per} rows per device{f', {dropped} dropped' if dropped else ''})"


# Kept for code written against the earlier name.
Experiment = SupervisedTask

# What a run trained on, for resume checks and for ``load_run`` (written by record_dataset).
DATA_FILE = workdir_lib.DATA_FILE


def _outputs(ds: data_lib.Dataset) -> str:
  if ds.task == "regression":
    return f"{ds.num_targets} regression target{'s' if ds.num_targets > 1 else ''}"
  return f"{ds.num_classes} classes"


def _check_data(config: ml_collections.ConfigDict, data: data_lib.Dataset) -> data_lib.Dataset:
  if not isinstance(data, data_lib.Dataset):
    raise JaxdlError(f"data must be a jaxdl.Dataset (jaxdl.Dataset.from_arrays(name, x_train, y_train, "
                     f"x_test, y_test)), not {type(data).__name__}")
  if data.task != config.train.task:
    raise JaxdlError(f"the data passed in ('{data.name}') is a {data.task} but train.task={config.train.task}: "
                     f"set train.task={data.task}")
  if config.data.num_classes and config.data.num_classes != data.num_classes:
    raise JaxdlError(f"data.num_classes={config.data.num_classes} but the data passed in has "
                     f"{data.num_classes} classes")
  return data


def _config_for_data(config: ml_collections.ConfigDict, data: data_lib.Dataset) -> ml_collections.ConfigDict:
  """A copy of ``config`` whose ``data`` section names the arrays passed in (for config.json)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.name, config.data.path = data.name, ""
  config.data.num_classes = data.num_classes if data.task == "classification" else 0
  return config


def _plot_sequence_model(task: SupervisedTask, state: TrainState, workdir: pathlib.Path) -> None:
  """``input_gradients.png`` for a recurrent classifier, ``attention.png`` for a Transformer.

  The first shows how much gradient reaches each input step (the vanishing
  gradient of a tanh RNN), on the first 256 test examples (for sequences
  longer than ``LONG_SEQUENCE``, no more than a training batch, which is
  known to fit); the second each layer's and head's attention on the first
  test example. Padded sequences are read with their lengths.
  """
  model, ds, name = task.model, task.dataset, task.config.model.name
  variables = jax.device_get(state.variables())
  n = 256 if ds.steps <= LONG_SEQUENCE else min(256, task.config.train.batch_size)
  lengths = {} if ds.lengths_test is None else {"lengths": ds.lengths_test[:n]}
  if isinstance(model, models_lib.RNNClassifier):
    x, y = ds.x_test[:n], ds.y_test[:n]
    apply = functools.partial(model.apply, **lengths)
    norms = jax.jit(functools.partial(models_lib.input_gradient_norms, apply))(variables, x, y)
    plot_gradient_norms({name: np.asarray(norms)}, workdir / "input_gradients.png",
                        title=f"{name} on {ds.name}: gradient reaching each input step")
  elif isinstance(model, models_lib.TransformerClassifier):
    maps = jax.jit(functools.partial(models_lib.attention_maps, model, **{k: v[:1] for k, v in lengths.items()}))(
        variables, ds.x_test[:1])
    plot_attention_maps(np.stack([np.asarray(m)[0] for m in maps]), workdir / "attention.png",
                        title=f"{name} on {ds.name}: attention on test example 0 "
                              f"(label {int(ds.y_test[0])})")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       data: data_lib.Dataset | None = None, loss_fn: LossFn | None = None,
                       tx: optax.GradientTransformation | None = None) -> tuple[TrainState, dict]:
  """Trains a classifier (or a regression) as the config says and evaluates it on the test set.

  Writes into ``workdir``: ``config.json`` (the resolved config),
  ``metrics.jsonl`` (one record per log), TensorBoard events under ``tb/``,
  ``checkpoints/`` (Orbax), ``learning_curves.png``, ``input_gradients.png``
  (recurrent classifiers) or ``attention.png`` (Transformer classifiers),
  ``scaling.json`` (the standardisations, if any) and ``metrics.json`` (the
  final metrics, one flat object, including ``params_sha256``; a
  regression's ``test_rmse``, ``test_mae`` and ``test_r2`` are in the
  targets' units).

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
  final = {
      **_fit_metrics(task, test, last_train),
      **fitted.epoch_record(t0, task),
      "dataset": ds.name,
      "model": config.model.name,
      **task.init_record,
  }
  if jax.process_index() == 0:
    write_json(workdir / "metrics.json", final)
    where = pathlib.Path(config.data.path).name if config.data.path else ds.name  # the file, if one
    plot_learning_curves(fitted.history, workdir / "learning_curves.png",
                         title=f"{task.config.model.name} on {where}")
    if task.regression is None:  # the plots explain a class's logit
      _plot_sequence_model(task, state, workdir)
  headline = ("test_accuracy={test_accuracy:.4f}" if task.regression is None else
              "test_rmse={test_rmse:.4g} test_r2={test_r2:.4f}").format(**final)
  console(f"{headline} test_loss={final['test_loss']:.4f} "
          f"({final['steps']} steps, {final['wall_seconds']:.1f} s) -> {workdir}/metrics.json")
  return state, final


def _fit_metrics(task: SupervisedTask, test: dict, last_train: dict) -> dict:
  """The head of ``metrics.json``: how well the model fits, test and train, by the task's metrics."""
  train = {k: last_train.get(f"train/{k}", float("nan")) for k in ("loss", "accuracy", "rmse")}
  if task.regression is None:
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "train_loss": train["loss"],
            "train_accuracy": train["accuracy"]}
  return {"test_rmse": test["rmse"], "test_mae": test["mae"], "test_r2": test["r2"], "test_loss": test["loss"],
          "train_loss": train["loss"], "train_rmse": train["rmse"], "task": "regression",
          "loss": task.regression.loss}
