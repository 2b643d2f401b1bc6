"""Recommenders for explicit ratings: matrix factorisation, neural CF, an item autoencoder, and blends of them.

Every recommender is called on a batch of (user, item) index pairs:

    predictions, penalty = model.apply(variables, users, items, matrix, train=...)

``predictions`` (B,) are unclipped ratings; ``penalty`` is the model's own
regularisation for this batch, a scalar added to the mean squared error.
``matrix`` (num_items, num_users) holds the training ratings (0: unrated)
for the models that read them (``needs_matrix``); others ignore it.
``item_vectors(matrix)`` gives one vector per item (for neighbours by
cosine, :func:`cosine_neighbours`).

- :class:`MatrixFactorization`: ``mean + b_u + b_i + p_u . q_i`` (Koren et
  al. 2009, "Matrix factorization techniques for recommender systems",
  eq. 4), with the L2 penalty of their eq. 5 on the rows a rating uses.
- :class:`NeuralCF`: NeuMF (He et al. 2017, "Neural collaborative
  filtering"): a GMF branch ``p_u * q_i`` and an MLP over the concatenated
  embeddings ``[p'_u, q'_i]``, fused by one output layer; here a regression
  of the rating with the global mean and biases, not their implicit-feedback
  classifier.
- :class:`AutoRec`: I-AutoRec (Sedhain et al. 2015, "AutoRec: autoencoders
  meet collaborative filtering"): an item's vector of training ratings is
  encoded to ``h_i``, and user u's decoder row reads the rating,
  ``mean + b_u + w_u . h_i``. In training the batch's own ratings are
  hidden from the input (the rest rescaled to keep its expected value), so
  the encoder learns to predict ratings it does not see, as at test time.
- :class:`Blend`: members trained side by side, each on its own squared
  error (an ensemble: no member sees another's predictions), predicting the
  weighted mean of their predictions.

:data:`RECOMMENDERS` names the members; :func:`build_recommender` builds a
``Blend`` from a config's ``model`` section (one member, or ``blend``).
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.layers import get_activation
from jaxdl.models.registry import constructor_defaults, constructor_options
from jaxdl.utils.errors import JaxdlError

# Fields every recommender has that the data sets, not the config.
_DATA_FIELDS = frozenset({"parent", "name", "num_users", "num_items", "mean"})


def _row_squares(*rows: jax.Array) -> jax.Array:
  """Per example, the sum of squares of its rows: each (B, D) -> (B,)."""
  return sum(jnp.sum(jnp.square(r.reshape(r.shape[0], -1)), axis=1) for r in rows)


def _tables(num_users: int, num_items: int, dim: int, init_scale: float) -> tuple[nn.Embed, nn.Embed]:
  """A user and an item embedding table of width ``dim``, normal at ``init_scale``."""
  init = nn.initializers.normal(init_scale)
  return nn.Embed(num_users, dim, embedding_init=init), nn.Embed(num_items, dim, embedding_init=init)


class Biases(nn.Module):
  """``mean + b_u + b_i`` (B,) and each rating's penalty ``bias_l2 (b_u^2 + b_i^2)`` (B,); biases start at 0."""

  num_users: int
  num_items: int
  mean: float
  bias_l2: float

  @nn.compact
  def __call__(self, users: jax.Array, items: jax.Array) -> tuple[jax.Array, jax.Array]:
    b_u = nn.Embed(self.num_users, 1, embedding_init=nn.initializers.zeros, name="user")(users)[:, 0]
    b_i = nn.Embed(self.num_items, 1, embedding_init=nn.initializers.zeros, name="item")(items)[:, 0]
    return self.mean + b_u + b_i, self.bias_l2 * (b_u ** 2 + b_i ** 2)


class MatrixFactorization(nn.Module):
  """Biased matrix factorisation: ``mean + b_u + b_i + p_u . q_i``.

  Attributes:
    num_users, num_items: table sizes.
    mean: the global mean (the training ratings'), a constant offset.
    dim: the factors' dimension.
    l2: weight of ``|p_u|^2 + |q_i|^2`` per rating (frequent users and
      items are regularised more, as in Koren et al.'s SGD).
    bias_l2: weight of ``b_u^2 + b_i^2`` per rating.
    init_scale: standard deviation of the factors at initialisation.
  """

  num_users: int
  num_items: int
  mean: float = 0.0
  dim: int = 64
  l2: float = 0.1
  bias_l2: float = 0.01
  init_scale: float = 0.1
  needs_matrix: ClassVar[bool] = False

  def setup(self):
    self.user_factors, self.item_factors = _tables(self.num_users, self.num_items, self.dim, self.init_scale)
    self.biases = Biases(self.num_users, self.num_items, self.mean, self.bias_l2)

  def __call__(self, users: jax.Array, items: jax.Array, matrix: jax.Array | None = None, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    del matrix, train
    p, q = self.user_factors(users), self.item_factors(items)  # (B, D)
    offset, bias_penalty = self.biases(users, items)  # (B,)
    return offset + jnp.sum(p * q, axis=1), jnp.mean(self.l2 * _row_squares(p, q) + bias_penalty)

  def item_vectors(self, matrix: jax.Array | None = None) -> jax.Array:
    del matrix
    return self.item_factors.embedding  # (I, D)


class NeuralCF(nn.Module):
  """NeuMF for ratings: ``mean + b_u + b_i + w . [p_u * q_i, MLP([p'_u, q'_i])]``.

  Attributes:
    num_users, num_items, mean: as :class:`MatrixFactorization`.
    dim: the dimension of each embedding table (GMF's and the MLP's).
    hidden: the MLP's widths (NCF's tower halves them: (64, 32, 16)).
    activation: the MLP's activation (``layers.ACTIVATIONS``).
    dropout: rate after each MLP activation, in training only.
    gmf: keep the GMF branch (False: the MLP alone, NCF's "MLP" model).
    l2: weight of the squared embeddings a rating uses, per rating.
    bias_l2: weight of ``b_u^2 + b_i^2`` per rating.
    init_scale: standard deviation of the embeddings at initialisation.
  """

  num_users: int
  num_items: int
  mean: float = 0.0
  dim: int = 32
  hidden: tuple[int, ...] = (64, 32)
  activation: str = "relu"
  dropout: float = 0.0
  gmf: bool = True
  l2: float = 0.05
  bias_l2: float = 0.01
  init_scale: float = 0.1
  needs_matrix: ClassVar[bool] = False

  def setup(self):
    self.user_mlp, self.item_mlp = _tables(self.num_users, self.num_items, self.dim, self.init_scale)
    if self.gmf:
      self.user_gmf, self.item_gmf = _tables(self.num_users, self.num_items, self.dim, self.init_scale)
    self.biases = Biases(self.num_users, self.num_items, self.mean, self.bias_l2)
    self.tower = [nn.Dense(width) for width in self.hidden]
    self.drop = nn.Dropout(self.dropout)
    self.out = nn.Dense(1)

  def __call__(self, users: jax.Array, items: jax.Array, matrix: jax.Array | None = None, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    del matrix
    act = get_activation(self.activation)
    rows = [self.user_mlp(users), self.item_mlp(items)]  # (B, D) each
    x = jnp.concatenate(rows, axis=1)  # (B, 2D)
    for dense in self.tower:
      x = self.drop(act(dense(x)), deterministic=not train)
    if self.gmf:
      p, q = self.user_gmf(users), self.item_gmf(items)
      rows += [p, q]
      x = jnp.concatenate([p * q, x], axis=1)
    offset, bias_penalty = self.biases(users, items)
    return offset + self.out(x)[:, 0], jnp.mean(self.l2 * _row_squares(*rows) + bias_penalty)

  def item_vectors(self, matrix: jax.Array | None = None) -> jax.Array:
    del matrix
    tables = [self.item_mlp.embedding] + ([self.item_gmf.embedding] if self.gmf else [])
    return jnp.concatenate(tables, axis=1)  # (I, D or 2D)


class AutoRec(nn.Module):
  """Item-based AutoRec: ``mean + b_u + w_u . act(V r_i + c)``, ``r_i`` the item's training ratings.

  Attributes:
    num_users, num_items, mean: as :class:`MatrixFactorization`.
    hidden: the code's width (AutoRec's 500).
    activation: the encoder's (AutoRec's sigmoid; the decoder is linear).
    l2: weight of ``|V|^2 + |W|^2``, the two weight matrices, added once
      per step (AutoRec's lambda / 2 over the number of ratings).
  """

  num_users: int
  num_items: int
  mean: float = 0.0
  hidden: int = 500
  activation: str = "sigmoid"
  l2: float = 4e-4
  needs_matrix: ClassVar[bool] = True

  def setup(self):
    self.encoder_kernel = self.param("encoder_kernel", nn.initializers.lecun_normal(), (self.num_users, self.hidden))
    self.encoder_bias = self.param("encoder_bias", nn.initializers.zeros, (self.hidden,))
    self.decoder = nn.Embed(self.num_users, self.hidden,
                            embedding_init=nn.initializers.variance_scaling(1.0, "fan_out", "normal"))
    self.user_bias = nn.Embed(self.num_users, 1, embedding_init=nn.initializers.zeros)

  def codes(self, matrix: jax.Array) -> jax.Array:
    """Every item's code (I, H) from its ratings ``matrix`` (I, U)."""
    return get_activation(self.activation)(matrix @ self.encoder_kernel + self.encoder_bias[None])

  def __call__(self, users: jax.Array, items: jax.Array, matrix: jax.Array | None = None, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    if matrix is None:
      raise JaxdlError("AutoRec reads the items' training ratings: pass matrix (num_items, num_users)")
    if train:  # hide the batch's ratings; scale the rest so the input keeps its expected value
      observed = jnp.count_nonzero(matrix).astype(jnp.float32)
      hidden_from = matrix.at[items, users].set(0.0)
      matrix = hidden_from * (observed / jnp.maximum(observed - users.shape[0], 1.0))
    h = self.codes(matrix)[items]  # (B, H)
    predictions = self.mean + self.user_bias(users)[:, 0] + jnp.sum(h * self.decoder(users), axis=1)
    penalty = self.l2 * (jnp.sum(jnp.square(self.encoder_kernel)) + jnp.sum(jnp.square(self.decoder.embedding)))
    return predictions, penalty

  def item_vectors(self, matrix: jax.Array | None = None) -> jax.Array:
    return self.codes(matrix)


class Blend(nn.Module):
  """Members trained side by side on their own losses; the prediction is their weighted mean.

  Attributes:
    members: the recommenders.
    weights: one per member, summing to 1.
  """

  members: tuple[nn.Module, ...]
  weights: tuple[float, ...]

  @property
  def needs_matrix(self) -> bool:
    return any(m.needs_matrix for m in self.members)

  def __call__(self, users: jax.Array, items: jax.Array, matrix: jax.Array | None = None, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Every member's predictions (M, B) and the sum of their penalties."""
    outputs = [m(users, items, matrix, train=train) for m in self.members]
    return jnp.stack([p for p, _ in outputs]), sum(penalty for _, penalty in outputs)

  def blend(self, predictions: jax.Array) -> jax.Array:
    """The weighted mean (B,) of the members' predictions (M, B)."""
    return jnp.asarray(self.weights, jnp.float32) @ predictions

  def item_vectors(self, matrix: jax.Array | None = None) -> jax.Array:
    """The members' item vectors, each scaled to unit length, side by side (I, sum D).

    So the cosine of two items is the mean of the members' cosines.
    """
    def unit(v):
      return v / jnp.maximum(jnp.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    return jnp.concatenate([unit(m.item_vectors(matrix)) for m in self.members], axis=1)


# name -> (class, one-line description), for configs.
RECOMMENDERS: dict[str, tuple[type[nn.Module], str]] = {
    "mf": (MatrixFactorization, "biased matrix factorisation (Koren et al. 2009)"),
    "ncf": (NeuralCF, "NeuMF over user and item embeddings, as a rating regression (He et al. 2017)"),
    "autorec": (AutoRec, "item-based AutoRec over the training ratings (Sedhain et al. 2015)"),
}
BLEND = "blend"


def _lookup(name: str) -> type[nn.Module]:
  if name not in RECOMMENDERS:
    raise JaxdlError(f"unknown recommender model.name={name!r} (choices: {', '.join(RECOMMENDERS)}, {BLEND})")
  return RECOMMENDERS[name][0]


def recommender_options(name: str) -> tuple[str, ...]:
  """The options of recommender ``name`` (its fields that are not set from the data)."""
  return constructor_options(_lookup(name), _DATA_FIELDS)


def recommender_defaults(name: str) -> dict[str, Any]:
  """Each option of recommender ``name`` with its default."""
  return constructor_defaults(_lookup(name), _DATA_FIELDS)


def get_recommender(name: str, num_users: int, num_items: int, mean: float = 0.0, **options: Any) -> nn.Module:
  """Builds recommender ``name`` for ``num_users`` x ``num_items`` with the global ``mean``.

  Raises:
    JaxdlError: an unknown name, an option it lacks, or a value out of range.
  """
  cls, allowed = _lookup(name), recommender_options(name)
  for key, value in options.items():
    if key not in allowed:
      raise JaxdlError(f"recommender {name!r} has no option {key!r} (options: {', '.join(allowed)})")
    if key in ("dim", "hidden") and (min(value) if isinstance(value, (tuple, list)) else value) < 1:
      raise JaxdlError(f"model.{key}={value!r} must be >= 1")
    if key in ("l2", "bias_l2", "init_scale") and not value >= 0:
      raise JaxdlError(f"model.{key}={value!r} must be >= 0")
  if "dropout" in options and not 0 <= options["dropout"] < 1:
    raise JaxdlError(f"model.dropout={options['dropout']} must be in [0, 1)")
  if "activation" in options:
    get_activation(options["activation"])  # an unknown name fails here, not when traced
  options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
  return cls(num_users=num_users, num_items=num_items, mean=float(mean), **options)


def build_recommender(model: Mapping[str, Any], num_users: int, num_items: int, mean: float) -> Blend:
  """The :class:`Blend` a config's ``model`` section describes.

  ``model.name`` is a recommender (its options beside it: a blend of one) or
  ``blend``, with ``members`` (recommender names, each once), ``weights``
  (one per member, summing to 1) and each member's options in a section of
  its name (``model.mf.dim``).

  Raises:
    JaxdlError: an unknown name or option, a missing member section, or
      weights that do not fit the members.
  """
  model = dict(model)
  name = model.pop("name")
  if name != BLEND:
    return Blend(members=(get_recommender(name, num_users, num_items, mean, **model),), weights=(1.0,))
  members, weights = tuple(model.pop("members", ())), tuple(float(w) for w in model.pop("weights", ()))
  if not members or len(set(members)) != len(members):
    raise JaxdlError(f"model.members={members!r} must name each member once (choices: {', '.join(RECOMMENDERS)})")
  if len(weights) != len(members) or min(weights) < 0 or abs(sum(weights) - 1) > 1e-6:
    raise JaxdlError(f"model.weights={weights!r} must give each of model.members={members!r} a weight >= 0, "
                     f"summing to 1")
  extra = sorted(set(model) - set(members))
  if extra:
    raise JaxdlError(f"model.{extra[0]} is not a member of the blend (model.members={members!r})")
  built = []
  for member in members:
    _lookup(member)
    if member not in model:
      raise JaxdlError(f"the blend's member {member!r} needs its section model.{member} (its options: "
                       f"{', '.join(recommender_options(member))})")
    built.append(get_recommender(member, num_users, num_items, mean, **dict(model[member])))
  return Blend(members=tuple(built), weights=weights)


def cosine_neighbours(vectors: jax.Array, index: int, k: int = 10) -> tuple[jax.Array, jax.Array]:
  """The ``k`` rows of ``vectors`` (N, D) most similar to row ``index`` by cosine, itself left out.

  Returns:
    (indices (k,), cosines (k,)), the most similar first.
  """
  if not 0 <= index < vectors.shape[0]:
    raise JaxdlError(f"index {index} is outside the {vectors.shape[0]} rows")
  unit = vectors / jnp.maximum(jnp.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
  cosines = (unit @ unit[index]).at[index].set(-jnp.inf)  # (N,)
  top, idx = jax.lax.top_k(cosines, min(k, vectors.shape[0] - 1))
  return idx, top
