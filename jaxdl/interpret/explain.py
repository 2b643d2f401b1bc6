"""One explanation of a trained classifier: maps, their checks, a PNG and a JSON (``jaxdl explain``).

    result = explain(model, variables, x, y, method="integrated_gradients", out_dir="runs/x/explain")
"""

import functools
import json
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data as data_lib
from jaxdl.interpret import gradcam as gradcam_lib
from jaxdl.interpret import gradients, plots, rollout, sanity
from jaxdl.interpret.common import as_apply, as_module, logits_of
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.io import write_atomic

METHODS: dict[str, Callable[..., Any]] = {
    "gradient": gradients.gradient,
    "gradient_x_input": gradients.gradient_x_input,
    "smoothgrad": gradients.smoothgrad,
    "integrated_gradients": gradients.integrated_gradients,
    "gradcam": gradcam_lib.gradcam,
    "attention_rollout": rollout.attention_rollout,
}
DATA_FILE = "data.json"  # what a supervised run trained on (jaxdl.train.workdir.DATA_FILE)


def get_method(method: str) -> Callable[..., Any]:
  """The attribution function called ``method`` (a key of :data:`METHODS`)."""
  try:
    return METHODS[method]
  except (KeyError, TypeError):
    raise JaxdlError(f"unknown attribution method {method!r} (choices: {', '.join(METHODS)})") from None


def saliency_map(attributions: jax.Array, x: jax.Array) -> jax.Array:
  """(B, *spatial) maps for display and comparison.

  Per-element attributions (the input's shape) become their absolute value
  summed over channels, as Adebayo et al. compare them; maps that are
  already spatial (Grad-CAM, rollout) pass through.
  """
  if attributions.shape == x.shape and x.ndim >= 3:
    return jnp.sum(jnp.abs(attributions), axis=-1)
  if attributions.shape == x.shape:
    return jnp.abs(attributions)  # vectors (B, D): each feature is a position
  return attributions


def attribute(method: str, model: Any, variables: Any, x: jax.Array, target_class: Any | None = None,
              **options: Any) -> jax.Array:
  """Attributions of ``method``: (B, ...) of the input's shape, or (B, *spatial) for Grad-CAM and rollout.

  ``options`` go to the method (``steps=``, ``baseline=``, ``samples=``,
  ``noise=``, ``layer=``, ...); Integrated Gradients' attributions are its
  :class:`~jaxdl.interpret.gradients.IGResult`'s.
  """
  out = get_method(method)(model, variables, x, target_class, **options)
  return out.attributions if isinstance(out, gradients.IGResult) else out


def explain(model: Any, variables: Any, x: Any, labels: Any | None = None, *, method: str = "gradient",
            out_dir: str | os.PathLike | None = None, sanity_check: bool = True, key: jax.Array | None = None,
            title: str = "", **options: Any) -> dict:
  """Explains the predicted class of each input, checks the maps, and writes ``<method>.png`` and ``.json``.

  Args:
    model: the Flax module (the sanity check re-initialises it).
    variables: its trained variables.
    x: inputs (B, ...).
    labels: their true classes (B,), for the figure and the accuracy; optional.
    method: a key of :data:`METHODS`.
    out_dir: where the PNG and JSON go (created); None writes nothing.
    sanity_check: run the cascading randomisation (Adebayo et al. 2018).
    key: PRNG key of SmoothGrad's noise and the re-initialisation (default
      ``PRNGKey(0)``).
    title: the figure's title.
    **options: passed to the method.

  Returns:
    The JSON's record: ``method``, ``examples``, ``predictions``, ``labels``,
    ``accuracy``, ``sanity_rank_correlation`` (after full randomisation),
    ``sanity_cascade`` (per stage), ``completeness_error`` (mean; IG only),
    ``maps`` (the (B, *spatial) array; not written to the JSON), ...
  """
  fn = get_method(method)
  module = as_module(model, f"explain (method {method!r})")
  x = jnp.asarray(x, jnp.float32)
  key = jax.random.PRNGKey(0) if key is None else key
  noise_key, init_key = jax.random.split(key)
  if method == "smoothgrad":
    options.setdefault("key", noise_key)
  t0 = time.perf_counter()
  layer = _precheck(method, module, variables, x, options)

  run = _runner(fn, module, options)
  maps, errors, preds = jax.tree_util.tree_map(np.asarray, run(variables, x, np.full(x.shape[0], -1, np.int32)))
  record = {"method": method, "examples": int(x.shape[0]), "predictions": preds.tolist(),
            "input_shape": list(x.shape[1:]),
            **{k: v for k, v in options.items() if isinstance(v, (bool, int, float, str))}}
  if labels is not None:
    labels = np.asarray(labels).astype(int)
    record["labels"] = labels.tolist()
    record["accuracy"] = float(np.mean(labels == preds))
  if method == "integrated_gradients":
    record.update(completeness_error=float(errors.mean()), completeness_error_max=float(errors.max()),
                  steps=options.get("steps", gradients.IG_STEPS), baseline=str(options.get("baseline", "zeros")))
  if layer is not None:
    record["layer"] = layer
  if sanity_check:
    result = sanity.cascading_randomization(lambda v: run(v, x, preds)[0], module, variables, x, key=init_key)
    record["sanity_rank_correlation"] = result.full
    record["sanity_cascade"] = [{"layer": name, "rank_correlation": r}
                                for name, r in zip(result.layers, result.rank_correlation)]
  record["seconds"] = round(time.perf_counter() - t0, 3)
  if out_dir is not None:
    _write(record, maps, np.asarray(x), labels, pathlib.Path(out_dir), title)
  record["maps"] = maps
  return record


def _runner(fn: Callable[..., Any], module: Any, options: dict) -> Callable[..., tuple]:
  """``run(variables, x, given) -> (maps, IG's completeness errors, the classes explained)``, jitted.

  The classes are ``given``, or the prediction where ``given`` is -1. One
  compile serves the trained model and every randomisation stage.
  """

  @jax.jit
  def run(v, z, given):
    preds = jnp.argmax(logits_of(as_apply(module), v, z), axis=-1).astype(jnp.int32)
    target = jnp.where(given >= 0, given, preds)
    out = fn(module, v, z, target, **options)
    attributions = out.attributions if isinstance(out, gradients.IGResult) else out
    errors = out.completeness_error if isinstance(out, gradients.IGResult) else jnp.zeros(())
    return saliency_map(attributions, z), errors, target

  return run


def _precheck(method: str, module: Any, variables: Any, x: jax.Array, options: dict) -> str | None:
  """Fails fast (abstractly, no compile) where the method does not fit the model; Grad-CAM's layer."""
  if method == "gradcam":
    return gradcam_lib.resolve_layer(module, variables, x[:1], options.get("layer"))[0]
  if method == "attention_rollout":
    jax.eval_shape(functools.partial(rollout.attention_weights, module), variables, x[:1])
  return None


def _write(record: dict, maps: np.ndarray, x: np.ndarray, labels: np.ndarray | None, out_dir: pathlib.Path,
           title: str) -> None:
  out_dir.mkdir(parents=True, exist_ok=True)
  method, preds = record["method"], record["predictions"]
  title = title or method
  if x.ndim == 4:
    plots.plot_image_maps(x, maps, labels, preds, out_dir / f"{method}.png", title=title)
  else:
    plots.plot_signal_maps(x, maps, labels, preds, out_dir / f"{method}.png", title=title)
  write_atomic(out_dir / f"{method}.json", json.dumps(_jsonable(record), indent=2, sort_keys=True) + "\n")


def _jsonable(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, float) and not np.isfinite(value):
    return None  # JSON has no NaN
  if isinstance(value, (np.generic, jax.Array)):
    return _jsonable(np.asarray(value).tolist())
  return value


def check_classifier_workdir(workdir: str | os.PathLike) -> None:
  """Refuses, in one line, a workdir that holds no trained classifier (before anything is loaded).

  Raises:
    JaxdlError: no such directory, no config.json, not a supervised run
      (an lm, gan, dqn or alphazero run), a regression, or no checkpoint.
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise JaxdlError(f"{workdir}: no such directory; expected the workdir of a trained classifier run")
  if not (workdir / "config.json").is_file():
    inner = sorted(p.parent.name for p in workdir.glob("*/config.json"))
    hint = f" (its sub-runs: {', '.join(inner)}: explain one of them)" if inner else ""
    raise JaxdlError(f"{workdir} holds no run (no config.json){hint}")
  try:
    saved = json.loads((workdir / "config.json").read_text())
  except ValueError as e:
    raise JaxdlError(f"{workdir / 'config.json'} is unreadable ({e})") from None
  loop = saved.get("loop", "supervised")
  if loop != "supervised":
    raise JaxdlError(f"{workdir} holds a '{loop}' run, not a classifier; jaxdl explain reads the "
                     f"supervised loop's classifier runs")
  if saved.get("train", {}).get("task", "classification") != "classification":
    raise JaxdlError(f"{workdir} holds a regression run: jaxdl explain attributes a class's logit, which a "
                     f"regression has not (from Python: jaxdl.interpret.gradient(run.model, run.variables, x, 0))")
  checkpoints = workdir / "checkpoints"
  if not checkpoints.is_dir() or not any(p.name.isdigit() for p in checkpoints.iterdir()):
    raise JaxdlError(f"{workdir} has no checkpoint (checkpoints/ is missing or empty): train it first "
                     f"(jaxdl run PRESET --workdir {workdir})")


def test_examples(config: Any, workdir: str | os.PathLike, n: int) -> tuple[np.ndarray, np.ndarray]:
  """The first ``n`` test examples (x, y) of the data a run trained on, reloaded from its config.

  Raises:
    JaxdlError: ``n < 1``; the run trained on arrays passed in from Python
      (which only Python can hand back), or on data that has changed since
      (its SHA-256 no longer matches the run's ``data.json``).
  """
  if n < 1:
    raise JaxdlError(f"--examples {n}: explain at least one example")
  workdir = pathlib.Path(workdir)
  name, path = str(config.data.name), str(config.data.get("path", "") or "")
  in_memory = (f"the run in {workdir} trained on in-memory data {name!r} (jaxdl.Dataset.from_arrays), "
               f"which cannot be reloaded from its config; explain it from Python: "
               f"jaxdl.interpret.explain(run.model, run.variables, x_test, y_test)")
  if name.strip().lower() not in data_lib.DATASETS:
    raise JaxdlError(in_memory)
  ds = data_lib.load_dataset(name, path or None, num_classes=config.data.get("num_classes", 0))
  if ds.lengths_test is not None or ds.vocab_size:  # the attributions differentiate fixed-shape float inputs
    raise JaxdlError(f"the run in {workdir} trained on {'token ids' if ds.vocab_size else 'padded sequences'} "
                     f"({name!r}); jaxdl explain attributes fixed-shape float inputs")
  record_path = workdir / DATA_FILE
  if record_path.is_file():
    saved = json.loads(record_path.read_text()).get("sha256")
    if saved and saved != ds.sha256:
      raise JaxdlError(f"the run in {workdir} did not train on {name!r} as it loads now (data.json's sha256 "
                       f"{saved[:12]}... is not {ds.sha256[:12]}...): its arrays came from Python (explain "
                       f"them there: jaxdl.interpret.explain(run.model, run.variables, x_test, y_test)) "
                       f"or its files changed")
  return ds.x_test[:n], ds.y_test[:n]
