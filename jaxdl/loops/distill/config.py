"""The distillation study's config: the supervised schema plus a ``distill`` section.

The supervised sections describe the student (``model``) and its training,
shared by the two student runs, the distilled one and the one from scratch
(the same budget, seed and augmentation). A teacher the study trains itself
uses them too, but with its own model (``distill.teacher_model``: a model
section, ``name`` and that model's options), ``distill.teacher_steps``, and
``distill.teacher_overrides``: ``KEY=VALUE`` items, as ``--set`` takes them,
for what else the teacher trains with differently (Hinton et al. trained the
teacher with jitter and the small nets without: ``("augment.shift=2",)``).
A teacher given by ``distill.teacher_workdir`` is a finished supervised run;
the teacher keys then go unused, and the study says so.
"""

import math

import ml_collections

from jaxdl import configs
from jaxdl import models as models_lib
from jaxdl.loops import supervised
from jaxdl.utils.errors import JaxdlError

OWN = "distill"  # the study's own section, which its supervised runs do not get
TEACHER_MODEL = "teacher_model"  # an open subsection: a model's name and options


def default_config() -> ml_collections.ConfigDict:
  """The supervised defaults under ``loop='distill'``, plus ``distill.*``."""
  distill = ml_collections.ConfigDict()
  distill.temperature = 4.0  # T: both logits are divided by it in the soft term
  distill.alpha = 0.9  # the soft term's weight; 0: plain cross-entropy, 1: the teacher alone
  distill.teacher_workdir = ""  # a trained supervised run; '': the study trains its own in WORKDIR/teacher
  distill.teacher_steps = 0  # the study's own teacher's train.steps; 0: train.steps
  distill.teacher_overrides = ()  # its other differences, e.g. ('augment.shift=2',); not model.* (teacher_model)
  distill[TEACHER_MODEL] = ml_collections.ConfigDict({"name": "cnn"})  # and the model's options
  config = supervised.study_schema("distill", **{OWN: distill})
  del config.init  # every run of the study starts from its initialisation
  return config


def teacher_model_section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``distill.teacher_model``, checked: a section with a ``name``."""
  section = config[OWN].get(TEACHER_MODEL)
  if not isinstance(section, ml_collections.ConfigDict) or "name" not in section:
    raise JaxdlError(f"{OWN}.{TEACHER_MODEL} must be a model section with a name, e.g. "
                     f"{{'name': 'cnn', 'features': (32, 64)}}, not {section!r}")
  return section


def _without_teacher_options(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of ``config`` whose teacher model section holds its name only (the options are checked apart)."""
  copy = ml_collections.ConfigDict(config.to_dict())
  copy[OWN][TEACHER_MODEL] = ml_collections.ConfigDict({"name": teacher_model_section(config).name})
  return copy


def validate(config: ml_collections.ConfigDict) -> None:
  """The study's keys, the supervised part and the ``distill`` values; one-line errors."""
  supervised.validate_study(_without_teacher_options(config), default_config())
  d = config[OWN]
  if not (isinstance(d.temperature, (int, float)) and math.isfinite(d.temperature) and d.temperature > 0):
    raise JaxdlError(f"{OWN}.temperature={d.temperature} must be > 0 (1 leaves the teacher's softmax as it is)")
  if not (isinstance(d.alpha, (int, float)) and 0 <= d.alpha <= 1):
    raise JaxdlError(f"{OWN}.alpha={d.alpha} must be in [0, 1] (the soft term's weight)")
  if d.teacher_steps < 0:
    raise JaxdlError(f"{OWN}.teacher_steps={d.teacher_steps} must be >= 0 (0: train.steps)")
  if not d.teacher_workdir:
    # An option the teacher model lacks fails now, not after anything has trained.
    teacher = teacher_config(config)
    supervised.validate(teacher)
    try:
      models_lib.get_model(teacher.model.name, 2, **models_lib.options_from_config(teacher.model))
    except JaxdlError as e:
      raise JaxdlError(f"{OWN}.{TEACHER_MODEL}: {e}") from None


def student_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The supervised config of both student runs (distilled and from scratch)."""
  return supervised.supervised_part(config, OWN)


def teacher_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The supervised config of the teacher the study trains: the student's with the teacher's model and steps."""
  sub = student_config(config)
  sub.model = ml_collections.ConfigDict(teacher_model_section(config).to_dict())
  if config[OWN].teacher_steps:
    sub.train.steps = config[OWN].teacher_steps
  overrides = config[OWN].teacher_overrides
  if isinstance(overrides, str):
    raise JaxdlError(f"{OWN}.teacher_overrides={overrides!r} must be a tuple of 'KEY=VALUE' strings")
  for item in overrides:
    key = str(item).partition("=")[0].strip()
    if key.startswith("model.") or key in ("train.steps", "loop"):
      raise JaxdlError(f"{OWN}.teacher_overrides item {item!r}: set the teacher's model in {OWN}.{TEACHER_MODEL} "
                       f"and its steps in {OWN}.teacher_steps")
  try:
    return configs.apply_overrides(sub, [str(item) for item in overrides])
  except JaxdlError as e:
    raise JaxdlError(f"{OWN}.teacher_overrides: {e}") from None
