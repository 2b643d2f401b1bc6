"""Optimizers and schedules: thin, named factories over Optax.

Everything here returns plain Optax objects, composed with ``optax.chain`` in
the order the maths needs::

    clip by global norm -> L1 subgradient -> coupled L2 -> optimizer (-> decoupled decay for adamw)

so that a researcher can always print the chain and see what runs.

:func:`per_path` then trains parameters differently by their dotted path
(``Conv_0.kernel``): ``frozen`` ones not at all, others at a multiple of the
learning rate (transfer learning: a frozen or slowed backbone, a new head).
"""

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
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
  """The optimizer a config's ``optim`` section names, with its options, at ``learning_rate``.

  With ``optim.frozen`` or ``optim.lr_multipliers`` (``optim_section(per_path=True)``),
  it is wrapped by :func:`per_path`; their patterns are checked against the
  params at ``init``.
  """
  tx = make_optimizer(
      optim["name"], learning_rate,
      momentum=optim.get("momentum", 0.9), b1=optim.get("b1", 0.9), b2=optim.get("b2", 0.999),
      eps=optim.get("eps", 1e-8), rms_decay=optim.get("rms_decay", 0.9),
      weight_decay=optim.get("weight_decay", 0.0), l1=optim.get("l1", 0.0),
      clip_norm=optim.get("clip_norm", 0.0))
  return per_path(tx, frozen=optim.get("frozen", ()), lr_multipliers=optim.get("lr_multipliers", ()))


def from_config(optim: Mapping[str, Any], total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds (optimizer, schedule) from a config's ``optim`` section."""
  schedule = schedule_from_config(optim, total_steps)
  return optimizer_from_config(optim, schedule), schedule


# ------------------------------------------------------- per-path training --
# Paths are the dotted names of the leaves of the params tree, relative to
# ``params`` (``Conv_0.kernel``, ``Dense_1.bias``), the names checkpoints and
# ``jaxdl.checkpoint.restore_params`` use. Patterns are fnmatch globs over
# them, whose ``*`` also matches dots: ``Conv_*`` is every leaf of every conv.


def param_paths(params: Any) -> list[str]:
  """The dotted path of every leaf of ``params``, in the tree's (sorted) order."""
  return [_dotted(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _dotted(path) -> str:
  return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _examples(paths: Sequence[str], limit: int = 8) -> str:
  shown = ", ".join(paths[:limit])
  return shown + (f", ... ({len(paths)} in all)" if len(paths) > limit else "")


def check_patterns(patterns: Iterable[str], paths: Sequence[str], key: str, *, what: str = "parameter") -> None:
  """A one-line error for a pattern that matches none of ``paths`` (a typo, or a layer the model lacks).

  Args:
    patterns: fnmatch globs.
    paths: the dotted paths they should select from.
    key: the config key that holds them, for the message (``optim.frozen``).
    what: what the paths are, for the message.

  Raises:
    JaxdlError: naming the pattern, the key and some real paths.
  """
  for pattern in patterns:
    if not any(fnmatch.fnmatchcase(p, pattern) for p in paths):
      raise JaxdlError(f"{key} pattern '{pattern}' matches no {what} (fnmatch globs over dotted paths; "
                       f"the paths: {_examples(list(paths))})" if paths else
                       f"{key} pattern '{pattern}' matches no {what}: there are none")


def parse_lr_multipliers(items: Iterable[str], key: str = "optim.lr_multipliers") -> tuple[tuple[str, float], ...]:
  """``(("Conv_*", 0.1), ...)`` from ``("Conv_*=0.1", ...)``; one-line errors for bad items.

  A factor must be a finite number > 0 (a frozen parameter is ``optim.frozen``'s).
  """
  if isinstance(items, str):
    raise JaxdlError(f"{key}={items!r} must be a tuple of 'PATTERN=FACTOR' strings, e.g. ('Conv_*=0.1',)")
  parsed = []
  for item in items:
    pattern, sep, text = str(item).rpartition("=")
    try:
      factor = float(text)
    except ValueError:
      factor = float("nan")
    if not sep or not pattern or not math.isfinite(factor) or factor <= 0:
      raise JaxdlError(f"{key} item {item!r} must read 'PATTERN=FACTOR' with a factor > 0, e.g. 'Conv_*=0.1' "
                       f"(to stop a layer, use optim.frozen)")
    parsed.append((pattern, factor))
  return tuple(parsed)


class _ScaleByPathState(NamedTuple):
  """Scaling by path keeps no state."""


def scale_by_path(multipliers: Sequence[tuple[str, float]], *,
                  key: str = "optim.lr_multipliers") -> optax.GradientTransformation:
  """Multiplies each update by the factor of the first pattern its path matches (1 if none).

  Placed after the optimizer, a factor scales that parameter's learning rate
  (weight decay included): PyTorch's per-group ``lr``. Checked at ``init``:
  a pattern that matches no parameter is a one-line error.

  Args:
    multipliers: ``(pattern, factor)`` pairs, tried in order.
    key: the config key they came from, for the message.
  """
  multipliers = tuple((str(p), float(f)) for p, f in multipliers)

  def factor(path) -> float:
    dotted = _dotted(path)
    return next((f for p, f in multipliers if fnmatch.fnmatchcase(dotted, p)), 1.0)

  def init_fn(params):
    check_patterns([p for p, _ in multipliers], param_paths(params), key, what="trained parameter")
    return _ScaleByPathState()

  def update_fn(updates, state, params=None):
    del params
    updates = jax.tree_util.tree_map_with_path(
        lambda path, u: u if factor(path) == 1.0 else u * factor(path), updates)
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)


def per_path(tx: optax.GradientTransformation, *, frozen: Iterable[str] = (),
             lr_multipliers: Iterable[str] | Sequence[tuple[str, float]] = ()) -> optax.GradientTransformation:
  """``tx`` with some parameters frozen and others at a multiple of its learning rate, by path.

  Frozen parameters (those matching a ``frozen`` pattern) get zero updates
  (``optax.set_to_zero``): they do not move at all, not even by weight decay,
  they keep no optimizer state, and they do not count in gradient clipping's
  global norm. The others go through ``tx`` (through ``optax.partition``),
  then :func:`scale_by_path`. BatchNorm statistics are not parameters: a
  frozen BatchNorm layer's running statistics still follow the batches.

  With neither option set, ``tx`` itself is returned (the same optimizer,
  bit for bit).

  Args:
    tx: the optimizer of the trained parameters.
    frozen: fnmatch globs over dotted paths (``("Conv_0.*",)``).
    lr_multipliers: ``"PATTERN=FACTOR"`` strings or ``(pattern, factor)``
      pairs; the first pattern a path matches gives its factor, 1 if none
      does; frozen wins over a factor.

  Returns:
    An ``optax.GradientTransformation``. Its ``init`` raises a one-line
    ``JaxdlError`` for a pattern that matches no parameter, or when every
    parameter is frozen.
  """
  if isinstance(frozen, str) or not all(isinstance(p, str) for p in frozen):
    raise JaxdlError(f"optim.frozen={frozen!r} must be a tuple of glob patterns, e.g. ('Conv_0.*',)")
  frozen = tuple(frozen)
  is_text = isinstance(lr_multipliers, str) or all(isinstance(m, str) for m in lr_multipliers)
  multipliers = parse_lr_multipliers(lr_multipliers) if is_text else tuple(lr_multipliers)
  if multipliers:
    tx = optax.chain(tx, scale_by_path(multipliers))
  if not frozen:
    return tx

  def labels(params):
    paths = param_paths(params)
    check_patterns(frozen, paths, "optim.frozen")
    marks = ["frozen" if any(fnmatch.fnmatchcase(p, f) for f in frozen) else "trained" for p in paths]
    if "trained" not in marks:
      raise JaxdlError(f"optim.frozen={frozen} freezes every parameter: nothing would train")
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), marks)

  return optax.partition({"trained": tx, "frozen": optax.set_to_zero()}, labels)
