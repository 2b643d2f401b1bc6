"""Figures as PNG: learning curves, attention maps, per-step gradient norms."""

import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np


def plot_learning_curves(history: Sequence[dict], path: str | os.PathLike, *, title: str = "",
                         test_label: str = "test") -> pathlib.Path:
  """Draws one panel per metric name with its train and test curves.

  Args:
    history: records like ``{"step": 10, "train/loss": 0.3, "test/accuracy": 0.9}``.
    path: where the PNG goes.
    title: the figure title (e.g. the preset name).
    test_label: what the held-out curve is called (the LM's is "validation").

  Returns:
    The path written.
  """
  names = sorted({k.split("/", 1)[1] for r in history for k in r if "/" in k}
                 & {"loss", "accuracy", "bpc", "rmse"}) or ["loss"]
  fig = figure(5 * len(names), 3.6)
  axes = fig.subplots(1, len(names), squeeze=False)
  for ax, name in zip(axes[0], names):
    for split, style in (("train", "-"), ("test", "o-")):
      key = f"{split}/{name}"
      points = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
      if points:
        steps, values = np.asarray(points).T
        ax.plot(steps, values, style, label=test_label if split == "test" else split, markersize=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(name)
    if name in ("loss", "bpc"):
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
  return save(fig, path, title)


def save(fig, path: str | os.PathLike, title: str = "") -> pathlib.Path:
  """Writes ``fig`` to ``path`` as a PNG (110 dpi), with ``title`` above it if given; returns the path."""
  if title:
    fig.suptitle(title)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path


def figure(width: float, height: float):
  """A standalone figure: no pyplot, so the global backend (a notebook's
  inline one, say) is left as it is, and nothing needs closing."""
  from matplotlib.figure import Figure

  return Figure(figsize=(width, height), layout="constrained")


def plot_attention_maps(maps, path: str | os.PathLike, *, tokens: Sequence[str] | None = None,
                        title: str = "") -> pathlib.Path:
  """Draws attention weights, one panel per layer (rows) and head (columns).

  Args:
    maps: weights for one input, (layers, heads, T, T) or (heads, T, T); row
      t is query t's distribution over the keys.
    path: where the PNG goes.
    tokens: labels for the T positions (e.g. characters), or None for indices.
    title: the figure title.

  Returns:
    The path written.
  """
  maps = np.asarray(maps, np.float32)
  if maps.ndim == 3:
    maps = maps[None]
  layers, heads, steps, _ = maps.shape
  if tokens is not None and len(tokens) != steps:
    raise ValueError(f"{len(tokens)} token labels for {steps} positions")
  fig = figure(2.6 * heads + 0.6, 2.6 * layers + 0.6)
  axes = fig.subplots(layers, heads, squeeze=False)
  for i in range(layers):
    for h in range(heads):
      ax = axes[i, h]
      ax.imshow(maps[i, h], cmap="viridis", vmin=0.0, aspect="equal", interpolation="nearest")
      ax.set_title(f"layer {i} head {h}", fontsize=8)
      if tokens is not None and steps <= 64:
        # A space shows as an open box, a newline as \n.
        labels = ["\u2423" if c == " " else repr(c)[1:-1] for c in tokens]
        size = 6 if steps <= 32 else 4
        ax.set_xticks(range(steps), labels, fontsize=size, rotation=90)
        ax.set_yticks(range(steps), labels, fontsize=size)
      else:
        ax.tick_params(labelsize=6)
      if h == 0:
        ax.set_ylabel("query", fontsize=7)
      if i == layers - 1:
        ax.set_xlabel("key", fontsize=7)
  if title:
    fig.suptitle(title)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=130)
  return path


def plot_gradient_norms(curves: Mapping[str, Sequence[float]], path: str | os.PathLike, *,
                        title: str = "") -> pathlib.Path:
  """Draws ``||dL/dx_t||`` against the time step t, one line per model, log scale.

  Args:
    curves: model name -> per-step gradient norms (T,).
    path: where the PNG goes.
    title: the figure title.

  Returns:
    The path written.
  """
  fig = figure(6, 3.6)
  ax = fig.subplots()
  for name, norms in curves.items():
    norms = np.asarray(norms, np.float64)
    ax.plot(np.arange(len(norms)), np.maximum(norms, 1e-30), "o-", markersize=2.5, label=name)
  ax.set_yscale("log")
  ax.set_xlabel("input time step t")
  ax.set_ylabel("mean ||dL / dx_t||")
  ax.grid(alpha=0.3)
  ax.legend()
  if title:
    ax.set_title(title)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path
