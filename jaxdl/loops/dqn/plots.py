"""Learning curves across seeds: the mean, the spread, and every seed."""

import os
import pathlib
import warnings
from collections.abc import Sequence

import numpy as np

from jaxdl.train.plots import figure


def _curve(history: Sequence[dict], prefix: str, num_seeds: int):
  """(steps, values (T, S)) of the records holding every seed's ``prefix/seed{i}``."""
  keys = [f"{prefix}/seed{i}" for i in range(num_seeds)]
  rows = [(r["step"], [r[k] if isinstance(r[k], (int, float)) else np.nan for k in keys])
          for r in history if all(k in r for k in keys)]
  if not rows:
    return np.zeros((0,)), np.zeros((0, num_seeds))
  steps, values = zip(*rows)
  return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def plot_returns(history: Sequence[dict], path: str | os.PathLike, *, num_seeds: int, env_steps_per_step: int,
                 title: str = "", reported: float | None = None, reported_label: str = "reported") -> pathlib.Path:
  """Episode return against environment steps (per seed): mean, min-max band, seeds.

  Training returns (epsilon-greedy, from ``train/episode_return/seed{i}``)
  are drawn as a line with the band between the worst and best seed; greedy
  evaluations (``test/return/seed{i}``) as points with error bars (one std
  across seeds). ``reported``, the return the run reports (metrics.json's
  ``eval_return_mean``), is a dashed line, so the headline number is on the plot.
  """

  fig = figure(6.4, 3.8)
  ax = fig.subplots()
  steps, values = _curve(history, "train/episode_return", num_seeds)
  if len(steps):
    x = steps * env_steps_per_step
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # chunks where no episode ended (NaN)
      for s in range(num_seeds):
        ax.plot(x, values[:, s], color="tab:blue", alpha=0.15, linewidth=0.8)
      mean = np.nanmean(values, axis=1)
      ax.fill_between(x, np.nanmin(values, axis=1), np.nanmax(values, axis=1), color="tab:blue", alpha=0.2,
                      label="train (min-max over seeds)")
      ax.plot(x, mean, color="tab:blue", label=f"train (mean of {num_seeds} seeds)")
  steps, values = _curve(history, "test/return", num_seeds)
  if len(steps):
    ax.errorbar(steps * env_steps_per_step, values.mean(axis=1), yerr=values.std(axis=1), fmt="o",
                color="tab:orange", capsize=3, label="greedy eval (mean +- std)")
  if reported is not None:
    ax.axhline(reported, color="tab:green", linestyle="--", linewidth=1,
               label=f"{reported_label}: {reported:.1f}")
  ax.set_xlabel("environment steps per seed")
  ax.set_ylabel("episode return")
  ax.grid(alpha=0.3)
  ax.legend(loc="best", fontsize=8)
  if title:
    ax.set_title(title)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path
