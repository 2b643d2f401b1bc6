"""The recommend loop's config schema: every key it reads, and its checks.

The ``model`` section is open: ``model.name`` is a recommender of
``jaxdl.models.recsys.RECOMMENDERS`` with its options beside it, or
``blend`` with ``members``, ``weights`` and one section per member
(:func:`model_section` writes either out in full, so ``--set model.KEY``
reaches every option); the options are checked against the models' fields
when they are built. ``train.eval_every=0`` evaluates once per epoch.
"""

import ml_collections

from jaxdl import configs
from jaxdl.data.ratings import RATING_DATASETS, SPLITS
from jaxdl.models.recsys import BLEND, recommender_defaults
from jaxdl.train import accumulate, precision, sharding
from jaxdl.train.fit import validate_schedule
from jaxdl.utils.errors import JaxdlError

_TEST_FRACTION = 0.2


def model_section(name: str, **options) -> ml_collections.ConfigDict:
  """A ``model`` section with every option of recommender ``name`` at its default but ``options``.

  For ``name='blend'``, ``options`` are ``members`` (names), ``weights`` and
  one dict of options per member (``mf={"dim": 64}``); each member's
  section is written out in full too.
  """
  if name != BLEND:
    return ml_collections.ConfigDict({"name": name, **recommender_defaults(name), **options})
  members = tuple(options.pop("members", ()))
  section = ml_collections.ConfigDict({"name": BLEND, "members": members,
                                       "weights": tuple(float(w) for w in options.pop("weights", ()))})
  for member in members:
    section[member] = {**recommender_defaults(member), **options.pop(member, {})}
  if options:
    raise JaxdlError(f"model_section('blend'): {', '.join(sorted(options))} is not a member (members: {members})")
  return section


def default_config() -> ml_collections.ConfigDict:
  """The defaults of every recommend preset: explicit ratings, mean squared error."""
  config = ml_collections.ConfigDict()
  config.loop = "recommend"

  config.train = configs.train_section()
  config.train.steps = 3000
  config.train.batch_size = 1024  # ratings per step
  config.train.eval_every = 0  # steps between evaluations (validation and test RMSE); 0: once per epoch
  config.train.eval_batch_size = 8192  # ratings per evaluation batch

  config.checkpoint = configs.checkpoint_section()
  config.optim = configs.optim_section(extendable=True, per_path=True)

  config.data = ml_collections.ConfigDict()
  config.data.name = "movielens"
  config.data.path = ""  # MovieLens 100K's folder or u.data, a ratings.csv, or a RecBole .inter (not shipped)
  config.data.split = "u1"  # u1 .. u5 (MovieLens 100K's folds), random or temporal
  config.data.rating_range = (1.0, 5.0)  # every rating must lie in it; predictions are clipped to it
  config.data.val_fraction = 0.05  # of the training ratings, for choosing the best epoch; 0: the last one
  config.data.test_fraction = _TEST_FRACTION  # of all ratings, for split=random or temporal
  config.data.seed = 0  # the random split's and the validation draw's (not train.seed: seeds share a split)

  config.model = model_section("mf")

  # Top-k ranking of held-out items after training (jaxdl.loops.recommend.ranking); k=0: off.
  config.ranking = ml_collections.ConfigDict()
  config.ranking.k = 0  # 10 reports hit_rate@10 and ndcg@10
  config.ranking.relevant_from = 4.0  # a test rating this high or higher makes its item relevant
  config.ranking.users_per_batch = 128  # users scored against every item in one batch
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line errors for keys this loop does not read and values no run can use."""
  configs.check_keys(config, default_config(), open_sections=("model",))
  sharding.check_sharding(config, supported=("replicated",))  # fsdp: the supervised and lm loops
  precision.check_float32(config)  # bfloat16 and accumulation, likewise
  accumulate.check_unsupported(config)
  validate_schedule(config)
  d, r = config.data, config.ranking
  if d.name not in RATING_DATASETS:
    raise JaxdlError(f"data.name={d.name!r} is not a ratings dataset (known: {', '.join(RATING_DATASETS)})")
  if d.split not in SPLITS:
    raise JaxdlError(f"data.split={d.split!r} must be one of {', '.join(SPLITS)} (u1 .. u5: MovieLens 100K's "
                     f"five folds)")
  if d.split.startswith("u") and d.test_fraction != _TEST_FRACTION:
    raise JaxdlError(f"data.test_fraction={d.test_fraction} is not read by data.split={d.split} (a fold's test "
                     f"set is its fifth); it is for split=random or temporal")
  if len(d.rating_range) != 2 or not d.rating_range[0] < d.rating_range[1]:
    raise JaxdlError(f"data.rating_range={tuple(d.rating_range)} must be (lowest, highest) with lowest < highest")
  if not 0 <= d.val_fraction < 1 or not 0 < d.test_fraction < 1:
    raise JaxdlError(f"data.val_fraction={d.val_fraction} must be in [0, 1) and data.test_fraction="
                     f"{d.test_fraction} in (0, 1)")
  if r.k < 0 or r.users_per_batch < 1:
    raise JaxdlError(f"ranking.k={r.k} must be >= 0 (0: off) and ranking.users_per_batch={r.users_per_batch} >= 1")
  if "name" not in config.model:
    raise JaxdlError("model.name is missing (a recommender, or 'blend')")
