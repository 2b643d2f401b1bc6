"""The GAN's pictures: samples over the true modes, digit grids, metrics over training."""

import pathlib
import textwrap

import numpy as np

from jaxdl.train.plots import figure, save


def plot_samples_2d(samples: np.ndarray, centers: np.ndarray, path, *, title: str = "",
                    reference_label: str = "modes") -> pathlib.Path:
  """A scatter of generated points over the true modes (or other reference points), as PNG."""
  fig = figure(4.2, 4.2)
  ax = fig.subplots()
  ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5, color="tab:blue", label="generated")
  ax.scatter(centers[:, 0], centers[:, 1], s=40, marker="x", color="tab:red", label=reference_label)
  span = np.abs(centers).max() * 1.35
  ax.set_xlim(-span, span)
  ax.set_ylim(-span, span)
  ax.set_aspect("equal")
  ax.legend(loc="upper right", fontsize=7)
  if title:
    ax.set_title(textwrap.fill(title, 52), fontsize=9)  # wrapped: a 4-inch figure cuts long lines
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path


def plot_image_grid(images: np.ndarray, path, *, rows: int = 8, title: str = "") -> pathlib.Path:
  """The first rows x rows images (N, H, W, 1) in [0, 1] as one grey PNG."""
  n = rows * rows
  h, w = images.shape[1:3]
  grid = np.full((rows * (h + 1) + 1, rows * (w + 1) + 1), 0.25)  # light grey lines between images
  for i, img in enumerate(np.asarray(images[:n])):
    r, c = divmod(i, rows)
    grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = img[..., 0]
  fig = figure(4.2, 4.4)
  ax = fig.subplots()
  ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
  ax.set_axis_off()
  if title:
    ax.set_title(textwrap.fill(title, 52), fontsize=9)  # wrapped: a 4-inch figure cuts long lines
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path


def plot_gan_metrics(history, path, *, title: str = "") -> pathlib.Path:
  """One panel per evaluation metric over training, and one for the losses."""
  keys = sorted({k for r in history for k in r if k.startswith("test/")})
  fig = figure(3.6 * (len(keys) + 1), 3.2)
  axes = np.atleast_1d(fig.subplots(1, len(keys) + 1))
  for key in ("train/d_loss", "train/g_loss"):
    points = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
    if points:
      axes[0].plot(*np.asarray(points).T, label=key.split("/")[1])
  axes[0].set_title("losses", fontsize=9)
  axes[0].legend(fontsize=7)
  for ax, key in zip(axes[1:], keys):
    points = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
    if points:
      ax.plot(*np.asarray(points).T, "o-", markersize=3)
    ax.set_title(key.split("/")[1], fontsize=9)
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  return save(fig, path, title)
