"""Configs as code: the defaults every preset starts from, and ``--set``.

A preset is a Python file in ``experiments/`` whose ``get_config()`` returns an
``ml_collections.ConfigDict``, usually ``base_config()`` with a few fields
changed. The keys below exist in every preset, so ``--set train.seed=1`` works
everywhere; a preset's ``model`` section holds that model's own options.
"""

import ast
import importlib.util
import json
import pathlib
import sys
from collections.abc import Iterable
from typing import Any

import ml_collections

from jaxdl.utils.errors import JaxdlError


def base_config() -> ml_collections.ConfigDict:
  """The defaults shared by all supervised presets."""
  config = ml_collections.ConfigDict()
  config.loop = "supervised"  # which training loop runs the preset

  config.train = ml_collections.ConfigDict()
  config.train.seed = 0
  config.train.steps = 1000  # total optimizer steps
  config.train.batch_size = 128  # global batch, split across all devices
  config.train.eval_every = 0  # steps between test-set evaluations; 0: once per epoch
  config.train.log_every = 50  # steps between training-metric logs (one host sync each)
  config.train.eval_batch_size = 1000
  config.train.num_devices = 0  # 0: every device (of every host)
  config.train.label_smoothing = 0.0
  config.train.distributed = False  # call jax.distributed.initialize() first (multi-host)
  config.train.nan_policy = "halt"  # or "skip": drop non-finite updates and go on

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 500  # 0: only at the end
  config.checkpoint.max_to_keep = 3
  config.checkpoint.keep_best = ""  # a metric such as "test/accuracy" to keep the best by
  config.checkpoint.best_mode = "max"
  config.checkpoint.resume = True  # false: refuse a non-empty workdir
  config.checkpoint.async_save = True

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.schedule = "constant"
  config.optim.warmup_steps = 0
  config.optim.final_fraction = 0.0
  config.optim.boundaries = (0.5, 0.75)
  config.optim.decay_factor = 0.1
  config.optim.momentum = 0.9
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.rms_decay = 0.9
  config.optim.weight_decay = 0.0
  config.optim.l1 = 0.0
  config.optim.clip_norm = 0.0

  config.data = ml_collections.ConfigDict()
  config.data.name = "digits"
  config.data.path = ""  # a file or directory for npz / idx / cifar10
  config.data.num_classes = 0  # 0: inferred from the training labels

  config.augment = ml_collections.ConfigDict()
  config.augment.shift = 0
  config.augment.flip = False
  config.augment.noise = 0.0
  config.augment.scale = 0.0
  config.augment.mixup = 0.0

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  return config


# ---------------------------------------------------------------- overrides --

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_like(key: str, text: str, current: Any) -> Any:
  """Parses ``text`` into the type of the field's current value."""

  def wrong(expected: str) -> JaxdlError:
    return JaxdlError(f"--set {key}={text}: expected {expected}")

  if isinstance(current, bool):
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise wrong("a boolean (true/false)")
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise wrong("an integer") from None
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      raise wrong("a number") from None
  if isinstance(current, str):
    return text
  if isinstance(current, (tuple, list)):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise wrong("a tuple such as (32, 64)") from None
    if isinstance(value, (int, float, str)):
      value = (value,)
    if not isinstance(value, (tuple, list)):
      raise wrong("a tuple such as (32, 64)")
    if current and value:
      kind = type(current[0])
      if kind is float and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        value = [float(v) for v in value]
      elif not all(type(v) is kind for v in value):
        raise wrong(f"a tuple of {kind.__name__}")
    return tuple(value)
  if current is None:
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
  raise wrong(type(current).__name__)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
  """Applies ``KEY=VALUE`` strings with dotted keys; unknown keys are errors.

  Args:
    config: the preset's config (modified in place and returned).
    overrides: strings such as ``"optim.learning_rate=3e-4"``.

  Returns:
    The same config.

  Raises:
    JaxdlError: on a malformed item, an unknown key, or a value of the wrong type.
  """
  for item in overrides:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
      raise JaxdlError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.seed=1")
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise JaxdlError(f"--set {key}: unknown key '{'.'.join(parents[:i + 1])}'"
                         f" (known: {', '.join(sorted(node.keys()))})")
      node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise JaxdlError(f"--set {key}: unknown key (known in this section: "
                       f"{', '.join(sorted(node.keys()))})")
    if isinstance(node[leaf], ml_collections.ConfigDict):
      raise JaxdlError(f"--set {key}: is a section, set one of its keys "
                       f"({', '.join(sorted(node[leaf].keys()))})")
    with node.unlocked():
      node[leaf] = _parse_like(key, text.strip(), node[leaf])
  return config


# ------------------------------------------------------------------ presets --


def load_preset(path: str | pathlib.Path) -> tuple[ml_collections.ConfigDict, str]:
  """Loads a preset file and returns (its config, its docstring)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise JaxdlError(f"preset file not found: {path}")
  name = f"_jaxdl_preset_{path.stem}"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
  finally:
    sys.modules.pop(name, None)
  if not hasattr(module, "get_config"):
    raise JaxdlError(f"preset {path} has no get_config()")
  return module.get_config(), (module.__doc__ or "").strip()


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-able plain dict of a config (tuples become lists)."""
  return json.loads(config.to_json())


def flatten(config, prefix: str = "") -> dict[str, Any]:
  """``{'train.seed': 0, ...}`` from a nested config or dict."""
  items = config.items() if hasattr(config, "items") else ()
  flat = {}
  for key, value in items:
    if hasattr(value, "items"):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat
