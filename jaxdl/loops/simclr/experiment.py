"""The SimCLR run: contrastive pretraining without labels, then linear probes on frozen features.

:class:`SimCLRTask` builds everything from a config (so every bad input fails
before anything is written) and is what ``jaxdl.train.fit`` drives;
:func:`train_and_evaluate` adds the probes and the outputs.
"""

import functools
import pathlib

import jax
import ml_collections
import numpy as np
import optax

from jaxdl import data as data_lib
from jaxdl.data.subsets import per_class_indices
from jaxdl.loops.simclr.augment import make_views
from jaxdl.loops.simclr.config import validate
from jaxdl.loops.simclr.model import ContrastiveNet, build_model
from jaxdl.loops.simclr.plots import plot_contrastive_curves, plot_feature_pca, plot_probes
from jaxdl.loops.simclr.probe import knn_accuracy, probe_accuracy
from jaxdl.loops.simclr.step import simclr_step
from jaxdl.train import parallel
from jaxdl.train import workdir as workdir_lib
from jaxdl.train.chunk import epoch_batches, make_chunk
from jaxdl.train.fit import TaskBase, build_and_fit, optimizer_or
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.writers import console, write_json
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count

def _dataset(config: ml_collections.ConfigDict, data: data_lib.Dataset | None):
  """(the dataset, the config that names it): ``data.name``'s, or the arrays passed in."""
  if data is None:
    return data_lib.load_dataset(config.data.name, config.data.path or None), config
  if not isinstance(data, data_lib.Dataset):
    raise JaxdlError(f"data must be a jaxdl.Dataset (jaxdl.Dataset.from_arrays(name, x_train, y_train, "
                     f"x_test, y_test); the labels are used by the probes only), not {type(data).__name__}")
  config = ml_collections.ConfigDict(config.to_dict())  # config.json names the arrays passed in
  config.data.name, config.data.path = data.name, ""
  return data, config


def _padded(x: np.ndarray, mesh) -> jax.Array:
  """``x`` padded with zeros to a multiple of the device count and split over the devices."""
  pad = -len(x) % mesh.devices.size
  x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
  return parallel.put(x, parallel.batch_sharded(mesh))


class SimCLRTask(TaskBase):
  """Everything a SimCLR run needs, built from a config and checked.

  Attributes:
    config, dataset, model (a ``ContrastiveNet``), mesh, state, schedule,
    view (the random transformation), step (bound, pure), chunk (jitted,
    donating the state), initial_variables (the random encoder, on the
    host), steps_per_epoch, and the :class:`jaxdl.train.fit.Task` fields.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, data: data_lib.Dataset | None = None,
               tx: optax.GradientTransformation | None = None):
    validate(config)
    self.dataset, config = _dataset(config, data)
    self.config, ds, t = config, self.dataset, config.train
    if len(ds.input_shape) not in (2, 3):
      raise JaxdlError(f"SimCLR needs images (H, W, C) or signals (L, C) to transform; data '{ds.name}' has "
                       f"inputs of shape {ds.input_shape}")
    self.mesh = parallel.make_mesh(t.num_devices)
    parallel.check_divisible(t.batch_size, self.mesh)
    tx, self.schedule = optimizer_or(tx, config.optim, t.steps)
    self.model = build_model(config, ds.num_classes)
    state = self._init_state(tx)
    self.initial_variables = jax.device_get(state.variables())
    self.state = parallel.put_replicated(state, self.mesh)
    a = config.augment
    self.view = make_views(rotate=a.rotate, zoom=a.zoom, translate=a.translate, cutout=a.cutout,
                           brightness=a.brightness, noise=a.noise)
    jax.eval_shape(self.view, jax.random.PRNGKey(0), ds.x_train[:2])  # a view that cannot take the data fails now
    self.step = functools.partial(simclr_step, view=self.view, temperature=config.simclr.temperature,
                                  schedule=self.schedule)
    source = epoch_batches(num_examples=ds.num_train, batch_size=t.batch_size,
                           batch_sharding=parallel.batch_sharded(self.mesh))
    self.chunk = jax.jit(make_chunk(self.step, source, nan_policy=t.nan_policy), donate_argnums=(0,))
    self.train_data = parallel.put_replicated({"x": ds.x_train}, self.mesh)
    self.steps_per_epoch = source.steps_per_epoch
    self._build_evaluation()
    p = config.probe  # the few-label probe's examples: a class too small for them fails now
    self.few_labels = per_class_indices(ds.y_train, p.labels_per_class, ds.num_classes, seed=p.subset_seed)
    self.total_steps, self.max_chunk, self.eval_every = t.steps, self.steps_per_epoch, t.eval_every

  def _init_state(self, tx) -> TrainState:
    config, ds = self.config, self.dataset
    try:
      return create_train_state(self.model, tx, int(config.train.seed), ds.x_train[:2])
    except JaxdlError:
      raise
    except Exception as e:  # shape errors from inside Flax/XLA, made one line
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise JaxdlError(f"model '{config.model.name}' cannot take data '{ds.name}' with inputs of shape "
                       f"{ds.input_shape}: {first}") from e

  def _build_evaluation(self) -> None:
    """The device-resident inputs, and the jitted feature and k-NN evaluation functions.

    The evaluation is the k-NN accuracy of the test features against the
    training ones; a held-out NT-Xent would need its own compiled copy of
    the views, which cost more compile time than the metric is worth here.
    """
    ds, mesh, s = self.dataset, self.mesh, self.config.simclr
    self.inputs = {"train": _padded(ds.x_train, mesh), "test": _padded(ds.x_test, mesh)}
    labels = parallel.put_replicated({"train": ds.y_train, "test": ds.y_test}, mesh)
    model, n_train, n_test, classes = self.model, ds.num_train, ds.num_test, ds.num_classes
    features = functools.partial(model.apply, train=False, method=ContrastiveNet.features)
    self.encode = jax.jit(features, out_shardings=parallel.replicated(mesh))

    @jax.jit
    def evaluate(state, inputs):
      f = {k: features(state.variables(), x) for k, x in inputs.items()}
      return {"knn_accuracy": knn_accuracy(f["train"][:n_train], labels["train"], f["test"][:n_test],
                                           labels["test"], k=s.knn_k, num_classes=classes)}

    self._evaluate = evaluate

  def run_chunk(self, state: TrainState, n) -> tuple[TrainState, dict]:
    return self.chunk(state, self.train_data, n)

  def evaluate(self, state: TrainState) -> dict[str, float]:
    """The k-NN accuracy (``simclr.knn_k`` neighbours) of the test features among the training ones."""
    return {k: float(v) for k, v in jax.device_get(self._evaluate(state, self.inputs)).items()}

  def features(self, variables) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's features of the training and test inputs, on the host: ((N, F), (M, F))."""
    variables = parallel.put_replicated(jax.device_get(variables), self.mesh)
    ds = self.dataset
    return (np.asarray(jax.device_get(self.encode(variables, self.inputs["train"])))[:ds.num_train],
            np.asarray(jax.device_get(self.encode(variables, self.inputs["test"])))[:ds.num_test])

  def on_start(self, workdir: pathlib.Path, resuming: bool) -> None:
    """Writes ``data.json`` (what the run trains on), or on resume refuses data that changed."""
    workdir_lib.record_dataset(workdir, self.dataset, resuming=resuming)

  def headline(self, state: TrainState) -> str:
    ds, t, s = self.dataset, self.config.train, self.config.simclr
    return (f"jaxdl: SimCLR, encoder {self.config.model.name} ({param_count(state.params['encoder']):,} params) "
            f"+ projection head ({param_count(state.params['projector']):,}) on {ds.name} ({ds.num_train} "
            f"unlabelled train / {ds.num_test} test, inputs {ds.input_shape}), {self.mesh.devices.size} "
            f"{jax.default_backend()} device(s), {t.steps} steps of batch {t.batch_size} (2 views each), "
            f"temperature {s.temperature:g}")


def linear_probes(task: SimCLRTask, state: TrainState) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """The probes' test accuracies on the trained encoder, the random one and raw pixels, and the test features.

  Each feature source gets two probes: on every training label and on
  ``probe.labels_per_class`` labels per class (drawn at ``probe.subset_seed``).

  Returns:
    ({"linear_probe_accuracy": ..., "linear_probe_accuracy_10_per_class": ...,
    "random_probe_accuracy"...: ..., "pixel_probe_accuracy"...: ...},
    {source: test features}).
  """
  ds, p = task.dataset, task.config.probe
  sources = {"linear": task.features(state.variables()), "random": task.features(task.initial_variables),
             "pixel": (ds.x_train.reshape(ds.num_train, -1), ds.x_test.reshape(ds.num_test, -1))}
  few = task.few_labels
  # One padded shape for all six probes: one compiled fit.
  pad_to = (ds.num_train, max(f.shape[1] for f, _ in sources.values()))
  fit = functools.partial(probe_accuracy, test_y=ds.y_test, num_classes=ds.num_classes, l2=p.l2, steps=p.steps,
                          pad_to=pad_to)
  accuracies = {}
  for name, (train_f, test_f) in sources.items():
    accuracies[f"{name}_probe_accuracy"] = fit(train_f, ds.y_train, test_f)
    accuracies[f"{name}_probe_accuracy_{p.labels_per_class}_per_class"] = fit(train_f[few], ds.y_train[few], test_f)
  return accuracies, {name: test_f for name, (_, test_f) in sources.items()}


def _plots(task: SimCLRTask, history, probes: dict, test_features: dict, workdir: pathlib.Path) -> None:
  ds, k = task.dataset, task.config.probe.labels_per_class
  title = f"SimCLR, {task.config.model.name} on {ds.name}"
  plot_contrastive_curves(history, workdir / "learning_curves.png", title=title)
  names = {"linear": "SimCLR encoder", "random": "random encoder", "pixel": "raw pixels"}
  plot_probes({names[s]: {"all labels": probes[f"{s}_probe_accuracy"],
                          f"{k} per class": probes[f"{s}_probe_accuracy_{k}_per_class"]} for s in names},
              workdir / "probes.png", title=f"{title}: linear probes on frozen features")
  plot_feature_pca({names[s]: test_features[s] for s in ("pixel", "random", "linear")}, ds.y_test,
                   workdir / "features_pca.png", title=f"{title}: test features, first two principal components")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       data: data_lib.Dataset | None = None,
                       tx: optax.GradientTransformation | None = None) -> tuple[TrainState, dict]:
  """Pretrains an encoder with SimCLR as the config says, then probes its frozen features.

  Writes into ``workdir``: ``config.json``, ``data.json``, ``metrics.jsonl``,
  TensorBoard events under ``tb/``, ``checkpoints/`` (Orbax),
  ``learning_curves.png`` (NT-Xent, contrastive and k-NN accuracy),
  ``probes.png`` (the six probe accuracies), ``features_pca.png`` (test
  features in 2-D, coloured by label) and ``metrics.json``:
  ``linear_probe_accuracy`` (every training label) and
  ``linear_probe_accuracy_{k}_per_class`` (``probe.labels_per_class``
  labels per class), the same for a randomly initialised encoder
  (``random_probe_*``) and raw pixels (``pixel_probe_*``), ``knn_accuracy``,
  the fit record and ``params_sha256``.

  A workdir that already holds this run resumes from its newest intact
  checkpoint and ends exactly where an uninterrupted run would have.

  Args:
    config: a config from ``jaxdl.loops.simclr.default_config()`` or a preset.
    workdir: the run's output directory.
    data: arrays in memory (``jaxdl.Dataset.from_arrays``) instead of
      ``data.name``; pretraining reads ``x_train`` only, the probes the labels.
    tx: your own Optax optimizer instead of the ``optim`` section.

  Returns:
    The final state and the final metrics dict.
  """
  task, fitted, t0 = build_and_fit(lambda: SimCLRTask(config, data=data, tx=tx), config, workdir)
  workdir = pathlib.Path(workdir)
  if fitted.finished is not None:  # a rerun of a finished run: nothing trained, nothing written
    return fitted.state, fitted.finished
  state, test = fitted.state, fitted.test_metrics(task.evaluate)
  probes, test_features = linear_probes(task, state)
  last_train = fitted.last("train/loss")
  final = {
      **probes,
      "knn_accuracy": test["knn_accuracy"],
      "train_loss": last_train.get("train/loss", float("nan")),
      "train_contrastive_accuracy": last_train.get("train/contrastive_accuracy", float("nan")),
      **fitted.epoch_record(t0, task),
      "encoder_param_count": param_count(state.params["encoder"]),
      "feature_dim": int(test_features["linear"].shape[1]),
      "dataset": task.dataset.name,
      "model": config.model.name,
  }
  if jax.process_index() == 0:
    write_json(workdir / "metrics.json", final)
    _plots(task, fitted.history, probes, test_features, workdir)
  k = config.probe.labels_per_class
  console(f"linear_probe_accuracy={final['linear_probe_accuracy']:.4f} ({k}/class "
          f"{final[f'linear_probe_accuracy_{k}_per_class']:.4f}; random encoder "
          f"{final[f'random_probe_accuracy_{k}_per_class']:.4f}, pixels {final[f'pixel_probe_accuracy_{k}_per_class']:.4f}) "
          f"({final['steps']} steps, {final['wall_seconds']:.1f} s) -> {workdir}/metrics.json")
  return state, final
