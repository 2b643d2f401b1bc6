"""The GAN run: both networks trained on device-drawn real data, the EMA generator scored.

:class:`GANTask` builds everything from a config (every bad input fails
before anything is written) and is what ``jaxdl.train.fit`` drives; it
scores and draws samples at each evaluation. :func:`train_and_evaluate`
adds the final metrics and plots.
"""

import functools
import pathlib

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdl import data as data_lib
from jaxdl.configs import to_dict
from jaxdl.data import toy2d
from jaxdl.loops.gan.config import validate
from jaxdl.loops.gan.metrics import (CONFIDENCE, digits_classifier, frechet_distance, image_metrics,
                                     make_classify, mode_metrics)
from jaxdl.loops.gan.plots import plot_gan_metrics, plot_image_grid, plot_samples_2d
from jaxdl.loops.gan.state import GANState, create_gan_state
from jaxdl.loops.gan.step import gan_step, make_gan_chunk, sample_generator
from jaxdl.models import gan as gan_models
from jaxdl.train import parallel, programs
from jaxdl.train import workdir as workdir_lib
from jaxdl.train.fit import TaskBase, build_and_fit, leaf_path, optimizer_or
from jaxdl.train.writers import console, write_json
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256


def _tuple(v):
  return tuple(v) if isinstance(v, (list, tuple)) else v


class GANTask(TaskBase):
  """Everything a GAN run needs, built from a config and checked.

  Building it validates the config, builds the data, both networks and the
  state, so bad input fails here, before anything is written. ``data`` (a
  ``jaxdl.Dataset``: its ``x_train`` is the real data, its ``x_test`` the
  held-out reference) replaces ``data.name``; ``g_tx`` and ``d_tx``, Optax
  optimizers, replace the ``optim`` section for the generator and the
  discriminator.

  Attributes:
    config, mesh, generator, discriminator, state, step (bound, pure),
    chunk (jitted, donating the state), data (on the device), mixture (2-D
    data) or dataset (images, or the arrays passed in), own_data,
    sample_shape, and the :class:`jaxdl.train.fit.Task` fields.
  """

  desc = "gan"

  def __init__(self, config: ml_collections.ConfigDict, *, data: data_lib.Dataset | None = None,
               g_tx: optax.GradientTransformation | None = None,
               d_tx: optax.GradientTransformation | None = None):
    validate(config)
    g_tx_given, d_tx_given = g_tx, d_tx
    self.mixture = self.dataset = None
    self.own_data = data is not None
    if self.own_data:
      if not isinstance(data, data_lib.Dataset):
        raise JaxdlError(f"data must be a jaxdl.Dataset (jaxdl.Dataset.from_arrays(name, x_train, y_train, "
                         f"x_test, y_test); the labels are not used), not {type(data).__name__}")
      if data.num_test < 2:
        raise JaxdlError(f"the data passed in has {data.num_test} test example(s): the samples are scored "
                         f"against x_test, which needs at least 2")
      self.dataset = data
      config = ml_collections.ConfigDict(config.to_dict())  # config.json names the arrays passed in
      config.data.name, config.data.path = data.name, ""
    self.config = config
    t, g, m = config.train, config.gan, config.model
    self.mesh = parallel.make_mesh(t.num_devices)
    parallel.check_divisible(t.batch_size, self.mesh)
    if not self.own_data and config.data.name in toy2d.TOY2D:
      self.mixture = toy2d.load_toy2d(config.data.name)
      self.sample_shape = (2,)
      self.data = {}
      mixture = self.mixture
      real_fn = lambda key, data, n: mixture.sample(key, n)
    else:
      if self.dataset is None:
        self.dataset = data_lib.load_dataset(config.data.name, config.data.path or None)
      self.sample_shape = self.dataset.input_shape
      self.data = {"x": parallel.put_replicated(self.dataset.x_train, self.mesh)}
      num = self.dataset.num_train
      # Sampling with replacement: a GAN has no epochs to finish.
      real_fn = lambda key, data, n: jnp.take(data["x"], jax.random.randint(key, (n,), 0, num), axis=0)
    self.generator, self.discriminator = gan_models.make_gan(
        m.name, self.sample_shape, g_hidden=_tuple(m.g_hidden), d_hidden=_tuple(m.d_hidden),
        g_features=_tuple(m.g_features), d_features=_tuple(m.d_features), activation=m.activation,
        d_activation=m.d_activation, g_batchnorm=m.g_batchnorm, spectral_norm=g.spectral_norm,
        conv_impl=m.conv_impl)
    g_tx, self.schedule = optimizer_or(g_tx, config.optim, t.steps, name="g_tx")
    d_optim = dict(config.optim)
    if g.d_learning_rate > 0:
      d_optim["learning_rate"] = g.d_learning_rate
    d_tx, _ = optimizer_or(d_tx, d_optim, t.steps, name="d_tx")
    sample_x = np.zeros((2, *self.sample_shape), np.float32)
    state = create_gan_state(self.generator, self.discriminator, g_tx, d_tx, int(t.seed),  # one program
                             latent_dim=g.latent_dim, sample_x=sample_x)
    self.state = parallel.put_replicated(state, self.mesh)
    batch_sharding = parallel.batch_sharded(self.mesh)
    self.step = functools.partial(
        gan_step, loss=g.loss, n_critic=g.n_critic, latent_dim=g.latent_dim, r1=g.r1, gp=g.gp,
        ema_decay=g.ema_decay, batch_sharding=batch_sharding)
    real_sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))
    chunk = make_gan_chunk(self.step, real_fn, n_critic=g.n_critic, batch_size=t.batch_size,
                           real_sharding=real_sharding, nan_policy=t.nan_policy)
    # Kept across runs (jaxdl.train.programs) unless an optimizer came from Python: the config and data decide it.
    own_code = g_tx_given is None and d_tx_given is None
    key = ("gan", to_dict(config), self.dataset.sha256 if self.dataset is not None else None)
    self.chunk = programs.PersistentJit(chunk, key=key if own_code else None, donate_argnums=(0,))
    # The same latents at every evaluation, apart from the training stream.
    self.eval_z = jax.jit(lambda: jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(t.seed), 3),
                                                    (g.num_eval_samples, g.latent_dim), jnp.float32))()
    self._sample = jax.jit(lambda state, z: sample_generator(state, z).reshape(-1, *self.sample_shape))
    self.classify = self.reference_feats = self.class_fractions = self.reference_raw = None
    # Real data is drawn fresh each step: no epochs, so a chunk may run to the end.
    self.total_steps = self.max_chunk = t.steps
    self.eval_every = t.eval_every  # 0: only at the end
    self.baselines: dict[str, float] = {}
    self.workdir: pathlib.Path | None = None

  def run_chunk(self, state: GANState, n) -> tuple[GANState, dict]:
    return self.chunk(state, self.data, n)

  def chunk_program(self, state: GANState):
    return self.chunk, (state, self.data, np.int32(1))

  def param_path(self, state: GANState, leaf: int) -> str:
    """Dotted path of leaf ``leaf`` of ``(g_params, d_params)``, as the chunk numbers them."""
    n_g = len(jax.tree_util.tree_leaves(state.g_params))
    if leaf < n_g:
      return leaf_path(state.g_params, leaf, "g_params")
    return leaf_path(state.d_params, leaf - n_g, "d_params")

  def headline(self, state: GANState) -> str:
    config, t = self.config, self.config.train
    g = config.gan
    return (f"jaxdl: GAN ({config.model.name}, G {param_count(state.g_params):,} / "
            f"D {param_count(state.d_params):,} params, {g.loss} loss"
            f"{f', R1 {g.r1:g}' if g.r1 else ''}{', spectral norm' if g.spectral_norm else ''}) "
            f"on {config.data.name}, {self.mesh.devices.size} {jax.default_backend()} device(s), "
            f"{t.steps} steps of batch {t.batch_size}")

  def on_start(self, workdir: pathlib.Path, resuming: bool) -> None:
    self.workdir = workdir
    if self.dataset is not None:
      workdir_lib.record_dataset(workdir, self.dataset, resuming=resuming)  # data.json: other data is refused
      self.baselines.update(self.prepare_raw_metrics() if self.own_data else self.prepare_image_metrics())

  def samples(self, state: GANState) -> np.ndarray:
    """The EMA generator's samples for the fixed evaluation latents, on the host."""
    return np.asarray(jax.device_get(self._sample(state, self.eval_z)))

  def prepare_image_metrics(self) -> dict[str, float]:
    """Loads (or trains) the feature classifier; returns the real-data baselines."""
    params, info = digits_classifier()
    self.classify = make_classify(params)
    ds = self.dataset
    self.reference_feats, test_probs = jax.device_get(self.classify(ds.x_test))
    train_feats, _ = jax.device_get(self.classify(ds.x_train))
    return {"frechet_distance_real": frechet_distance(train_feats, self.reference_feats),
            "confident_fraction_real": float(np.mean(test_probs.max(1) >= CONFIDENCE)),
            "classifier_test_accuracy": info["test_accuracy"]}

  def prepare_raw_metrics(self) -> dict[str, float]:
    """For the arrays passed in: the held-out reference, and the distance between the real splits.

    No feature network knows the user's data, so the Frechet distance is
    taken on the raw values (each example flattened): it compares the
    samples' means and covariances with the held-out examples'.
    """
    ds = self.dataset
    self.reference_raw = ds.x_test.reshape(ds.num_test, -1)
    return {"frechet_distance_raw_real": frechet_distance(ds.x_train.reshape(ds.num_train, -1), self.reference_raw)}

  def score(self, state: GANState) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of the EMA generator's samples, and the samples."""
    samples = self.samples(state)
    if self.own_data:
      return {"frechet_distance_raw": frechet_distance(samples.reshape(len(samples), -1), self.reference_raw)}, samples
    if self.mixture is not None:
      m = jax.device_get(mode_metrics(jnp.asarray(samples), jnp.asarray(self.mixture.centers),
                                      self.mixture.sigma))
      return {"high_quality_fraction": float(m["high_quality_fraction"]),
              "modes_covered": int(m["modes_covered"])}, samples
    m = image_metrics(self.classify, samples, self.reference_feats)
    self.class_fractions = m.pop("class_fractions")
    return m, samples

  def evaluate(self, state: GANState) -> dict[str, float]:
    """:meth:`score`, and on process 0 the samples as ``samples/step_NNNNNN.png`` in the workdir."""
    metrics, samples = self.score(state)
    if jax.process_index() == 0 and self.workdir is not None:
      step = int(jax.device_get(state.step))
      label = f"{self.title}, step {step}: " + ", ".join(
          f"{k.replace('_fraction', '')}={v:.3g}" for k, v in metrics.items())
      path = self.workdir / "samples" / f"step_{step:06d}.png"
      path.parent.mkdir(parents=True, exist_ok=True)
      if self.mixture is not None:
        plot_samples_2d(samples, self.mixture.centers, path, title=label)
      elif self.dataset.kind == "image":
        plot_image_grid(samples, path, title=label)
      elif self.sample_shape == (2,):  # points passed in: over held-out real ones
        plot_samples_2d(samples, self.dataset.x_test[:200], path, title=label, reference_label="held-out data")
    return metrics

  @property
  def title(self) -> str:
    return f"{self.config.model.name} GAN on {self.config.data.name}"


# Kept for code written against the earlier name.
GANExperiment = GANTask


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       data: data_lib.Dataset | None = None, g_tx: optax.GradientTransformation | None = None,
                       d_tx: optax.GradientTransformation | None = None) -> tuple[GANState, dict]:
  """Trains a GAN as the config says and scores its EMA generator.

  Writes into ``workdir``: ``config.json``, ``metrics.jsonl``, TensorBoard
  events under ``tb/``, ``checkpoints/`` (Orbax), ``samples/step_NNNNNN.png``
  at each evaluation (a scatter over the true modes, or a grid of images),
  ``learning_curves.png`` (losses and metrics over training) and ``metrics.json`` (final
  metrics, including ``params_sha256`` of the whole final state).

  A workdir that already holds this run resumes from its newest intact
  checkpoint and ends bit-exactly where an uninterrupted run would have.

  Args:
    config: a config from ``jaxdl.loops.gan.default_config()`` or a GAN preset.
    workdir: the run's output directory.
    data: your own arrays (``jaxdl.Dataset.from_arrays``; labels unused)
      instead of ``data.name``: ``x_train`` is the real data, ``x_test`` the
      reference the samples are scored against, by ``frechet_distance_raw``
      (the Frechet distance on raw values; ``frechet_distance_raw_real`` is
      the real splits' own). ``config.json`` names them and ``data.json``
      holds their hash, so a resume with other arrays is refused. Image
      samples are drawn as grids, 2-D points over held-out ones.
    g_tx, d_tx: your own Optax optimizers for the generator and the
      discriminator instead of the ``optim`` section (and
      ``gan.d_learning_rate``); they are not in ``config.json``: resume
      with the same ones.

  Returns:
    The final state and the final metrics dict.
  """
  task, fitted, t0 = build_and_fit(lambda: GANTask(config, data=data, g_tx=g_tx, d_tx=d_tx), config, workdir)
  workdir = pathlib.Path(workdir)
  if fitted.finished is not None:  # a rerun of a finished run: nothing trained, nothing written
    return fitted.state, fitted.finished
  state, test = fitted.state, fitted.test_metrics(task.evaluate)
  last_train = fitted.last("train/d_loss")
  final = {
      **test, **task.baselines,
      "d_loss": last_train.get("train/d_loss", float("nan")),
      "g_loss": last_train.get("train/g_loss", float("nan")),
      "steps": int(jax.device_get(state.step)),
      "skipped_steps": int(jax.device_get(state.skipped)),
      **fitted.record(t0),
      "params_sha256": tree_sha256(flax.serialization.to_state_dict(state)),
      "g_param_count": param_count(state.g_params),
      "d_param_count": param_count(state.d_params),
      "num_devices": int(task.mesh.devices.size),
      "dataset": task.config.data.name,
      "model": config.model.name,
      "loss": config.gan.loss,
  }
  if task.mixture is not None:
    final["num_modes"] = task.mixture.num_modes
  if task.class_fractions is not None:
    final.update({f"class_fraction_{k}": float(v) for k, v in enumerate(task.class_fractions)})
  if jax.process_index() == 0:
    write_json(workdir / "metrics.json", final)
    plot_gan_metrics(fitted.history, workdir / "learning_curves.png", title=task.title)
  shown = ", ".join(f"{k}={v:.4g}" for k, v in test.items())
  console(f"{shown} ({final['steps']} steps, {final['wall_seconds']:.1f} s) -> {workdir}/metrics.json")
  return state, final
