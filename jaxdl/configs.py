"""Configs as code: the sections loops share, ``--set``, presets, the key check.

A preset is a Python file whose ``get_config()`` returns an
``ml_collections.ConfigDict``: its loop's ``default_config()`` with a few
fields changed. Each loop owns its schema (``jaxdl.loops.<name>.config``),
built from the shared sections here; a key that the loop does not read is an
error (:func:`check_keys`), on the command line and in a preset alike.
"""

import ast
import importlib.util
import json
import os
import pathlib
import sys
from collections.abc import Iterable
from typing import Any

import ml_collections

from jaxdl.utils.errors import JaxdlError

# A preset's value for a key that its loop derives from the data (the lm loop's
# train.steps, model.dropout, optim.weight_decay): --set replaces it by a number.
AUTO = "auto"


def auto() -> ml_collections.FieldReference:
  """A field left at ``'auto'`` for the loop to derive, which also takes the number that replaces it.

  ``ConfigDict`` fixes a field's type at its first value; this one's is
  ``object``, so ``config.train.steps = auto()`` in a preset and
  ``--set train.steps=3000`` later both work.
  """
  return ml_collections.FieldReference(AUTO, field_type=object)


def train_section() -> ml_collections.ConfigDict:
  """``train.*`` keys that every loop trained by ``jaxdl.train.fit`` over a device mesh reads."""
  train = ml_collections.ConfigDict()
  train.seed = 0
  train.steps = 1000  # total optimizer steps
  train.batch_size = 128  # global batch, split across all devices
  train.eval_every = 0  # steps between evaluations; 0: the loop's default (see its config)
  train.log_every = 50  # steps between training-metric logs (one host sync each)
  train.num_devices = 0  # 0: every device (of every host)
  train.distributed = False  # call jax.distributed.initialize() first (multi-host)
  train.distributed_timeout_s = 300  # how long to wait for the other processes and the coordinator
  train.nan_policy = "halt"  # or "skip": drop non-finite updates and go on
  train.sharding = "replicated"  # or "fsdp": params and optimizer state split over the devices (jaxdl.train.sharding)
  train.compile_cache = True  # JAX's persistent compilation cache in $JAXDL_CACHE_DIR/xla (jaxdl.train.compile)
  train.dtype = "float32"  # or "bfloat16": the model computes in it; params, optimizer and loss stay float32
  train.accumulate_steps = 1  # k > 1: each step averages the gradients of k micro-batches of batch_size / k
  return train


def checkpoint_section() -> ml_collections.ConfigDict:
  """``checkpoint.*``: every loop's checkpoints (``jaxdl.checkpoint`` through ``fit``)."""
  checkpoint = ml_collections.ConfigDict()
  checkpoint.every_steps = 500  # 0: only at the end
  checkpoint.max_to_keep = 3
  checkpoint.keep_best = ""  # a metric such as "test/accuracy" to keep the best by
  checkpoint.best_mode = "max"
  checkpoint.resume = True  # false: refuse a non-empty workdir
  checkpoint.async_save = True
  return checkpoint


def optim_section(*, extendable: bool = False, per_path: bool = False) -> ml_collections.ConfigDict:
  """``optim.*``: the optimizer and schedule of ``jaxdl.optim.from_config``.

  Args:
    extendable: add ``extend_from`` and ``extend_mode``, for a loop whose
      schedule spans ``train.steps``: a run of ``train.steps=N`` extended to
      a larger ``train.steps`` keeps its schedule up to N and goes on as
      ``extend_mode`` says (``jaxdl.optim.extended_schedule``).
    per_path: add ``frozen`` and ``lr_multipliers`` (``jaxdl.optim.per_path``),
      for a loop whose optimizer is built from this section over one params
      tree: parameters chosen by fnmatch globs over their dotted paths
      (``Conv_0.*``) are frozen or trained at a multiple of the rate.
  """
  optim = ml_collections.ConfigDict()
  optim.name = "adam"
  optim.learning_rate = 1e-3
  optim.schedule = "constant"
  optim.warmup_steps = 0
  optim.final_fraction = 0.0
  optim.boundaries = (0.5, 0.75)
  optim.decay_factor = 0.1
  optim.momentum = 0.9
  optim.b1 = 0.9
  optim.b2 = 0.999
  optim.eps = 1e-8
  optim.rms_decay = 0.9
  optim.weight_decay = 0.0
  optim.l1 = 0.0
  optim.clip_norm = 0.0
  if extendable:
    optim.extend_from = 0  # the train.steps of the run this one extends; 0: the schedule spans train.steps
    optim.extend_mode = "constant"  # after extend_from: 'constant' (the final rate) or 'restart' (SGDR)
  if per_path:
    optim.frozen = ()  # globs over dotted param paths, e.g. ('Conv_0.*',): not trained at all
    optim.lr_multipliers = ()  # 'PATTERN=FACTOR' strings, e.g. ('Conv_*=0.1',): the first match scales the rate
  return optim


def check_keys(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict, *,
               open_sections: Iterable[str] = ()) -> None:
  """Refuses a key that the loop does not read: a typo or a leftover is never silently ignored.

  Args:
    config: the run's config.
    schema: the loop's ``default_config()``: every key it reads, and no other.
    open_sections: sections whose keys are checked elsewhere (a model's own
      options, against the model's fields).

  Raises:
    JaxdlError: naming the first key that ``schema`` lacks, and the loop.
  """
  loop = config.get("loop", "?")
  allowed, open_sections = flatten(schema), tuple(open_sections)
  for key in sorted(flatten(config)):
    if key.split(".")[0] in open_sections or key in allowed:
      continue
    section = key.rsplit(".", 1)[0] if "." in key else ""
    known = sorted(k for k in allowed if section and k.startswith(section + "."))
    raise JaxdlError(f"{key} is not a key of the '{loop}' loop, which would ignore it"
                     + (f" (its {section}.* keys: {', '.join(k.split('.')[-1] for k in known)})"
                        if known else f" (its sections: {', '.join(sorted(schema.keys()))})"))


# ---------------------------------------------------------------- overrides --

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_like(key: str, text: str, current: Any) -> Any:
  """Parses ``text`` into the type of the field's current value."""

  def wrong(expected: str) -> JaxdlError:
    return JaxdlError(f"--set {key}={text}: expected {expected}")

  if current == AUTO:  # a derived value: 'auto' again, or the number chosen instead
    try:
      value = text if text == AUTO else ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise wrong(f"a number or '{AUTO}'") from None
    if value != AUTO and (isinstance(value, bool) or not isinstance(value, (int, float))):
      raise wrong(f"a number or '{AUTO}'")
    return value
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
    loop = config.get("loop", "?")
    node = config
    for i, part in enumerate(parents):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise JaxdlError(f"--set {key}: unknown key '{'.'.join(parents[:i + 1])}': the '{loop}' loop "
                         f"does not read it (known: {', '.join(sorted(node.keys()))})")
      node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise JaxdlError(f"--set {key}: unknown key: the '{loop}' loop does not read it (known in this "
                       f"section: {', '.join(sorted(node.keys()))})")
    if isinstance(node[leaf], ml_collections.ConfigDict):
      raise JaxdlError(f"--set {key}: is a section, set one of its keys "
                       f"({', '.join(sorted(node[leaf].keys()))})")
    with node.unlocked():
      node[leaf] = _parse_like(key, text.strip(), node[leaf])
  return config


# ------------------------------------------------------------------ presets --


# ------------------------------------------------------------ preset lookup --


def preset_dirs() -> list[pathlib.Path]:
  """Where presets are looked up, in order."""
  dirs = []
  if os.environ.get("JAXDL_PRESETS"):
    dirs.append(pathlib.Path(os.environ["JAXDL_PRESETS"]))
  package = pathlib.Path(__file__).resolve().parent  # jaxdl/
  dirs.append(package / "experiments")  # installed from the wheel
  dirs.append(package.parent / "experiments")  # a source checkout (editable install)
  dirs.append(pathlib.Path.cwd() / "experiments")
  seen, unique = set(), []
  for d in dirs:
    if d.is_dir() and d.resolve() not in seen:
      seen.add(d.resolve())
      unique.append(d)
  return unique


def find_presets() -> dict[str, pathlib.Path]:
  """Preset name -> file, the first directory winning on a clash."""
  presets: dict[str, pathlib.Path] = {}
  for d in preset_dirs():
    for path in sorted(d.glob("*.py")):
      if not path.name.startswith("_"):
        presets.setdefault(path.stem, path)
  return presets


def resolve_preset(name: str | os.PathLike) -> pathlib.Path:
  """The file of preset ``name`` (see :func:`find_presets`), or ``name`` itself if it is a ``.py`` path."""
  name = os.fspath(name)
  if name.endswith(".py"):
    path = pathlib.Path(name)
    if not path.is_file():
      raise JaxdlError(f"preset file not found: {name}")
    return path
  presets = find_presets()
  if name not in presets:
    import difflib
    close = difflib.get_close_matches(name, presets, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise JaxdlError(f"unknown preset '{name}'{hint} (run 'jaxdl list' to see them)")
  return presets[name]


def load_preset(path: str | pathlib.Path) -> tuple[ml_collections.ConfigDict, str]:
  """Loads a preset by name (``"digits_mlp"``) or file and returns (its config, its docstring).

  Names are looked up in ``$JAXDL_PRESETS``, the package's presets and
  ``./experiments`` (:func:`find_presets`), as ``jaxdl run`` does.

  While the file runs, its folder comes first on ``sys.path``, so a preset
  can build on a private family base beside it (``from _charlm import
  charlm_config``). Modules imported from that folder are forgotten
  afterwards: two preset folders may each have a ``_charlm.py``.
  """
  path = resolve_preset(path)
  folder = str(path.resolve().parent)
  name = f"_jaxdl_preset_{path.stem}"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  sys.path.insert(0, folder)
  try:
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
      raise JaxdlError(f"preset {path} has no get_config()")
    config = module.get_config()
  finally:
    sys.modules.pop(name, None)
    sys.path.remove(folder)
    for key, mod in list(sys.modules.items()):
      if str(pathlib.Path(getattr(mod, "__file__", None) or "/").parent) == folder:
        del sys.modules[key]
  return config, (module.__doc__ or "").strip()


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
