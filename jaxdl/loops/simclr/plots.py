"""SimCLR's pictures: the contrastive learning curves, the probes, and the features in 2-D."""

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from jaxdl.train.plots import figure, save


def _points(history: Sequence[dict], key: str) -> np.ndarray:
  return np.asarray([(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]).reshape(-1, 2)


def plot_contrastive_curves(history: Sequence[dict], path, *, title: str = "") -> pathlib.Path:
  """NT-Xent, the contrastive accuracy (training batches) and the k-NN accuracy (test) over training."""
  fig = figure(13, 3.6)
  axes = fig.subplots(1, 3)
  panels = (("NT-Xent loss", (("train/loss", "train", "-"),)),
            ("contrastive accuracy", (("train/contrastive_accuracy", "train", "-"),)),
            ("k-NN accuracy (test)", (("test/knn_accuracy", "test", "o-"),)))
  for ax, (name, curves) in zip(axes, panels):
    for key, label, style in curves:
      points = _points(history, key)
      if len(points):
        ax.plot(points[:, 0], points[:, 1], style, label=label, markersize=3)
    ax.set_xlabel("optimizer step")
    ax.set_title(name, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  return save(fig, path, title)


def plot_probes(accuracies: Mapping[str, Mapping[str, float]], path, *, title: str = "") -> pathlib.Path:
  """Grouped bars: each feature source's probe accuracy, one bar per labelled-set size.

  Args:
    accuracies: feature source ("SimCLR", "random encoder", "pixels") ->
      {"all labels": acc, "10 per class": acc}.
  """
  sources = list(accuracies)
  settings = list(next(iter(accuracies.values())))
  width = 0.8 / len(settings)
  fig = figure(6, 3.6)
  ax = fig.subplots()
  for j, setting in enumerate(settings):
    values = [accuracies[s][setting] for s in sources]
    bars = ax.bar(np.arange(len(sources)) + (j - (len(settings) - 1) / 2) * width, values, width, label=setting)
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=7)
  lowest = min(v for a in accuracies.values() for v in a.values())
  ax.set_ylim(max(0.0, lowest - 0.15), 1.02)
  ax.set_xticks(np.arange(len(sources)), sources)
  ax.set_ylabel("linear probe test accuracy")
  ax.grid(alpha=0.3, axis="y")
  ax.legend(fontsize=8, loc="lower right")
  if title:
    ax.set_title(title, fontsize=9)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path


def pca_2d(features: np.ndarray) -> np.ndarray:
  """The first two principal components of ``features`` (N, F) -> (N, 2)."""
  x = np.asarray(features, np.float64).reshape(len(features), -1)
  x = x - x.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  return x @ vt[:2].T


def plot_feature_pca(features: Mapping[str, np.ndarray], labels: np.ndarray, path, *,
                     title: str = "") -> pathlib.Path:
  """One scatter per feature source: its first two principal components, coloured by label."""
  k = int(np.max(labels)) + 1
  fig = figure(4 * len(features), 4)
  axes = np.atleast_1d(fig.subplots(1, len(features)))
  for ax, (name, f) in zip(axes, features.items()):
    p = pca_2d(f)
    scatter = ax.scatter(p[:, 0], p[:, 1], c=labels, cmap="tab10" if k <= 10 else "tab20", s=6,
                         vmin=-0.5, vmax=k - 0.5)
    ax.set_title(name, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.colorbar(scatter, ax=list(axes), ticks=range(k), label="label", shrink=0.8)
  return save(fig, path, title)
