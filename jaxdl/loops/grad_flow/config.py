"""The grad_flow study's config: the supervised schema plus a ``study`` section of variants.

Each variant is one supervised run of the study's config with a few
overrides, written as one string ``"NAME: KEY=VALUE; KEY=VALUE"`` in
``study.variants`` (a tuple, so ``--set study.variants="('a: model.activation=tanh',)"``
replaces the whole list). The overrides are ``--set`` items: a key the
supervised loop does not read is refused before anything runs.
"""

import re

import ml_collections

from jaxdl import configs
from jaxdl import models as models_lib
from jaxdl.loops import supervised
from jaxdl.utils.errors import JaxdlError

_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a variant's name is also its sub-run's folder


def default_config() -> ml_collections.ConfigDict:
  """The supervised defaults under ``loop='grad_flow'``, plus ``study.*``."""
  study = ml_collections.ConfigDict()
  # NAME: overrides of the supervised config, separated by ';' (none: the config as it is).
  study.variants = ("relu: model.activation=relu", "tanh: model.activation=tanh")
  study.grad_examples = 512  # training examples the per-layer gradient norms are measured on
  return supervised.study_schema("grad_flow", study=study)


def parse_variants(variants) -> dict[str, tuple[str, ...]]:
  """``{name: (override, ...)}`` from ``study.variants``, in order; one-line errors for bad entries."""
  if isinstance(variants, str) or not variants:
    raise JaxdlError(f"study.variants={variants!r} must be a non-empty tuple of 'NAME: KEY=VALUE; ...' strings")
  parsed: dict[str, tuple[str, ...]] = {}
  for item in variants:
    name, sep, rest = str(item).partition(":")
    name = name.strip()
    if not sep or not _NAME.fullmatch(name):
      raise JaxdlError(f"study.variants entry {item!r} must read 'NAME: KEY=VALUE; ...' with NAME made of "
                       f"letters, digits, '_' and '-'")
    if name in parsed:
      raise JaxdlError(f"study.variants names '{name}' twice")
    parsed[name] = tuple(s.strip() for s in rest.split(";") if s.strip())
  return parsed


def variant_config(config: ml_collections.ConfigDict, overrides: tuple[str, ...]) -> ml_collections.ConfigDict:
  """The supervised config of one variant: the study's config without ``study``, with ``overrides``.

  As with ``--set``, an override of ``model.name`` replaces the model
  section by that model's defaults, and an override of a model option that
  the config leaves at its default adds the option first.
  """
  sub = supervised.supervised_part(config, "study")
  keys = [item.partition("=")[0].strip() for item in overrides]
  names = [item.partition("=")[2].strip() for item, key in zip(overrides, keys) if key == "model.name"]
  if names and names[-1] != sub.model.name:
    sub.model = ml_collections.ConfigDict({"name": names[-1], **models_lib.option_defaults(names[-1])})
  defaults = models_lib.option_defaults(sub.model.name)
  for key in keys:
    option = key[len("model."):] if key.startswith("model.") else ""
    if option and option not in sub.model and option in defaults:
      with sub.model.unlocked():
        sub.model[option] = defaults[option]
  return configs.apply_overrides(sub, overrides)


def validate(config: ml_collections.ConfigDict) -> None:
  """The study's keys, then every variant's supervised config, before anything runs."""
  supervised.validate_study(config, default_config())
  if config.study.grad_examples < 2:
    raise JaxdlError(f"study.grad_examples={config.study.grad_examples} must be >= 2")
  for name, overrides in parse_variants(config.study.variants).items():
    try:
      sub = variant_config(config, overrides)
      supervised.validate(sub)
      # An option the model lacks fails here, not after the variants before it have trained.
      models_lib.get_model(sub.model.name, 2, **models_lib.options_from_config(sub.model))
    except JaxdlError as e:
      raise JaxdlError(f"study.variants '{name}': {e}") from None
