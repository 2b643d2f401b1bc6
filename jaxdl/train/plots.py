"""Learning curves as PNG, drawn from the metric history."""

import os
import pathlib
from collections.abc import Sequence

import numpy as np


def plot_learning_curves(history: Sequence[dict], path: str | os.PathLike, *, title: str = "") -> pathlib.Path:
  """Draws one panel per metric name with its train and test curves.

  Args:
    history: records like ``{"step": 10, "train/loss": 0.3, "test/accuracy": 0.9}``.
    path: where the PNG goes.
    title: the figure title (e.g. the preset name).

  Returns:
    The path written.
  """
  import matplotlib
  matplotlib.use("Agg")  # headless: no display on servers and CI
  import matplotlib.pyplot as plt

  names = sorted({k.split("/", 1)[1] for r in history for k in r if "/" in k}
                 & {"loss", "accuracy"}) or ["loss"]
  fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
  for ax, name in zip(axes[0], names):
    for split, style in (("train", "-"), ("test", "o-")):
      key = f"{split}/{name}"
      points = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
      if points:
        steps, values = np.asarray(points).T
        ax.plot(steps, values, style, label=split, markersize=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(name)
    if name == "loss":
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
