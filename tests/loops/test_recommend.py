"""The recommend loop: the models against their definitions, a pure and sharding-blind step, the kept epoch,
the ranking metrics against a direct computation, learning on low-rank ratings, resume, neighbours, bad input."""

import json
import pathlib
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli
from jaxdl import configs
from jaxdl.data.ratings import load_ratings, synthetic_ratings
from jaxdl.data.ratings_files import write_ratings
from jaxdl.loops import recommend
from jaxdl.loops.recommend.step import select_best
from jaxdl.models import recsys
from jaxdl.train import parallel
from jaxdl.utils.errors import JaxdlError

REPO = pathlib.Path(__file__).resolve().parents[2]

# Shrunk presets for ~9,000 low-rank ratings of 300 users and 200 items (u1 rebuilt: 7,200 train, 1,800 test).
SHRUNK = {
    "movielens_mf": ("train.steps=130", "train.batch_size=256", "model.dim=8", "optim.learning_rate=0.1",
                     "train.log_every=26", "checkpoint.every_steps=52", "ranking.k=10"),
    "movielens_hybrid": ("train.steps=80", "train.batch_size=1800", "model.mf.dim=8", "model.autorec.hidden=32",
                         "optim.learning_rate=0.03", "train.log_every=40", "checkpoint.every_steps=0"),
}


def preset(name, *overrides):
  config, _ = configs.load_preset(REPO / "experiments" / f"{name}.py")
  return configs.apply_overrides(config, overrides)


@pytest.fixture(scope="module")
def ratings_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp("lowrank")
  write_ratings(folder / "u.data", synthetic_ratings(300, 200, rank=3, density=0.15, seed=0))
  return folder


def shrunk(name, folder, *more):
  return preset(name, f"data.path={folder}", *SHRUNK[name], *more)


# -------------------------------------------------------------------- models --


def test_matrix_factorization_is_its_formula():
  model = recsys.get_recommender("mf", 5, 4, 3.5, dim=3, l2=0.1, bias_l2=0.01)
  users, items = jnp.asarray([0, 4, 2]), jnp.asarray([3, 0, 3])
  params = jax.jit(model.init)(jax.random.PRNGKey(0), users, items)["params"]
  params = jax.tree_util.tree_map(lambda a: np.random.default_rng(a.size).normal(size=a.shape), params)
  pred, penalty = jax.jit(model.apply)({"params": params}, users, items)
  p, q = np.asarray(params["user_factors"]["embedding"]), np.asarray(params["item_factors"]["embedding"])
  bu, bi = (np.asarray(params["biases"][k]["embedding"])[:, 0] for k in ("user", "item"))
  u, i = np.asarray(users), np.asarray(items)
  np.testing.assert_allclose(pred, 3.5 + bu[u] + bi[i] + np.sum(p[u] * q[i], axis=1), rtol=1e-5)
  want = np.mean(0.1 * (np.sum(p[u] ** 2, 1) + np.sum(q[i] ** 2, 1)) + 0.01 * (bu[u] ** 2 + bi[i] ** 2))
  np.testing.assert_allclose(penalty, want, rtol=1e-5)


def test_autorec_hides_the_batch_from_its_input_in_training():
  model = recsys.get_recommender("autorec", 6, 5, 3.0, hidden=4)
  matrix = jnp.asarray(np.random.default_rng(0).integers(0, 6, size=(5, 6)), jnp.float32)  # (I, U), 0: unrated
  users, items = jnp.asarray([1, 3]), jnp.asarray([2, 0])
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), users, items, matrix)
  changed = matrix.at[items, users].set(matrix[items, users] + 1.0)  # only the batch's own ratings differ
  apply = jax.jit(model.apply, static_argnames="train")
  train = lambda m: apply(variables, users, items, m, train=True)[0]  # noqa: E731
  test = lambda m: apply(variables, users, items, m, train=False)[0]  # noqa: E731
  np.testing.assert_allclose(train(changed), train(matrix), rtol=1e-6)  # it never sees what it predicts
  assert not np.allclose(test(changed), test(matrix))  # at test time it reads every training rating


def test_a_blend_ranks_neighbours_by_the_mean_of_its_members_cosines():
  model = recsys.build_recommender(recsys_section(), 6, 5, 3.0)
  users, items, matrix = jnp.asarray([0]), jnp.asarray([1]), jnp.ones((5, 6), jnp.float32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), users, items, matrix)
  params = variables["params"]
  both = np.asarray(jax.jit(lambda v, x: model.apply(v, x, method="item_vectors"))(variables, matrix))

  def cosines(v):
    v = np.asarray(v) / np.linalg.norm(v, axis=1, keepdims=True)
    return v @ v.T

  each = [cosines(jax.jit(lambda p, x, m=m: m.apply({"params": p}, x, method="item_vectors"))(
      params[f"members_{k}"], matrix)) for k, m in enumerate(model.members)]
  np.testing.assert_allclose(cosines(both), (each[0] + each[1]) / 2, rtol=1e-5, atol=1e-6)
  idx, cos = recsys.cosine_neighbours(jnp.asarray(both), 2, k=3)
  want = np.argsort(-np.where(np.arange(5) == 2, -np.inf, cosines(both)[2]), kind="stable")[:3]
  np.testing.assert_array_equal(idx, want)
  assert 2 not in np.asarray(idx) and np.all(np.diff(np.asarray(cos)) <= 0)


def recsys_section():
  return recommend.model_section("blend", members=("mf", "autorec"), weights=(0.4, 0.6), mf={"dim": 3},
                                 autorec={"hidden": 4}).to_dict()


# ---------------------------------------------------------------------- step --


@pytest.fixture(scope="module")
def tiny(ratings_dir):
  config = recommend.default_config()
  configs.apply_overrides(config, [f"data.path={ratings_dir}", "train.batch_size=64", "data.val_fraction=0.1"])
  with config.unlocked():
    config.model = recommend.model_section("blend", members=("mf", "autorec"), weights=(0.5, 0.5),
                                           mf={"dim": 4}, autorec={"hidden": 8})
  return recommend.RecommendTask(config)


def test_the_step_is_pure_and_the_same_on_one_device_and_eight(tiny):
  assert tiny.mesh.devices.size == 8
  r = tiny.ratings
  batch = {k: r.train[k][:64] for k in ("user", "item", "rating")}
  sharded = {**parallel.put(batch, parallel.batch_sharded(tiny.mesh)), "matrix": tiny.matrix}
  step = jax.jit(tiny.step)
  s1, m1 = step(tiny.state, sharded)
  s2, m2 = step(tiny.state, sharded)
  chex.assert_trees_all_equal((s1.params, m1), (s2.params, m2))
  assert int(s1.step) == 1 and np.isfinite(float(m1["loss"]))
  one = jax.devices()[0]
  host = jax.device_get({**batch, "matrix": tiny.matrix})
  s_one, m_one = step(jax.device_put(jax.device_get(tiny.state), one), jax.device_put(host, one))
  for key in ("loss", "rmse", "grad_norm"):
    np.testing.assert_allclose(float(m_one[key]), float(m1[key]), rtol=1e-5)
  chex.assert_trees_all_close(jax.device_get(s_one.params), jax.device_get(s1.params), rtol=1e-4, atol=1e-6)


def test_the_best_epoch_is_kept_only_when_validation_improves(tiny):
  val = parallel.put_replicated(tiny.ratings.val, tiny.mesh)
  keep = jax.jit(lambda s: select_best(s, val, tiny.matrix, weights=tiny.model.weights,
                                       rating_range=tiny.ratings.rating_range))
  first = keep(tiny.state)  # anything beats the initial inf
  assert np.isfinite(float(first.best_val_rmse))
  np.testing.assert_allclose(float(first.best_val_rmse), tiny.evaluate_val((tiny.state.params, tiny.matrix))["rmse"],
                             rtol=1e-5)
  worse = first.replace(params=jax.tree_util.tree_map(lambda p: p + 1.0, first.params), step=first.step + 7)
  after = keep(worse)
  assert float(after.best_val_rmse) == float(first.best_val_rmse) and int(after.best_step) == 0
  chex.assert_trees_all_equal(jax.device_get(after.best_params), jax.device_get(first.params))


# ------------------------------------------------------------------- ranking --


def test_hit_rate_and_ndcg_against_a_direct_computation():
  rng = np.random.default_rng(0)
  users, items, k = 12, 15, 4
  scores = rng.normal(size=(users, items)).astype(np.float32)
  rated = rng.random((users, items)) < 0.3
  relevant = (rng.random((users, items)) < 0.2) & ~rated
  relevant[0] = False  # a user without a relevant item is left out
  mesh = parallel.make_mesh(0)
  got = recommend.make_ranking(lambda u, s: s[u], rated, relevant, k=k, users_per_batch=8, mesh=mesh)(
      jnp.asarray(scores))
  hits, ndcgs = [], []
  for u in range(users):
    if not relevant[u].any():
      continue
    order = [i for i in np.argsort(-scores[u], kind="stable") if not rated[u, i]][:k]
    gains = [1.0 / np.log2(rank + 2) for rank, i in enumerate(order) if relevant[u, i]]
    ideal = sum(1.0 / np.log2(rank + 2) for rank in range(min(k, relevant[u].sum())))
    hits.append(float(bool(gains)))
    ndcgs.append(sum(gains) / ideal)
  assert got["ranked_users"] == len(hits) == users - 1 - int((~relevant[1:].any(1)).sum())
  np.testing.assert_allclose(got[f"hit_rate@{k}"], np.mean(hits), rtol=1e-6)
  np.testing.assert_allclose(got[f"ndcg@{k}"], np.mean(ndcgs), rtol=1e-5)


# ------------------------------------------------------------------ learning --


@pytest.fixture(scope="module")
def mf_run(ratings_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("movielens_mf")
  _, metrics = recommend.train_and_evaluate(shrunk("movielens_mf", ratings_dir), workdir)
  return workdir, metrics


def test_movielens_mf_learns_low_rank_ratings_on_a_shrunk_config(mf_run):
  workdir, m = mf_run
  assert m["test_rmse"] < 0.7 * m["baseline_rmse"], m  # well below predicting the mean
  assert m["test_mae"] < m["test_rmse"] and m["val_rmse"] < 0.7 * m["baseline_rmse"]
  assert m["best_step"] % 26 == 0 and 0 < m["best_step"] <= 130  # an epoch's end (26 batches of 256)
  # Ranking: personalised top 10 beats the same list of popular items for everyone.
  assert m["hit_rate@10"] > m["popularity_hit_rate@10"] and 0 < m["ndcg@10"] <= m["hit_rate@10"], m
  assert json.loads((workdir / "metrics.json").read_text())["params_sha256"] == m["params_sha256"]
  assert (workdir / "learning_curves.png").stat().st_size > 10_000
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "test/rmse" in r] == [26, 52, 78, 104, 130]  # once per epoch
  record = json.loads((workdir / "data.json").read_text())
  assert record["sha256"] == load_ratings(record["source"], split="u1").sha256 and not record["official_split"]


def test_a_resumed_run_ends_where_the_uninterrupted_one_did(mf_run, ratings_dir, tmp_path):
  workdir, m = mf_run
  copy = tmp_path / "run"  # as if killed after checkpoint 104: the last checkpoint and the outputs gone
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns(".lock"))
  shutil.rmtree(copy / "checkpoints" / "130")
  (copy / "metrics.json").unlink()
  _, resumed = recommend.train_and_evaluate(shrunk("movielens_mf", ratings_dir), copy)
  assert resumed["resumed_from_step"] == 104
  for key in ("params_sha256", "test_rmse", "best_step", "hit_rate@10", "train_rmse"):
    assert resumed[key] == m[key], key


def test_nearest_items_of_a_trained_run(mf_run):
  workdir, _ = mf_run
  run = recommend.load_run(workdir)
  neighbours = recommend.nearest_items(run, 7, k=5)
  ids = [i for i, _ in neighbours]
  assert len(ids) == 5 and 7 not in ids
  q = np.asarray(run.params["members_0"]["item_factors"]["embedding"])
  q = q / np.linalg.norm(q, axis=1, keepdims=True)
  me = run.ratings.item_index(7)
  cos = q @ q[me]
  np.testing.assert_allclose([c for _, c in neighbours], [cos[run.ratings.item_index(i)] for i in ids], rtol=1e-5)
  assert [c for _, c in neighbours] == sorted((c for _, c in neighbours), reverse=True)
  assert max(np.delete(cos, me)) == pytest.approx(neighbours[0][1], rel=1e-5)
  with pytest.raises(JaxdlError, match="item 9999 is not an item"):
    recommend.nearest_items(run, 9999)


def test_movielens_hybrid_learns_on_a_shrunk_config(ratings_dir, tmp_path):
  _, m = recommend.train_and_evaluate(shrunk("movielens_hybrid", ratings_dir), tmp_path)
  assert m["test_rmse"] < 0.8 * m["baseline_rmse"], m
  # Each member learns (AutoRec more slowly than MF on ratings that are exactly low-rank).
  assert m["test_rmse_autorec"] < 0.85 * m["baseline_rmse"] and m["test_rmse_mf"] < 0.6 * m["baseline_rmse"], m
  assert "best_step" not in m and m["last_test_rmse"] == m["test_rmse"]  # no validation split: the last step


# ----------------------------------------------------------------- bad input --


def test_a_preset_without_data_says_how_to_get_movielens(capsys, tmp_path):
  code, _, err = run_cli(capsys, "run", "movielens_mf", "--workdir", str(tmp_path / "w"))
  assert_one_line_error(code, err, "data.path", "licence", "pip download recbole")
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("item, words", [
    ("data.split=u6", ("data.split='u6'", "u1")),
    ("data.path=/no/such/ratings", ("/no/such/ratings", "does not exist")),
    ("data.test_fraction=0.3", ("data.test_fraction", "split=random")),
    ("data.rating_range=(1.0, 4.0)", ("u.data:", "rating 5", "data.rating_range [1, 4]")),
    ("train.batch_size=12", ("train.batch_size", "divisible")),
    ("model.dims=8", ("model.dims", "unknown key")),
])
def test_bad_input_is_a_one_line_error_before_anything_is_written(capsys, tmp_path, ratings_dir, item, words):
  code, _, err = run_cli(capsys, "run", "movielens_mf", "--workdir", str(tmp_path / "w"),
                         "--set", f"data.path={ratings_dir}", "--set", item)
  assert_one_line_error(code, err, *words)
  assert not (tmp_path / "w").exists()


def test_a_model_option_the_model_lacks_is_refused(ratings_dir):
  config = preset("movielens_mf", f"data.path={ratings_dir}")
  with config.model.unlocked():
    config.model.hidden = 8  # AutoRec's option, not MF's
  with pytest.raises(JaxdlError, match="recommender 'mf' has no option 'hidden'"):
    recommend.RecommendTask(config)


def test_a_key_the_loop_does_not_read_is_refused():
  config = preset("movielens_mf")
  with config.unlocked():
    config.data.num_classes = 5  # the supervised loop's key
  with pytest.raises(JaxdlError, match="data.num_classes is not a key of the 'recommend' loop"):
    recommend.validate(config)


def test_ratings_from_python_are_recorded_and_a_resume_with_others_is_refused(ratings_dir, tmp_path):
  config = recommend.default_config()
  configs.apply_overrides(config, ["train.batch_size=256", "model.dim=4"])
  task = recommend.RecommendTask(config, data=load_ratings(ratings_dir, split="random", seed=0))
  assert (task.config.data.name, task.config.data.path) == ("movielens", "")  # config.json names no file
  task.on_start(tmp_path, resuming=False)
  assert json.loads((tmp_path / "data.json").read_text())["sha256"] == task.ratings.sha256
  task.on_start(tmp_path, resuming=True)  # the same ratings: accepted
  other = recommend.RecommendTask(config, data=load_ratings(ratings_dir, split="random", seed=1))
  with pytest.raises(JaxdlError, match="are not these"):
    other.on_start(tmp_path, resuming=True)
  with pytest.raises(JaxdlError, match="must be a jaxdl.data.ratings.Ratings"):
    recommend.RecommendTask(config, data={"user": [1]})
