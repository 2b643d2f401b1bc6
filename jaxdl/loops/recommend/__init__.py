"""The recommend loop: recommenders trained on explicit ratings with squared error (MovieLens).

    state, metrics = recommend_step(state, {"user": (B,), "item": (B,), "rating": (B,), ...})

``config`` (schema, ``model_section``), ``step`` (the step, the best epoch
kept on the device), ``ranking`` (hit rate and NDCG at k), ``plots``,
``experiment`` (``RecommendTask``, ``train_and_evaluate``) and ``load``
(``load_run``, ``nearest_items``). The data is ``jaxdl.data.ratings``, the
models ``jaxdl.models.recsys``.
"""

from jaxdl.loops.recommend.config import default_config, model_section, validate
from jaxdl.loops.recommend.experiment import RecommendTask, rank, rating_matrix, train_and_evaluate
from jaxdl.loops.recommend.load import RecommenderRun, load_run, nearest_items
from jaxdl.loops.recommend.ranking import make_ranking, ranking_masks
from jaxdl.loops.recommend.step import RecState, recommend_step

__all__ = ["RecState", "RecommendTask", "RecommenderRun", "default_config", "load_run", "make_ranking",
           "model_section", "nearest_items", "rank", "ranking_masks", "rating_matrix", "recommend_step",
           "train_and_evaluate", "validate"]
