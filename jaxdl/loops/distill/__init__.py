"""The distill study: knowledge distillation (Hinton et al. 2015) of a teacher into a small student.

``default_config()`` is its schema (the supervised one plus ``distill.*``),
``train_and_evaluate(config, workdir)`` the study (supervised runs in
``WORKDIR/{teacher,scratch,student}``), ``distillation_loss`` and
``teacher_loss_fn`` the loss, usable as any supervised run's ``loss_fn``.
"""

from jaxdl.loops.distill.config import default_config, student_config, teacher_config, validate
from jaxdl.loops.distill.experiment import train_and_evaluate
from jaxdl.loops.distill.loss import distillation_loss, soft_kl, teacher_loss_fn
from jaxdl.loops.distill.teacher import Teacher, load_teacher

__all__ = ["Teacher", "default_config", "distillation_loss", "load_teacher", "soft_kl", "student_config",
           "teacher_config", "teacher_loss_fn", "train_and_evaluate", "validate"]
