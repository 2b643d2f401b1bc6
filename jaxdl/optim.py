"""Optimizers and schedules: thin, named factories over Optax.

Everything here returns plain Optax objects, composed with ``optax.chain`` in
the order the maths needs::

    clip by global norm -> L1 subgradient -> coupled L2 -> optimizer (-> decoupled decay for adamw)

so that a researcher can always print the chain and see what runs.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdl.utils.errors import JaxdlError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "linear", "cosine", "warmup_cosine", "step")
# How a run laid out over fewer steps goes on (``optim.extend_mode``); see extended_schedule.
EXTEND_MODES = ("constant", "restart")


def decay_mask(params) -> Any:
  """True for weight matrices and conv kernels, False for biases and norms.

  Weight decay and L1 act on the weights that multiply inputs; decaying a bias
  or a BatchNorm scale only fights the normalisation (a common, silent bug).
  """
  return jax.tree_util.tree_map(lambda p: jnp.ndim(p) > 1, params)


class _L1State(NamedTuple):
  """The L1 penalty keeps no state."""


def add_l1_penalty(strength: float, mask: Any = decay_mask) -> optax.GradientTransformation:
  """Adds the subgradient of ``strength * sum(|w|)`` to the updates.

  Follows the Optax contract (``init``/``update`` with ``params``), so it
  composes with any optimizer in ``optax.chain`` ahead of it.

  Args:
    strength: the L1 coefficient; 0 makes this the identity.
    mask: a pytree of booleans, or a function of params returning one, saying
      which leaves are penalised (default: kernels only).

  Returns:
    An ``optax.GradientTransformation``.
  """

  def init_fn(params):
    del params
    return _L1State()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("add_l1_penalty needs params in update().")
    updates = jax.tree_util.tree_map(
        lambda g, p: g + strength * jnp.sign(p).astype(g.dtype), updates, params)
    return updates, state

  return optax.masked(optax.GradientTransformation(init_fn, update_fn), mask)


def make_schedule(
    name: str,
    learning_rate: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    final_fraction: float = 0.0,
    boundaries: tuple[float, ...] = (0.5, 0.75),
    decay_factor: float = 0.1,
    steps_key: str = "train.steps",
) -> optax.Schedule:
  """A learning-rate schedule by name.

  Args:
    name: 'constant', 'linear', 'cosine', 'warmup_cosine' or 'step'.
    learning_rate: the peak (or constant) learning rate.
    total_steps: the run's optimizer steps; cosine decays over all of them.
    warmup_steps: linear warmup from 0 for 'warmup_cosine'.
    final_fraction: the linear or cosine decay's end value, as a fraction of the peak.
    boundaries: for 'step', where the rate drops, as fractions of total_steps.
    decay_factor: for 'step', the factor applied at each boundary.
    steps_key: what ``total_steps`` is called in error messages.

  Returns:
    A function step -> learning rate.
  """
  total_steps = max(int(total_steps), 1)
  if name == "constant":
    return optax.constant_schedule(learning_rate)
  if name == "linear":
    return optax.linear_schedule(learning_rate, learning_rate * final_fraction, total_steps)
  if name == "cosine":
    return optax.cosine_decay_schedule(learning_rate, total_steps, alpha=final_fraction)
  if name == "warmup_cosine":
    if not 0 <= warmup_steps < total_steps:
      raise JaxdlError(
          f"optim.warmup_steps={warmup_steps} must be in [0, {steps_key}={total_steps})")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
        decay_steps=total_steps, end_value=learning_rate * final_fraction)
  if name == "step":
    if any(not 0 < b < 1 for b in boundaries):
      raise JaxdlError(f"optim.boundaries={tuple(boundaries)} must be fractions in (0, 1)")
    return optax.piecewise_constant_schedule(
        learning_rate, {int(b * total_steps): decay_factor for b in boundaries})
  raise JaxdlError(f"unknown schedule '{name}' (choices: {', '.join(SCHEDULES)})")


def extended_schedule(name: str, learning_rate: float, first_steps: int, total_steps: int, mode: str,
                      **options: Any) -> optax.Schedule:
  """``name`` laid out over ``first_steps`` steps, then a second segment up to ``total_steps``.

  A run whose schedule spans its ``train.steps`` (cosine, warmup-cosine,
  step, linear) cannot simply train longer: laying the schedule out over a
  new total would change the rate at every step already taken. This keeps
  the first ``first_steps`` steps exactly as the original run had them (the
  same function of the step) and continues after them:

  - ``mode='constant'``: at the rate the first segment ends at (its value at
    ``first_steps``), so the rate is continuous at the boundary;
  - ``mode='restart'``: with the same schedule laid out afresh over the
    ``total_steps - first_steps`` new steps, from the peak rate again; for a
    cosine, SGDR's warm restart (Loshchilov & Hutter, 2017).

  Args:
    name: the schedule (not 'constant', which extends as it is).
    learning_rate: the peak rate.
    first_steps: the original run's total (``optim.extend_from``).
    total_steps: the new total.
    mode: 'constant' or 'restart' (``optim.extend_mode``).
    **options: :func:`make_schedule`'s options (warmup_steps, final_fraction, ...).

  Returns:
    A function step -> learning rate.
  """
  if name == "constant":
    raise JaxdlError(f"optim.extend_from={first_steps} extends a schedule that spans train.steps, but "
                     f"optim.schedule='constant' extends as it is: leave optim.extend_from=0")
  if not 0 < first_steps < total_steps:
    raise JaxdlError(f"optim.extend_from={first_steps} must be in (0, train.steps={total_steps}): the "
                     f"train.steps of the run being extended")
  if mode not in EXTEND_MODES:
    raise JaxdlError(f"optim.extend_mode='{mode}' must be one of {', '.join(EXTEND_MODES)}")
  first = make_schedule(name, learning_rate, first_steps, steps_key="optim.extend_from", **options)
  if mode == "constant":
    ends_at_zero = (options.get("decay_factor", 0.1) == 0 if name == "step"
                    else options.get("final_fraction", 0.0) == 0)
    if ends_at_zero:
      raise JaxdlError(f"optim.extend_mode=constant would go on at the rate optim.schedule='{name}' ends at, "
                       f"which is 0 ({'optim.decay_factor' if name == 'step' else 'optim.final_fraction'}=0): "
                       f"use optim.extend_mode=restart")
    second = optax.constant_schedule(float(first(first_steps)))
  else:
    second = make_schedule(name, learning_rate, total_steps - first_steps,
                           steps_key="train.steps - optim.extend_from", **options)
  # Before the boundary join_schedules returns first(step) itself: the original run's rates, exactly.
  return optax.join_schedules([first, second], [first_steps])


def make_optimizer(
    name: str,
    learning_rate: float | optax.Schedule,
    *,
    momentum: float = 0.9,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    rms_decay: float = 0.9,
    weight_decay: float = 0.0,
    l1: float = 0.0,
    clip_norm: float = 0.0,
) -> optax.GradientTransformation:
  """An Optax optimizer by name, with clipping and regularisation.

  ``weight_decay`` is decoupled (Loshchilov & Hutter, 2019) for 'adamw' and a
  coupled L2 penalty (its gradient ``wd * w`` added before the optimizer) for
  every other optimizer, which is what "L2 regularisation" means for SGD.

  Args:
    name: one of 'sgd', 'momentum', 'nesterov', 'adam', 'adamw', 'rmsprop'.
    learning_rate: a float or an Optax schedule.
    momentum: for 'momentum', 'nesterov' and (if > 0) 'rmsprop'.
    b1, b2, eps: Adam's moment decays and epsilon.
    rms_decay: RMSprop's squared-gradient decay.
    weight_decay: decoupled (adamw) or L2 (others) coefficient; kernels only.
    l1: L1 penalty coefficient; kernels only.
    clip_norm: clip gradients to this global norm first; 0 disables.

  Returns:
    An ``optax.GradientTransformation``.
  """
  if name not in OPTIMIZERS:
    raise JaxdlError(f"unknown optimizer '{name}' (choices: {', '.join(OPTIMIZERS)})")
  for key, value in (("weight_decay", weight_decay), ("l1", l1), ("clip_norm", clip_norm)):
    if value < 0:
      raise JaxdlError(f"optim.{key}={value} must be >= 0")
  parts = []
  if clip_norm > 0:
    parts.append(optax.clip_by_global_norm(clip_norm))
  if l1 > 0:
    parts.append(add_l1_penalty(l1))
  if weight_decay > 0 and name != "adamw":
    parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
  if name == "sgd":
    parts.append(optax.sgd(learning_rate))
  elif name in ("momentum", "nesterov"):
    parts.append(optax.sgd(learning_rate, momentum=momentum, nesterov=name == "nesterov"))
  elif name == "adam":
    parts.append(optax.adam(learning_rate, b1=b1, b2=b2, eps=eps))
  elif name == "adamw":
    parts.append(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps,
                             weight_decay=weight_decay, mask=decay_mask))
  elif name == "rmsprop":
    parts.append(optax.rmsprop(learning_rate, decay=rms_decay, eps=eps,
                               momentum=momentum or None))
  return optax.chain(*parts) if len(parts) > 1 else parts[0]


def schedule_from_config(optim: Mapping[str, Any], total_steps: int) -> optax.Schedule:
  """The learning-rate schedule a config's ``optim`` section names, over ``total_steps``.

  With ``optim.extend_from`` > 0 it is :func:`extended_schedule`: the
  schedule over ``extend_from`` steps, then ``optim.extend_mode``'s segment.
  """
  options = dict(warmup_steps=optim.get("warmup_steps", 0), final_fraction=optim.get("final_fraction", 0.0),
                 boundaries=tuple(optim.get("boundaries", (0.5, 0.75))), decay_factor=optim.get("decay_factor", 0.1))
  if optim.get("extend_from", 0):
    return extended_schedule(optim["schedule"], optim["learning_rate"], optim["extend_from"], total_steps,
                             optim.get("extend_mode", "constant"), **options)
  return make_schedule(optim["schedule"], optim["learning_rate"], total_steps, **options)


def optimizer_from_config(optim: Mapping[str, Any],
                          learning_rate: float | optax.Schedule) -> optax.GradientTransformation:
  """The optimizer a config's ``optim`` section names, with its options, at ``learning_rate``."""
  return make_optimizer(
      optim["name"], learning_rate,
      momentum=optim.get("momentum", 0.9), b1=optim.get("b1", 0.9), b2=optim.get("b2", 0.999),
      eps=optim.get("eps", 1e-8), rms_decay=optim.get("rms_decay", 0.9),
      weight_decay=optim.get("weight_decay", 0.0), l1=optim.get("l1", 0.0),
      clip_norm=optim.get("clip_norm", 0.0))


def from_config(optim: Mapping[str, Any], total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds (optimizer, schedule) from a config's ``optim`` section."""
  schedule = schedule_from_config(optim, total_steps)
  return optimizer_from_config(optim, schedule), schedule
