"""The recommend loop's learning curves: RMSE on the training batches, validation and test, and the loss."""

import pathlib
from collections.abc import Sequence

import numpy as np

from jaxdl.train.plots import figure, save

_CURVES = (("train/rmse", "train (batches)", "-"), ("test/val_rmse", "validation", "o-"), ("test/rmse", "test", "o-"))


def _points(history: Sequence[dict], key: str) -> np.ndarray:
  return np.asarray([(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]).reshape(-1, 2)


def plot_rating_curves(history: Sequence[dict], path, *, best_step: int = 0, baseline_rmse: float = 0.0,
                       title: str = "") -> pathlib.Path:
  """RMSE (train, validation, test) and the training loss over the steps.

  Args:
    history: ``metrics.jsonl`` records.
    path: where the PNG goes.
    best_step: the step whose parameters were kept (a dotted line; 0: none).
    baseline_rmse: the test RMSE of predicting the training mean (a dashed line; 0: none).
    title: the figure's title.
  """
  fig = figure(11, 3.8)
  ax_rmse, ax_loss = fig.subplots(1, 2)
  for key, label, style in _CURVES:
    points = _points(history, key)
    if len(points):
      ax_rmse.plot(points[:, 0], points[:, 1], style, label=label, markersize=3)
  if baseline_rmse:
    ax_rmse.axhline(baseline_rmse, color="grey", linestyle="--", linewidth=1, label="predict the mean (test)")
  if best_step:
    ax_rmse.axvline(best_step, color="black", linestyle=":", linewidth=1, label=f"kept: step {best_step}")
  ax_rmse.set_ylabel("RMSE (clipped predictions)")
  loss = _points(history, "train/loss")
  if len(loss):
    ax_loss.plot(loss[:, 0], loss[:, 1], "-")
    ax_loss.set_yscale("log")
  ax_loss.set_ylabel("training loss (MSE + penalties)")
  for ax in (ax_rmse, ax_loss):
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
  ax_rmse.legend(fontsize=8)
  return save(fig, path, title)
