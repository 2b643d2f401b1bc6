"""The gradient-flow study: variants of a classifier trained as supervised runs, their gradients per layer.

Each variant of ``study.variants`` trains as its own supervised run in
``WORKDIR/<variant>`` (own checkpoints, resumes exactly). Before and after
training the study measures every layer's gradient norm (and output
statistics) on the first ``study.grad_examples`` training examples, with
``jaxdl.diagnostics.layer_report``.

A variant that diverges does not stop the study: under
``train.nan_policy=skip`` its non-finite updates are dropped and counted
(``skipped_steps/<variant>``); under ``halt`` its run stops at the first one,
which the study catches (``diverged_at_step/<variant>``), and the study goes
on with the next variant. Either way ``diverged/<variant>`` is true.
"""

import functools
import json
import math
import pathlib
import time

import jax
import ml_collections
import numpy as np

from jaxdl import diagnostics
from jaxdl.loops import supervised
from jaxdl.loops.grad_flow.config import parse_variants, validate, variant_config
from jaxdl.loops.grad_flow.plots import plot_grad_flow, plot_training
from jaxdl.train.loop import Diverged
from jaxdl.train.writers import console, write_json
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.io import write_atomic

LAYERS_FILE = "layers.json"  # every variant's per-layer statistics, at initialisation and after training


def _reporter(task: supervised.SupervisedTask, examples: int):
  """``state -> layer_report`` on the first ``examples`` training examples, as floats (one compile)."""
  ds = task.dataset
  x, y = ds.x_train[:examples], ds.y_train[:examples]
  report_fn = jax.jit(functools.partial(diagnostics.layer_report, task.model.apply, train=True,
                                        rngs={"dropout": jax.random.PRNGKey(0)}))

  def report(state) -> dict:
    loss, values = jax.device_get(report_fn(jax.device_get(state.variables()), x, y))
    return {"loss": float(loss), **{stat: {k: float(v) for k, v in per.items()} for stat, per in values.items()}}

  return report


def _history(subdir: pathlib.Path) -> list[dict]:
  path = subdir / "metrics.jsonl"
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prepare_variant(name: str, config: ml_collections.ConfigDict, examples: int) -> dict:
  """Builds one variant's supervised run (every bad input fails here) and measures it at initialisation.

  Returns:
    ``config``, ``report`` (state -> per-layer statistics), ``order`` (layers
    in network order), ``weights`` (those with a weight matrix) and ``init``
    (``{"loss": ..., stat: {layer: value}}`` from ``jaxdl.diagnostics.layer_report``).
  """
  try:
    task = supervised.SupervisedTask(config)  # the run's own initial state, to measure it
  except JaxdlError as e:
    raise JaxdlError(f"study.variants '{name}': {e}") from None
  variables = jax.device_get(task.state.variables())
  order = diagnostics.layer_order(task.model.apply, variables, task.dataset.x_train[:2])
  report = _reporter(task, examples)
  return {"config": config, "report": report, "order": order,
          "weights": diagnostics.weight_layers(variables["params"], order), "init": report(task.state)}


def run_variant(variant: dict, subdir: pathlib.Path) -> dict:
  """Trains a prepared variant in ``subdir`` and measures it again; a divergence is recorded, not raised.

  Returns:
    ``variant`` with ``trained`` (None if the run halted), ``final`` (the
    run's metrics.json, empty if it halted), ``history`` (its metrics.jsonl)
    and ``diverged_at`` (-1, or the step it halted at).
  """
  try:
    state, final = supervised.train_and_evaluate(variant["config"], subdir)
    diverged_at = -1
  except Diverged as e:  # train.nan_policy=halt: the run stopped; the study goes on
    console(f"grad_flow: {subdir.name} diverged at step {e.step}: {e}")
    state, final, diverged_at = None, {}, e.step
  trained = variant["report"](state) if state is not None else None
  return {**variant, "trained": trained, "final": final, "history": _history(subdir), "diverged_at": diverged_at}


def _ratio(report: dict | None, order) -> float:
  return diagnostics.first_over_last(report["grad_norm"], order) if report else float("nan")


def _first_skipped(history: list[dict]) -> int:
  return next((r["step"] for r in history if (r.get("train/skipped") or 0) > 0), -1)


def summarize(results: dict[str, dict]) -> dict:
  """The study's flat metrics, ``<metric>/<variant>``."""
  out = {}
  for name, r in results.items():
    final, history = r["final"], r["history"]
    norms = [r2.get("train/grad_norm") for r2 in history]
    norms = [v for v in norms if isinstance(v, (int, float)) and math.isfinite(v)]
    skipped = int(final.get("skipped_steps", 0))
    test_loss = final.get("test_loss", float("nan"))
    out.update({
        f"grad_norm_first_over_last/{name}": _ratio(r["init"], r["order"]),
        f"trained_grad_norm_first_over_last/{name}": _ratio(r["trained"], r["order"]),
        f"test_accuracy/{name}": final.get("test_accuracy", float("nan")),
        f"test_loss/{name}": test_loss,
        f"train_loss/{name}": final.get("train_loss", float("nan")),
        f"init_loss/{name}": r["init"]["loss"],
        f"max_grad_norm/{name}": max(norms, default=float("nan")),
        f"skipped_steps/{name}": skipped,
        f"diverged/{name}": bool(skipped or r["diverged_at"] >= 0 or not math.isfinite(test_loss)),
        f"diverged_at_step/{name}": r["diverged_at"],
    })
  return out


def _layers_record(results: dict[str, dict]) -> dict:
  return {name: {"order": list(r["order"]), "weight_layers": list(r["weights"]), "init": r["init"],
                 "trained": r["trained"]} for name, r in results.items()}


def _plots(results: dict[str, dict], workdir: pathlib.Path, title: str) -> None:
  norms = {}
  for name, r in results.items():
    norms[name] = {when: [r[when]["grad_norm"][k] for k in r["weights"]] if r[when] else None
                   for when in ("init", "trained")}
  plot_grad_flow(norms, workdir / "grad_flow.png", title=title)
  plot_training({n: r["history"] for n, r in results.items()}, workdir / "training.png",
                first_skipped={n: _first_skipped(r["history"]) for n, r in results.items()}, title=title)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> tuple[None, dict]:
  """Trains every variant of ``study.variants`` and compares their gradient flow.

  Writes ``WORKDIR/<variant>/`` (each a supervised run), ``metrics.json``
  (flat, ``<metric>/<variant>``: ``grad_norm_first_over_last`` at
  initialisation, ``trained_grad_norm_first_over_last``, ``test_accuracy``,
  ``max_grad_norm``, ``skipped_steps``, ``diverged``, ...), ``layers.json``
  (every layer's statistics before and after training), ``grad_flow.png``
  (gradient norm per layer against depth) and ``training.png`` (loss and
  gradient norm against the step).

  Returns:
    (None, the metrics).
  """
  validate(config)
  workdir = pathlib.Path(workdir)
  started = time.perf_counter()
  variants = parse_variants(config.study.variants)
  # Every variant is built (and measured at initialisation) before any trains: a bad one fails first.
  prepared = {name: prepare_variant(name, variant_config(config, overrides), config.study.grad_examples)
              for name, overrides in variants.items()}
  results = {}
  for name, variant in prepared.items():
    console(f"grad_flow: variant {name} ({'; '.join(variants[name]) or 'the base config'}) -> {workdir / name}")
    results[name] = run_variant(variant, workdir / name)
  metrics = {**summarize(results), "wall_seconds": time.perf_counter() - started,
             "variants": ",".join(results)}
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "metrics.json", metrics)
    write_atomic(workdir / LAYERS_FILE, json.dumps(_layers_record(results), indent=1) + "\n")
    _plots(results, workdir, title=f"{config.model.name} on {config.data.name}")
  console("grad_flow: " + "  ".join(
      f"{n}: first/last={metrics[f'grad_norm_first_over_last/{n}']:.3g} acc={metrics[f'test_accuracy/{n}']:.3f}"
      + (" DIVERGED" if metrics[f"diverged/{n}"] else "") for n in results) + f" -> {workdir}/metrics.json")
  return None, metrics
