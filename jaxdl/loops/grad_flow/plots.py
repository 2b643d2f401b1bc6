"""The study's figures: per-layer gradient norms against depth, and training curves per variant."""

import math
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from jaxdl.train.plots import figure, save


def plot_grad_flow(norms: Mapping[str, Mapping[str, Sequence[float] | None]], path: str | os.PathLike, *,
                   title: str = "") -> pathlib.Path:
  """Two panels, at initialisation and after training: each weight layer's gradient norm against its depth.

  Args:
    norms: ``{variant: {"init": [norm per weight layer], "trained": [...] or None}}``,
      the layers in network order (depth 1 is the first).
    path: where the PNG goes.
    title: the figure title.

  Returns:
    The path written.
  """
  from matplotlib.ticker import MaxNLocator  # matplotlib only when drawing

  fig = figure(11, 4)
  axes = fig.subplots(1, 2, sharey=True)
  for ax, when, label in zip(axes, ("init", "trained"), ("at initialisation", "after training")):
    for variant, values in norms.items():
      ys = np.asarray(values.get(when) or [], np.float64)
      ok = np.isfinite(ys) & (ys > 0)  # a log axis cannot show 0 (or a diverged run's NaN)
      if ok.any():
        depth = np.arange(1, len(ys) + 1)
        ax.plot(depth[ok], ys[ok], "o-", markersize=3, label=variant)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (depth; the last is the output layer)")
    ax.set_title(f"gradient norm per layer, {label}")
    ax.grid(alpha=0.3, which="both")
    if ax.has_data():
      ax.legend()
  axes[0].set_ylabel("||dL/dW|| of the layer")
  return save(fig, path, title)


def _points(history: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of the finite, positive values of ``key`` (a chunk whose updates were all dropped logs 0)."""
  pts = [(r["step"], r[key]) for r in history
         if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and r[key] > 0]
  return (np.asarray(pts, np.float64).T if pts else (np.zeros(0), np.zeros(0)))


def plot_training(histories: Mapping[str, Sequence[dict]], path: str | os.PathLike, *,
                  first_skipped: Mapping[str, int] | None = None, title: str = "") -> pathlib.Path:
  """Training loss and global gradient norm against the step, one line per variant (log y).

  Args:
    histories: ``{variant: its metrics.jsonl records}``.
    path: where the PNG goes.
    first_skipped: ``{variant: the first log step with dropped (non-finite) updates}``,
      drawn as a dotted line.
    title: the figure title.

  Returns:
    The path written.
  """
  fig = figure(11, 4)
  axes = fig.subplots(1, 2)
  for ax, key, label in zip(axes, ("train/loss", "train/grad_norm"), ("training loss", "global gradient norm")):
    for i, (variant, history) in enumerate(histories.items()):
      steps, values = _points(history, key)
      line, = ax.plot(steps, values, ".-", markersize=3, label=variant, color=f"C{i}")
      if first_skipped and first_skipped.get(variant, -1) >= 0:
        ax.axvline(first_skipped[variant], color=line.get_color(), linestyle=":",
                   label=f"{variant}: updates dropped (non-finite)")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
  return save(fig, path, title)
