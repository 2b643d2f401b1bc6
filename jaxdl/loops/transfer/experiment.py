"""The transfer study: pretrain on some classes, fine-tune on others with few labels, against scratch.

Three supervised runs, each in its own subdirectory (own checkpoints, exact
resume), on data built here and passed in memory:

- ``WORKDIR/pretrain``: the model on ``transfer.source_classes``, every
  training label, tested on their test examples;
- ``WORKDIR/finetune``: the same model with a new head for
  ``transfer.target_classes``, its backbone (every param but the head)
  restored from the pretrained run (``init.*``), trained on
  ``transfer.labels_per_class`` labels per class, its backbone at
  ``transfer.backbone_lr_multiplier`` times the rate (0: frozen);
- ``WORKDIR/scratch``: the same model, seed and budget on the same labels,
  from its initialisation.

Both target runs are tested on the target classes' test examples. The study
writes ``WORKDIR/metrics.json`` and ``WORKDIR/transfer.png``.
"""

import json
import pathlib
import time

import ml_collections

from jaxdl import data as data_lib
from jaxdl.data import subsets
from jaxdl.loops import supervised
from jaxdl.loops.transfer.config import (OWN, backbone_options, head_patterns, run_config, target_model_paths,
                                         validate)
from jaxdl.loops.transfer.plots import plot_transfer
from jaxdl.train.writers import console, write_json

RUNS = ("pretrain", "finetune", "scratch")  # the sub-runs, in the order they train


def build_data(config: ml_collections.ConfigDict) -> tuple[data_lib.Dataset, data_lib.Dataset]:
  """(the source task: every label of its classes; the target task: a few labels per class, every test example)."""
  tr = config[OWN]
  ds = data_lib.load_dataset(config.data.name, config.data.path or None, num_classes=config.data.num_classes)
  source = subsets.select_classes(ds, tr.source_classes)
  target = subsets.labels_per_class(subsets.select_classes(ds, tr.target_classes), tr.labels_per_class,
                                     seed=tr.subset_seed)
  return source, target


def run_configs(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                target: data_lib.Dataset) -> tuple[dict[str, ml_collections.ConfigDict], tuple[str, ...]]:
  """Each sub-run's supervised config, checked before anything trains, and the new head's patterns."""
  tr = config[OWN]
  paths = target_model_paths(config, target.x_train)
  head = head_patterns(config, paths)
  configs = {
      "pretrain": run_config(config, steps=tr.pretrain_steps, batch_size=tr.pretrain_batch_size,
                             eval_every=tr.pretrain_steps),
      "finetune": run_config(config, init_workdir=str((workdir / "pretrain").absolute()), exclude=head,
                             **backbone_options(config, paths, head)),
      "scratch": run_config(config),
  }
  return configs, head


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> tuple[None, dict]:
  """Runs the study in ``workdir``; returns (None, the metrics written to ``metrics.json``).

  Keys: ``test_accuracy`` (fine-tuned, target classes), ``scratch_test_accuracy``,
  ``pretrain_test_accuracy`` (source classes), ``transfer_gain`` (the first
  minus the second), the choices (``backbone_lr_multiplier``, ``head``,
  classes, labels, steps) and the fine-tuned run's ``params_sha256``.
  """
  validate(config)
  t0 = time.perf_counter()
  workdir = pathlib.Path(workdir)
  source, target = build_data(config)
  configs, head = run_configs(config, workdir, target)
  results = {}
  for name in RUNS:
    console(f"jaxdl: transfer: {name} run -> {workdir / name}")
    _, results[name] = supervised.train_and_evaluate(configs[name], workdir / name,
                                                     data=source if name == "pretrain" else target)
  metrics = _metrics(config, results, head, source, target, time.perf_counter() - t0)
  write_json(workdir / "metrics.json", metrics)
  plot_transfer({name: _history(workdir / name) for name in ("finetune", "scratch")}, metrics,
                workdir / "transfer.png")
  console(f"transfer: fine-tuned {metrics['test_accuracy']:.4f} vs scratch {metrics['scratch_test_accuracy']:.4f} "
          f"({metrics['transfer_gain'] * 100:+.1f} points; pretrained {metrics['pretrain_test_accuracy']:.4f} on "
          f"the source classes) in {metrics['wall_seconds']:.0f} s -> {workdir}/metrics.json")
  return None, metrics


def _metrics(config, results: dict, head, source, target, seconds: float) -> dict:
  tr, fine, scratch, pre = config[OWN], results["finetune"], results["scratch"], results["pretrain"]
  return {
      "test_accuracy": fine["test_accuracy"],
      "scratch_test_accuracy": scratch["test_accuracy"],
      "pretrain_test_accuracy": pre["test_accuracy"],
      "transfer_gain": fine["test_accuracy"] - scratch["test_accuracy"],
      "test_loss": fine["test_loss"],
      "scratch_test_loss": scratch["test_loss"],
      "backbone_lr_multiplier": float(tr.backbone_lr_multiplier),
      "head": list(head),
      "restored_arrays": fine.get("init_restored", 0),
      "source_classes": list(tr.source_classes),
      "target_classes": list(tr.target_classes),
      "labels_per_class": tr.labels_per_class,
      "train_examples": target.num_train,
      "test_examples": target.num_test,
      "pretrain_examples": source.num_train,
      "steps": fine["steps"],
      "pretrain_steps": pre["steps"],
      "wall_seconds": seconds,
      "run_seconds": {name: results[name]["wall_seconds"] for name in RUNS},
      "seed": config.train.seed,
      "model": config.model.name,
      "param_count": fine["param_count"],
      "params_sha256": fine["params_sha256"],
  }


def _history(subdir: pathlib.Path) -> list[dict]:
  path = subdir / "metrics.jsonl"
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
