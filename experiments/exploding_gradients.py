"""Exploding gradients: a deep ReLU MLP under a too-high SGD learning rate, with and without global-norm clipping.

    jaxdl run exploding_gradients

Both variants start from the same 8-layer MLP on digits and take SGD steps of
learning rate 1.0. Without clipping one large step makes the next gradient
larger; the gradient norm grows by orders of magnitude within a few dozen
steps and the loss goes non-finite; under ``train.nan_policy=skip`` every such
update is dropped and counted (``skipped_steps/no_clip``), so the study
reports the divergence instead of stopping. ``optim.clip_norm=0.5`` rescales
each gradient to a global norm of at most 0.5, so no step moves the
parameters by more than 0.75.
``training.png`` shows the loss and the gradient norm of both against the step.

Result (2-core CPU shared with other jobs, seed 0; 1:50 wall under a load of
~13, 36 s of CPU time): no_clip's gradient norm reaches 6e14 within 5 steps,
395 of its 400 updates are dropped as non-finite (diverged) and its test
accuracy is 0.100; clip's largest gradient norm is 10.3 (before clipping)
and its test accuracy 0.956.
"""

from jaxdl.loops.grad_flow import default_config


def get_config():
  config = default_config()
  config.data.name = "digits"
  config.model.name = "mlp"
  config.model.hidden = (64,) * 8
  config.model.activation = "relu"
  config.model.kernel_init = "he"
  config.study.variants = (
      "no_clip: optim.clip_norm=0.0",
      "clip: optim.clip_norm=0.5",
  )
  config.study.grad_examples = 512
  config.train.steps = 400
  config.train.batch_size = 128
  config.train.eval_every = 0
  config.train.log_every = 1  # every step: the explosion takes a handful of them
  config.train.nan_policy = "skip"  # a diverging variant drops its non-finite updates and goes on
  config.checkpoint.every_steps = 0
  config.optim.name = "sgd"
  config.optim.learning_rate = 1.5
  config.optim.clip_norm = 0.0
  return config
