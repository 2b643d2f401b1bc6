"""Knowledge distillation on MNIST-1D: a 1-D CNN teacher taught to a student with a tenth of its parameters.

    jaxdl run distill_mnist1d

The study trains the teacher (the mnist1d_cnn network, for 1500 steps with
random shifts of +-2) in WORKDIR/teacher, then the student (a three-layer CNN
of 12, 24 and 32 channels with a linear head: 7,018 parameters, 1/10.5 of the
teacher's 73,578) twice with the same seed and budget and no augmentation:
from scratch on the labels (WORKDIR/scratch), and distilled (WORKDIR/student)
on T^2 * KL(teacher || student) at T = 8 (soft weight 1: only the teacher
teaches it). As in Hinton et al. (2015), the teacher learnt with jitter and
the students without it: its soft targets carry what the jitter taught it.
`--set distill.teacher_workdir=runs/mnist1d_cnn` teaches from a trained run instead.

Result (2-core CPU shared with other jobs, seed 0): distilled student 0.951 against
0.899 from scratch, teacher 0.985: 60% of the gap closed (target >= 50%; seeds 1 and
2: 0.946 vs 0.915, teacher 0.971, 55%; 0.950 vs 0.898, teacher 0.982, 62%), in 77 s
(teacher 33 s, scratch 17 s, distilled 24 s).
"""

from jaxdl.loops.distill import default_config


def get_config():
  config = default_config()
  config.data.name = "mnist1d"
  # The student, for the scratch and the distilled run.
  config.model.name = "cnn"
  config.model.features = (12, 24, 32)
  config.model.kernel_size = 5
  config.model.pool = 2
  config.model.hidden = ()
  config.model.conv_impl = "auto"
  config.train.steps = 3000
  config.train.batch_size = 128
  config.train.eval_every = 500
  config.checkpoint.every_steps = 0  # only at the end: the runs are short
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.optim.schedule = "cosine"
  config.augment.shift = 0  # the students see the training set as it is
  config.distill.temperature = 8.0
  config.distill.alpha = 1.0
  # The teacher: mnist1d_cnn's network, trained briefly, with jitter.
  config.distill.teacher_model.name = "cnn"
  config.distill.teacher_model.features = (32, 64, 64)
  config.distill.teacher_model.kernel_size = 5
  config.distill.teacher_model.pool = 2
  config.distill.teacher_model.hidden = (128,)
  config.distill.teacher_model.dropout = 0.2
  config.distill.teacher_model.use_batchnorm = True
  config.distill.teacher_model.conv_impl = "auto"
  config.distill.teacher_steps = 1500
  config.distill.teacher_overrides = ("augment.shift=2",)
  return config
