"""Top-k ranking of held-out items: hit rate and NDCG at k, computed on the device in batches of users.

The protocol, for a test set and a training set (the whole training split,
its validation part included):

1. A test rating of at least ``relevant_from`` (4 on MovieLens' 1-5 scale)
   makes its item *relevant* to its user. Users without a relevant test
   item are left out.
2. Each remaining user's *candidates* are every item they did not rate in
   the training split: the test items, whatever their rating, and every
   item they never rated. Items rated in training are known already and
   are never recommended.
3. The candidates are ranked by the model's unclipped predicted rating
   (clipping would tie the top), ties by item index; the top ``k`` are the
   recommendations.
4. ``hit_rate@k``: the share of users with at least one relevant item in
   their top k. ``ndcg@k``: ``DCG / IDCG`` per user, with ``DCG = sum over
   relevant items at rank r <= k of 1 / log2(r + 1)`` and IDCG the DCG of
   a list that starts with all the user's relevant items; averaged over
   users.

This is the full-ranking protocol (every unrated item is a candidate), not
the sampled one of NCF's paper (one held-out item among 100 sampled
negatives), whose numbers are higher and not comparable (Krichene and
Rendle 2020, "On sampled metrics for item recommendation").

The user-by-item masks are dense on the device: fine up to MovieLens 1M
(6,040 x 3,706 booleans); the larger releases would need sparse masks.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.train import parallel

Scores = Callable[..., jax.Array]  # scores(users (Bu,), *args) -> (Bu, num_items)


def ranking_masks(num_users: int, num_items: int, train: dict, test: dict,
                  relevant_from: float) -> tuple[np.ndarray, np.ndarray]:
  """(rated (U, I), relevant (U, I)) booleans: rated in ``train``; rated ``>= relevant_from`` in ``test``."""
  rated = np.zeros((num_users, num_items), bool)
  rated[train["user"], train["item"]] = True
  relevant = np.zeros((num_users, num_items), bool)
  good = test["rating"] >= relevant_from
  relevant[test["user"][good], test["item"][good]] = True
  return rated, relevant & ~rated


def make_ranking(scores: Scores, rated: np.ndarray, relevant: np.ndarray, *, k: int, users_per_batch: int,
                 mesh: jax.sharding.Mesh) -> Callable[..., dict[str, float]]:
  """``ranking(*args) -> {"hit_rate@k", "ndcg@k", "ranked_users"}`` of ``scores(users, *args)``.

  The users with a relevant item are padded to whole batches (rounded up to
  the device count), each batch split over the devices, and scanned in one
  jitted call (``jax.lax.map``).
  """
  n_dev = mesh.devices.size
  users = np.flatnonzero(relevant.any(axis=1)).astype(np.int32)
  per_batch = -(-min(users_per_batch, max(len(users), 1)) // n_dev) * n_dev
  num_batches = max(1, -(-len(users) // per_batch))
  pad = num_batches * per_batch - len(users)
  batches = {"user": np.concatenate([users, np.zeros(pad, np.int32)]).reshape(num_batches, per_batch),
             "weight": np.concatenate([np.ones(len(users), np.float32), np.zeros(pad, np.float32)]
                                      ).reshape(num_batches, per_batch)}
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))
  batches = parallel.put(batches, split)  # (num_batches, per_batch): each batch's users over the devices
  masks = parallel.put_replicated({"rated": rated, "relevant": relevant}, mesh)
  k = min(k, rated.shape[1])
  discounts = 1.0 / np.log2(np.arange(2, k + 2))  # (k,): rank r's gain 1 / log2(r + 1)
  ideal = np.concatenate([[0.0], np.cumsum(discounts)]).astype(np.float32)  # IDCG for 0..k relevant items

  @jax.jit
  def rank_all(batches, masks, *args):
    def one(batch):
      u = batch["user"]
      s = jnp.where(masks["rated"][u], -jnp.inf, scores(u, *args))  # (Bu, I)
      _, top = jax.lax.top_k(s, k)  # (Bu, k)
      hits = jnp.take_along_axis(masks["relevant"][u], top, axis=1).astype(jnp.float32)  # (Bu, k)
      dcg = hits @ jnp.asarray(discounts, jnp.float32)
      n_rel = jnp.minimum(jnp.sum(masks["relevant"][u], axis=1), k)
      ndcg = dcg / jnp.maximum(jnp.asarray(ideal)[n_rel], 1e-12)
      w = batch["weight"]
      return jnp.stack([jnp.sum(w * (hits.max(axis=1))), jnp.sum(w * ndcg)])

    return jnp.sum(jax.lax.map(one, batches), axis=0)

  def ranking(*args) -> dict[str, float]:
    hit, ndcg = (float(v) for v in jax.device_get(rank_all(batches, masks, *args)))
    n = max(len(users), 1)
    return {f"hit_rate@{k}": hit / n, f"ndcg@{k}": ndcg / n, "ranked_users": len(users)}

  return ranking
