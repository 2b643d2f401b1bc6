"""Figures of explanations: overlay grids for images, shaded line plots for signals (PNG, Agg)."""

import os
import pathlib
from collections.abc import Sequence

import numpy as np

_COLUMNS = 8  # examples per row of a grid


def _figure(width: float, height: float):
  """A standalone figure (no pyplot: a notebook's backend is left alone), as jaxdl.train.plots does."""
  from matplotlib.figure import Figure

  return Figure(figsize=(width, height), layout="constrained")


def normalize_maps(maps: np.ndarray) -> np.ndarray:
  """Each example's map scaled to [0, 1] by its own maximum (all zero stays zero)."""
  maps = np.asarray(maps, np.float64)
  top = maps.reshape(len(maps), -1).max(axis=1)
  top = np.where(top > 0, top, 1.0).reshape((-1,) + (1,) * (maps.ndim - 1))
  return np.clip(maps / top, 0.0, 1.0)


def _label(label: int | None, pred: int) -> tuple[str, str]:
  if label is None:
    return f"pred {pred}", "black"
  return f"true {label} / pred {pred}", "black" if label == pred else "tab:red"


def plot_image_maps(x: np.ndarray, maps: np.ndarray, labels: Sequence[int] | None, preds: Sequence[int],
                    path: str | os.PathLike, *, title: str = "", alpha: float = 0.55) -> pathlib.Path:
  """A grid of images (B, H, W, C) over their maps (B, H, W): each input, and below it the map laid over it.

  Titles give the true and predicted classes (red where they differ). The
  grid is drawn as one mosaic image in one axes: 32 axes with a constrained
  layout took seconds to draw on a busy 2-core CPU.
  """
  from matplotlib import colormaps

  x, maps = np.asarray(x, np.float64), normalize_maps(maps)
  n, height, width = x.shape[:3]
  cols = min(_COLUMNS, n)
  groups = -(-n // cols)
  gap, band = max(1, width // 8), max(3, height // 2)  # pixels between cells; above each input, for its title
  cell_h, cell_w = band + 2 * height + gap, width + gap
  mosaic = np.ones((groups * cell_h, cols * cell_w, 3))
  heat = colormaps["inferno"]
  fig = _figure(1.3 * cols, 1.3 * cols * groups * cell_h / (cols * cell_w) + (0.3 if title else 0))
  ax = fig.subplots()
  for i in range(n):
    top, left = (i // cols) * cell_h + band, (i % cols) * cell_w
    gray = _displayable(x[i])
    rgb = np.repeat(gray[..., None], 3, axis=-1) if gray.ndim == 2 else gray  # (H, W, 3)
    mosaic[top:top + height, left:left + width] = rgb
    overlay = (1 - alpha) * rgb + alpha * heat(maps[i])[..., :3]
    mosaic[top + height:top + 2 * height, left:left + width] = overlay
    text, color = _label(None if labels is None else int(labels[i]), int(preds[i]))
    ax.text(left + width / 2 - 0.5, top - 0.8, text, ha="center", va="bottom", fontsize=6.5, color=color)
  ax.imshow(mosaic, interpolation="nearest")
  ax.set_axis_off()
  if title:
    ax.set_title(title, fontsize=10)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path


def _displayable(image: np.ndarray) -> np.ndarray:
  """(H, W) for one channel, (H, W, 3) for colour, each scaled to [0, 1] by its own range."""
  image = image[..., 0] if image.shape[-1] == 1 else image[..., :3]
  low, high = image.min(), image.max()
  return (image - low) / (high - low) if high > low else np.zeros_like(image)


def plot_signal_maps(x: np.ndarray, maps: np.ndarray, labels: Sequence[int] | None, preds: Sequence[int],
                     path: str | os.PathLike, *, title: str = "") -> pathlib.Path:
  """Signals (B, L, C) as lines, the attribution (B, L) shaded under the first channel's line.

  The area between the curve and the panel's floor is coloured by the
  map (dark: none, bright: the most attributed sample of that example).
  """
  x, maps = np.asarray(x, np.float64), normalize_maps(maps)
  if x.ndim == 2:  # vectors: one channel
    x = x[:, :, None]
  n = len(x)
  cols = min(4, n)
  rows = -(-n // cols)
  fig = _figure(3.2 * cols, 1.9 * rows + (0.4 if title else 0))
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax in axes.flat:
    ax.set_axis_off()
  t = np.arange(x.shape[1])
  for i in range(n):
    ax = axes[i // cols, i % cols]
    ax.set_axis_on()
    signal = x[i, :, 0]
    low, high = float(x[i].min()), float(x[i].max())
    pad = 0.05 * (high - low or 1.0)
    floor = low - pad
    shade = ax.imshow(maps[i][None, :], cmap="inferno", vmin=0.0, vmax=1.0, aspect="auto",
                      extent=(-0.5, len(t) - 0.5, floor, high + pad), origin="lower", interpolation="nearest")
    area = ax.fill_between(t, floor, signal, facecolor="none", edgecolor="none")
    shade.set_clip_path(area.get_paths()[0], transform=ax.transData)
    for c in range(x.shape[2]):
      ax.plot(t, x[i, :, c], color="tab:blue" if c == 0 else "gray", linewidth=1.2 if c == 0 else 0.8)
    ax.set_xlim(-0.5, len(t) - 0.5)
    ax.set_ylim(floor, high + pad)
    ax.set_yticks([])
    text, color = _label(None if labels is None else int(labels[i]), int(preds[i]))
    ax.set_title(text, fontsize=8, color=color)
  if title:
    fig.suptitle(title, fontsize=10)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path


def plot_cascade(curves: dict[str, Sequence[float]], layers: Sequence[str], path: str | os.PathLike, *,
                 title: str = "") -> pathlib.Path:
  """Rank correlation with the trained model's maps after each randomisation stage, one line per method."""
  fig = _figure(max(5.0, 0.45 * len(layers) + 2), 3.6)
  ax = fig.subplots()
  for name, values in curves.items():
    ax.plot(np.arange(len(values)), values, "o-", markersize=3, label=name)
  ax.axhline(0.5, color="gray", linestyle=":", linewidth=1)
  ax.set_xticks(np.arange(len(layers)), [f"+{name}" for name in layers], rotation=60, ha="right", fontsize=7)
  ax.set_ylabel("Spearman rank correlation")
  ax.set_xlabel("layers randomised, from the output down (cumulative)")
  ax.set_ylim(-0.2, 1.05)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=10)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path
