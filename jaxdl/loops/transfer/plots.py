"""``transfer.png``: test accuracy over training, fine-tuned against scratch, and the three runs' finals."""

import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from jaxdl.train.plots import figure


def plot_transfer(histories: Mapping[str, Sequence[dict]], metrics: Mapping[str, float],
                  path: str | os.PathLike) -> pathlib.Path:
  """Left: ``test/accuracy`` over steps of each run in ``histories``; right: the final accuracies.

  Args:
    histories: run name -> its ``metrics.jsonl`` records (``finetune``, ``scratch``).
    metrics: the study's ``metrics.json`` (``test_accuracy``, ``scratch_test_accuracy``,
      ``pretrain_test_accuracy``, ``labels_per_class``).
    path: where the PNG goes.
  """
  fig = figure(10, 3.8)
  left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": (3, 2)})
  labels = {"finetune": "fine-tuned (pretrained backbone)", "scratch": "from scratch"}
  for name, history in histories.items():
    points = [(r["step"], r["test/accuracy"]) for r in history if isinstance(r.get("test/accuracy"), (int, float))]
    if points:
      steps, values = np.asarray(points).T
      left.plot(steps, values, "o-", markersize=3, label=labels.get(name, name))
  left.set_xlabel("optimizer step")
  left.set_ylabel("test accuracy (target classes)")
  left.set_title(f"{metrics['labels_per_class']} labels per class")
  left.grid(alpha=0.3)
  left.legend()
  names = ("pretrained\n(source classes)", "from scratch", "fine-tuned")
  values = [metrics["pretrain_test_accuracy"], metrics["scratch_test_accuracy"], metrics["test_accuracy"]]
  bars = right.bar(names, values, color=("tab:gray", "tab:orange", "tab:blue"))
  for bar, value in zip(bars, values):
    right.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.3f}", ha="center", va="bottom")
  right.set_ylim(0, 1.08)
  right.set_ylabel("final test accuracy")
  fig.suptitle(f"transfer: {metrics['transfer_gain'] * 100:+.1f} points over scratch")
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path
