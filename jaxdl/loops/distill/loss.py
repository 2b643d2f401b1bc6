"""The distillation loss (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural network").

For student logits z, teacher logits v, a temperature T and a soft weight
alpha, per example:

    loss = (1 - alpha) * CE(targets, softmax(z))
           + alpha * T^2 * KL(softmax(v / T) || softmax(z / T))

``targets`` are the run's (label-smoothed, augmented) one-hot targets. The
gradient of the soft term with respect to z is ``T^2 * (q - p) / T`` with
``p = softmax(v / T)`` and ``q = softmax(z / T)``: without the T^2 it would
shrink as 1/T^2 for large T, so T^2 keeps the soft term's weight in the
gradient the same whatever T (Hinton et al. section 2). For large T and
logits of zero mean it tends to ``(z - v) / K`` (K classes): matching the
logits (Bucila et al. 2006). KL rather than the cross-entropy with p differs
only by the teacher's entropy, a constant, so the gradients are the same and
the loss is 0 when the student matches the teacher.

:func:`teacher_loss_fn` makes it a supervised ``loss_fn``: the teacher, in
evaluation mode, reads the step's own (augmented) inputs, so its soft targets
are those of the very examples the student sees.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxdl.train import losses


def soft_kl(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float) -> jax.Array:
  """KL(softmax(teacher / T) || softmax(student / T)) per example, float32, >= 0. (B,)"""
  t = jnp.float32(temperature)
  log_p = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t, axis=-1)  # (B, K)
  log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)  # (B, K)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array, targets: jax.Array, *,
                      temperature: float, alpha: float) -> jax.Array:
  """The mixed hard/soft loss of the module docstring, per example. (B,)

  Args:
    student_logits: (B, K).
    teacher_logits: (B, K); no gradient flows into them.
    targets: (B, K) soft targets (one-hot labels, smoothed or mixed).
    temperature: T > 0, the softening of both distributions in the soft term.
    alpha: the soft term's weight in [0, 1]; 0 is plain cross-entropy.
  """
  teacher_logits = jax.lax.stop_gradient(teacher_logits)
  hard = losses.cross_entropy(student_logits, targets)
  soft = soft_kl(student_logits, teacher_logits, temperature)
  return (1.0 - alpha) * hard + alpha * temperature ** 2 * soft


def teacher_loss_fn(apply_fn: Callable[..., jax.Array], variables: Mapping[str, Any], *, temperature: float,
                    alpha: float) -> Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array]:
  """A supervised ``loss_fn(logits, batch) -> (B,)`` that distils the teacher ``apply_fn(variables, x)``.

  The teacher runs on ``batch["x"]`` (the augmented inputs of the step, with
  their ``lengths`` if padded) with ``train=False``: no dropout, BatchNorm's
  running statistics. Its variables
  are closed over, so under ``jit`` they are constants of the compiled step,
  placed with it once, not passed on each call.

  Args:
    apply_fn: the teacher's ``model.apply``.
    variables: the teacher's ``{"params": ..., "batch_stats": ...}``.
    temperature, alpha: as in :func:`distillation_loss`.
  """

  def loss_fn(logits: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
    lengths = {"lengths": batch["lengths"]} if "lengths" in batch else {}
    teacher_logits = apply_fn(variables, batch["x"], train=False, **lengths)  # (B, K)
    return distillation_loss(logits, teacher_logits, batch["targets"], temperature=temperature, alpha=alpha)

  return loss_fn
