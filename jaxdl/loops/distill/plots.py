"""``distill.png``: the students' test accuracy over training against the teacher's, and the three finals."""

import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from jaxdl.train.plots import figure


def plot_distill(histories: Mapping[str, Sequence[dict]], metrics: Mapping[str, float],
                 path: str | os.PathLike) -> pathlib.Path:
  """Left: ``test/accuracy`` over steps of each student run, the teacher's as a line; right: the finals.

  Args:
    histories: run name -> its ``metrics.jsonl`` records (``scratch``, ``student``).
    metrics: the study's ``metrics.json`` (``test_accuracy``, ``scratch_test_accuracy``,
      ``teacher_test_accuracy``, ``student_params``, ``teacher_params``, ``gap_closed``,
      ``temperature``, ``alpha``).
    path: where the PNG goes.
  """
  fig = figure(10, 3.8)
  left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": (3, 2)})
  labels = {"scratch": "student from scratch", "student": "distilled student"}
  colors = {"scratch": "tab:orange", "student": "tab:blue"}
  for name, history in histories.items():
    points = [(r["step"], r["test/accuracy"]) for r in history if isinstance(r.get("test/accuracy"), (int, float))]
    if points:
      steps, values = np.asarray(points).T
      left.plot(steps, values, "o-", markersize=3, color=colors.get(name), label=labels.get(name, name))
  left.axhline(metrics["teacher_test_accuracy"], color="tab:gray", linestyle="--", label="teacher")
  left.set_xlabel("optimizer step")
  left.set_ylabel("test accuracy")
  left.set_title(f"T={metrics['temperature']:g}, soft weight {metrics['alpha']:g}")
  left.grid(alpha=0.3)
  left.legend()
  names = (f"teacher\n{metrics['teacher_params']:,} params", f"scratch\n{metrics['student_params']:,} params",
           f"distilled\n{metrics['student_params']:,} params")
  values = [metrics["teacher_test_accuracy"], metrics["scratch_test_accuracy"], metrics["test_accuracy"]]
  bars = right.bar(names, values, color=("tab:gray", "tab:orange", "tab:blue"))
  for bar, value in zip(bars, values):
    right.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.3f}", ha="center", va="bottom")
  right.set_ylim(max(0.0, min(values) - 0.15), 1.02)
  right.set_ylabel("final test accuracy")
  gap = metrics["gap_closed"]
  fig.suptitle("distillation: the teacher is no better than the student from scratch" if gap is None
               else f"distillation: {gap:.0%} of the teacher's lead closed")
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path
