"""The recommend run: a recommender trained on explicit ratings with squared error, chosen on validation, tested.

:class:`RecommendTask` builds everything from a config (so every bad input
fails before anything is written) and is what ``jaxdl.train.fit`` drives;
:func:`train_and_evaluate` adds the final metrics (test RMSE and MAE of the
best epoch's parameters, optionally the ranking metrics) and the outputs.
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdl.data.ratings import Ratings, load_ratings
from jaxdl.data.ratings_files import NOT_SHIPPED
from jaxdl.loops.recommend.config import validate
from jaxdl.loops.recommend.plots import plot_rating_curves
from jaxdl.loops.recommend.ranking import make_ranking, ranking_masks
from jaxdl.loops.recommend.step import RATING_KEYS, RecState, predict_fn, rating_batches, recommend_step
from jaxdl.models.recsys import BLEND, build_recommender
from jaxdl.train import parallel
from jaxdl.train import workdir as workdir_lib
from jaxdl.train.chunk import epoch_batches, make_chunk
from jaxdl.train.evaluate import make_evaluate
from jaxdl.train.fit import TaskBase, build_and_fit, optimizer_or
from jaxdl.train.state import init_variables
from jaxdl.train.writers import console, write_json
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count


def _ratings(config: ml_collections.ConfigDict, data: Ratings | None) -> tuple[Ratings, ml_collections.ConfigDict]:
  """(the ratings, the config that names them): ``data.path``'s, or the ratings passed in."""
  d = config.data
  if data is None:
    if not d.path:
      raise JaxdlError(f"data.path is empty: set it to the ratings (--set data.path=DIR). {NOT_SHIPPED}")
    return load_ratings(d.path, split=d.split, rating_range=tuple(d.rating_range), val_fraction=d.val_fraction,
                        test_fraction=d.test_fraction, seed=d.seed, name=d.name), config
  if not isinstance(data, Ratings):
    raise JaxdlError(f"data must be a jaxdl.data.ratings.Ratings (load_ratings(...) or make_ratings(...)), "
                     f"not {type(data).__name__}")
  config = ml_collections.ConfigDict(config.to_dict())  # config.json names the ratings passed in
  config.data.name, config.data.path = data.name, ""
  config.data.rating_range = tuple(data.rating_range)
  return data, config


def rating_matrix(ratings: Ratings) -> np.ndarray:
  """The training ratings as a dense (num_items, num_users) float32 matrix, 0 where unrated."""
  t = ratings.train
  matrix = np.zeros((ratings.num_items, ratings.num_users), np.float32)
  matrix[t["item"], t["user"]] = t["rating"]
  return matrix


def _pairs(split: dict) -> tuple[np.ndarray, np.ndarray]:
  """(x (N, 2) int32 user-item pairs, y (N,) float32 ratings): a split as ``make_evaluate`` takes it."""
  return np.stack([split["user"], split["item"]], axis=1).astype(np.int32), split["rating"].astype(np.float32)


class RecommendTask(TaskBase):
  """Everything a recommend run needs, built from a config and checked.

  Attributes:
    config, ratings, model (a ``jaxdl.models.recsys.Blend``), member_names,
    mesh, state, schedule, step (bound, pure), chunk (jitted, donating the
    state), matrix (the training ratings (I, U) on the devices, or None for
    models that do not read them), selects (whether a validation set picks
    the best epoch), steps_per_epoch, evaluate_test / evaluate_val
    (``f((params, matrix))`` -> rmse, mae and each member's rmse), and the
    :class:`jaxdl.train.fit.Task` fields.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, data: Ratings | None = None,
               tx: optax.GradientTransformation | None = None):
    validate(config)
    self.ratings, config = _ratings(config, data)
    self.config, r, t = config, self.ratings, config.train
    num_train = len(r.train["rating"])
    self.mesh = parallel.make_mesh(t.num_devices)
    parallel.check_divisible(t.batch_size, self.mesh)
    tx, self.schedule = optimizer_or(tx, config.optim, t.steps)
    self.model = build_recommender(config.model, r.num_users, r.num_items, r.mean)
    m = config.model
    self.member_names = tuple(m.members) if m.name == BLEND else (m.name,)
    if self.model.needs_matrix:
      if r.rating_range[0] <= 0:
        raise JaxdlError(f"AutoRec reads 0 as 'unrated', so data.rating_range={r.rating_range} must start above 0")
      if t.batch_size >= num_train:
        raise JaxdlError(f"train.batch_size={t.batch_size} must be below the {num_train} training ratings: AutoRec "
                         f"hides each batch from its input")
    self.matrix = parallel.put_replicated(rating_matrix(r), self.mesh) if self.model.needs_matrix else None
    self.selects = len(r.val["rating"]) > 0
    source = epoch_batches(num_examples=num_train, batch_size=t.batch_size,
                           batch_sharding=parallel.batch_sharded(self.mesh))
    self.steps_per_epoch = source.steps_per_epoch
    self.step = functools.partial(recommend_step, weights=self.model.weights, rating_range=r.rating_range,
                                  steps_per_epoch=self.steps_per_epoch, schedule=self.schedule)
    self.chunk = jax.jit(make_chunk(self.step, rating_batches(source), nan_policy=t.nan_policy),
                         donate_argnums=(0,))
    self.train_data = {"train": parallel.put_replicated({k: r.train[k] for k in RATING_KEYS}, self.mesh)}
    if self.matrix is not None:
      self.train_data["matrix"] = self.matrix
    if self.selects:
      self.train_data["val"] = parallel.put_replicated({k: r.val[k] for k in RATING_KEYS}, self.mesh)
    self.state = parallel.put_replicated(self._init_state(tx), self.mesh)
    self.predict = predict_fn(self.model.apply, self.model.weights, r.rating_range)
    self.evaluate_test = self._evaluation(r.test)
    self.evaluate_val = self._evaluation(r.val) if self.selects else None
    self.total_steps, self.max_chunk = t.steps, self.steps_per_epoch
    self.eval_every = t.eval_every or self.steps_per_epoch

  def _init_state(self, tx) -> RecState:
    r, seed = self.ratings, self.config.train.seed
    rng = jax.random.PRNGKey(seed)
    sample = (jnp.asarray(r.train["user"][:2]), jnp.asarray(r.train["item"][:2]), self.matrix)
    variables = init_variables(self.model, jax.random.fold_in(rng, 0), *sample)
    params = variables["params"]
    state = RecState.create(apply_fn=self.model.apply, params=params, tx=tx, rng=jax.random.fold_in(rng, 1),
                            skipped=jnp.zeros((), jnp.int32), best_params=params if self.selects else {},
                            best_val_rmse=jnp.asarray(jnp.inf, jnp.float32), best_step=jnp.zeros((), jnp.int32))
    return jax.device_get(state.replace(step=jnp.zeros((), jnp.int32)))

  def _evaluation(self, split: dict):
    """``evaluate((params, matrix))`` -> rmse, mae (the blend's, clipped) and ``rmse_<member>`` on ``split``."""
    predict, names = self.predict, self.member_names

    def eval_step(args, batch):
      params, matrix = args
      users, items = batch["x"][:, 0], batch["x"][:, 1]
      blend, members = predict(params, users, items, matrix)
      mask, y = batch["mask"], batch["y"]
      count = jnp.sum(mask)
      mean = lambda v: jnp.sum(mask * v, axis=-1) / jnp.maximum(count, 1.0)  # noqa: E731
      return {"count": count, "se": mean(jnp.square(blend - y)), "ae": mean(jnp.abs(blend - y)),
              "member_se": jax.vmap(mean)(jnp.square(members - y[None]))}  # (M,)

    def finish(means):
      out = {"rmse": float(np.sqrt(means["se"])), "mae": float(means["ae"])}
      if len(names) > 1:
        out.update({f"rmse_{n}": float(np.sqrt(v)) for n, v in zip(names, np.asarray(means["member_se"]))})
      return out

    x, y = _pairs(split)
    return make_evaluate(eval_step, x, y, mesh=self.mesh, batch_size=self.config.train.eval_batch_size,
                         finish=finish)

  def selected_params(self, state: RecState):
    """The parameters the run reports: the best epoch's by validation RMSE, or the last without validation."""
    return state.best_params if self.selects else state.params

  def run_chunk(self, state: RecState, n) -> tuple[RecState, dict]:
    return self.chunk(state, self.train_data, n)

  def evaluate(self, state: RecState) -> dict[str, float]:
    """The current parameters' test RMSE and MAE, their validation RMSE, and the best validation RMSE so far."""
    test = self.evaluate_test((state.params, self.matrix))
    out = {"rmse": test["rmse"], "mae": test["mae"]}
    if self.selects:
      out["val_rmse"] = self.evaluate_val((state.params, self.matrix))["rmse"]
      best = float(jax.device_get(state.best_val_rmse))
      if np.isfinite(best):
        out["best_val_rmse"] = best
    return out

  def on_start(self, workdir: pathlib.Path, resuming: bool) -> None:
    """Writes ``data.json`` (what the run trains on), or on resume refuses ratings that changed."""
    r = self.ratings
    record = {"name": r.name, "sha256": r.sha256, "num_users": r.num_users, "num_items": r.num_items,
              "num_train": len(r.train["rating"]), "num_val": len(r.val["rating"]),
              "num_test": len(r.test["rating"]), **r.info}
    workdir_lib.record_inputs(
        workdir, workdir_lib.DATA_FILE, record, resuming=resuming, digest_of=lambda rec: rec.get("sha256"),
        refusal=lambda saved: (
            f"the ratings of the run in {workdir} ({saved.get('name')}, sha256 {str(saved.get('sha256'))[:12]}...) "
            f"are not these ({r.name}, sha256 {r.sha256[:12]}...): resume with the same data or choose another "
            f"--workdir"))

  def headline(self, state: RecState) -> str:
    r, t = self.ratings, self.config.train
    members = " + ".join(f"{n} ({param_count(state.params[f'members_{i}']):,} params)"
                         for i, n in enumerate(self.member_names))
    weights = f" blended {'/'.join(f'{w:g}' for w in self.model.weights)}" if len(self.member_names) > 1 else ""
    return (f"jaxdl: recommend, {members}{weights} on {r.name} {r.info.get('split', '')} ({r.num_users} users, "
            f"{r.num_items} items; {len(r.train['rating'])} train / {len(r.val['rating'])} val / "
            f"{len(r.test['rating'])} test ratings), {self.mesh.devices.size} {jax.default_backend()} device(s), "
            f"{t.steps} steps of batch {t.batch_size} ({self.steps_per_epoch} per epoch)")


def rank(task: RecommendTask, params) -> dict[str, float]:
  """``hit_rate@k`` and ``ndcg@k`` of ``params`` (see ``jaxdl.loops.recommend.ranking``), and of popularity.

  The popularity ranking (items by their number of training ratings, the
  same for every user) is the baseline a personalised ranking must beat.
  """
  r, g = task.ratings, task.config.ranking
  known = {k: np.concatenate([r.train[k], r.val[k]]) for k in RATING_KEYS}  # the whole training split
  rated, relevant = ranking_masks(r.num_users, r.num_items, known, r.test, g.relevant_from)
  items = jnp.arange(r.num_items, dtype=jnp.int32)
  unclipped = predict_fn(task.model.apply, task.model.weights)

  def model_scores(users, params, matrix):
    pairs_u = jnp.repeat(users, r.num_items)  # (Bu * I,)
    pairs_i = jnp.tile(items, users.shape[0])
    return unclipped(params, pairs_u, pairs_i, matrix)[0].reshape(users.shape[0], r.num_items)

  def popularity_scores(users, counts):
    return jnp.broadcast_to(counts[None], (users.shape[0], r.num_items))

  common = dict(k=g.k, users_per_batch=g.users_per_batch, mesh=task.mesh)
  out = make_ranking(model_scores, rated, relevant, **common)(params, task.matrix)
  counts = np.bincount(known["item"], minlength=r.num_items).astype(np.float32)
  popular = make_ranking(popularity_scores, rated, relevant, **common)(jnp.asarray(counts))
  out.update({f"popularity_{k}": v for k, v in popular.items() if k != "ranked_users"})
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       data: Ratings | None = None,
                       tx: optax.GradientTransformation | None = None) -> tuple[RecState, dict]:
  """Trains a recommender on explicit ratings as the config says, then tests the best epoch's parameters.

  Writes into ``workdir``: ``config.json``, ``data.json``, ``metrics.jsonl``,
  TensorBoard events under ``tb/``, ``checkpoints/`` (Orbax),
  ``learning_curves.png`` and ``metrics.json``: ``test_rmse`` and
  ``test_mae`` (predictions clipped to ``data.rating_range``) of the
  parameters chosen on validation (``best_step``, ``val_rmse``), each
  member's ``test_rmse_<name>`` for a blend, ``last_test_rmse`` (the final
  parameters), ``baseline_rmse`` (predicting the training mean), with
  ``ranking.k`` the ranking metrics (``hit_rate@k``, ``ndcg@k`` and their
  ``popularity_`` baselines), the fit record and ``params_sha256``.

  A workdir that already holds this run resumes from its newest intact
  checkpoint and ends exactly where an uninterrupted run would have.

  Args:
    config: a config from ``jaxdl.loops.recommend.default_config()`` or a preset.
    workdir: the run's output directory.
    data: ratings in memory (``jaxdl.data.ratings.make_ratings``) instead of
      ``data.path``.
    tx: your own Optax optimizer instead of the ``optim`` section.

  Returns:
    The final state and the final metrics dict.
  """
  task, fitted, t0 = build_and_fit(lambda: RecommendTask(config, data=data, tx=tx), config, workdir)
  workdir = pathlib.Path(workdir)
  if fitted.finished is not None:  # a rerun of a finished run: nothing trained, nothing written
    return fitted.state, fitted.finished
  state, r = fitted.state, task.ratings
  chosen = task.selected_params(state)
  test = task.evaluate_test((chosen, task.matrix))
  lo, hi = r.rating_range
  baseline = float(np.sqrt(np.mean(np.square(np.clip(r.mean, lo, hi) - r.test["rating"]))))
  steps_done = int(jax.device_get(state.step))  # for the summary line
  final = {
      "test_rmse": test["rmse"],
      "test_mae": test["mae"],
      **{f"test_{k}": v for k, v in test.items() if k.startswith("rmse_")},
      "last_test_rmse": task.evaluate_test((state.params, task.matrix))["rmse"],
      "baseline_rmse": baseline,
      "train_rmse": fitted.last("train/rmse").get("train/rmse", float("nan")),
  }
  if task.selects:
    final.update(val_rmse=task.evaluate_val((chosen, task.matrix))["rmse"],
                 best_step=int(jax.device_get(state.best_step)))
  if config.ranking.k:
    final.update(rank(task, chosen))
  final.update({
      **fitted.epoch_record(t0, task),
      "dataset": r.name,
      "split": r.info.get("split", ""),
      "num_users": r.num_users,
      "num_items": r.num_items,
      "model": config.model.name,
  })
  if jax.process_index() == 0:
    write_json(workdir / "metrics.json", final)
    plot_rating_curves(fitted.history, workdir / "learning_curves.png", best_step=final.get("best_step", 0),
                       baseline_rmse=baseline,
                       title=f"{'+'.join(task.member_names)} on {r.name} {r.info.get('split', '')}")
  ranked = (f", hit_rate@{config.ranking.k}={final[f'hit_rate@{config.ranking.k}']:.4f}"
            if config.ranking.k else "")
  kept = f"; best step {final['best_step']} by validation" if task.selects else ""
  console(f"test_rmse={final['test_rmse']:.4f} test_mae={final['test_mae']:.4f} (baseline {baseline:.4f}{kept})"
          f"{ranked} ({steps_done} steps, {final['wall_seconds']:.1f} s) -> {workdir}/metrics.json")
  return state, final
