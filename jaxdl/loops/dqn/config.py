"""The DQN config every preset starts from, its checks, and what it builds.

Step units: an *iteration* steps every one of the ``env.num_envs`` parallel
environments once and then takes ``train.updates_per_iteration`` optimizer
steps. ``train.env_steps`` (per seed), ``train.learning_starts`` and the
epsilon decay count environment steps; ``train.log_every``,
``train.eval_every`` and ``checkpoint.every_steps`` count iterations.

What a run shows counts environment steps per seed, the unit of
``train.env_steps``: the progress bar and TensorBoard's step axis. The
checkpoints (``checkpoints/ITERATION``) count iterations, and so does
``metrics.jsonl``'s ``step``, so a record lines up with the checkpoint and
the ``log_every`` interval it was written at; each record also carries
``env_steps`` (``step * env.num_envs``, per seed).
"""

import functools
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdl import configs
from jaxdl import optim as optim_lib
from jaxdl.models.qnet import QNETS
from jaxdl.loops.dqn import learner as dqn
from jaxdl.train.fit import validate_schedule
from jaxdl.utils.errors import JaxdlError


def default_config() -> ml_collections.ConfigDict:
  """DQN defaults (CleanRL's ``dqn.py`` values where the preset does not say).

  The TD loss defaults to the squared error, as CleanRL and purejaxrl use:
  with the Huber loss, Q-values on CartPole grew without bound (past
  1 / (1 - gamma) = 100, to 10^4 within 3000 updates on a fixed buffer of
  random-policy data, target copied every 50 updates), while the squared
  error converged. Huber's bounded gradient lets the few terminal transitions,
  the only ones that pin the values down, be outvoted. Atari presets, whose
  rewards are clipped, use Huber as Mnih et al. did.
  """
  c = ml_collections.ConfigDict()
  c.loop = "dqn"

  c.env = ml_collections.ConfigDict()
  c.env.id = "CartPole-v1"
  c.env.backend = "jax"  # 'jax': JAX-native env, all in one jitted scan; 'gym': host loop, any id
  c.env.num_envs = 8  # parallel environments per seed
  c.env.frame_stack = 4  # Atari: frames per observation (Mnih et al. 2015)
  c.env.max_episode_steps = 0  # host loop: override the id's time limit (0: keep it)

  c.train = ml_collections.ConfigDict()
  c.train.seed = 0
  c.train.num_seeds = 1  # independent runs, vmapped together
  c.train.seed_groups = 1  # jitted path: split the seeds into groups run from parallel threads (CPU cores)
  c.train.env_steps = 100_000  # per seed
  c.train.learning_starts = 10_000  # env steps of random-ish play before the first update
  c.train.batch_size = 128
  c.train.gamma = 0.99
  c.train.n_step = 1
  c.train.double = True  # Double DQN targets (van Hasselt et al. 2016)
  c.train.loss = "mse"  # or "huber" (Mnih et al. 2015); see the note in default_config
  c.train.huber_delta = 1.0
  c.train.updates_per_iteration = 1
  c.train.target_every = 500  # optimizer steps between target updates
  c.train.tau = 1.0  # 1: hard copy; < 1: Polyak averaging
  c.train.log_every = 250  # iterations
  c.train.eval_every = 0  # iterations between greedy evaluations (0: only at the end)
  c.train.compile_cache = True  # JAX's persistent compilation cache (jaxdl.train.compile)

  c.buffer = ml_collections.ConfigDict()
  c.buffer.size = 10_000  # transitions per seed
  # Prioritised replay, proportional variant; alpha and beta_start are Schaul
  # et al. 2016's choices for it (section 4, https://arxiv.org/abs/1511.05952).
  c.buffer.prioritized = False
  c.buffer.alpha = 0.6  # P(i) ~ (|delta_i| + eps)^alpha
  c.buffer.beta_start = 0.4  # importance-sampling exponent, annealed linearly to 1 over the updates
  c.buffer.priority_eps = 1e-6  # small, > 0: a transition with delta = 0 stays drawable

  c.epsilon = ml_collections.ConfigDict()
  c.epsilon.start = 1.0
  c.epsilon.end = 0.05
  c.epsilon.fraction = 0.5  # of train.env_steps spent decaying

  # Every optimizer and schedule of jaxdl.optim (optim.name, optim.momentum,
  # optim.schedule='linear' to decay to 0 by the last update, ...).
  c.optim = configs.optim_section()
  c.optim.name = "adam"
  c.optim.learning_rate = 2.5e-4
  c.optim.schedule = "constant"

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"  # or 'nature_cnn'
  c.model.hidden = (120, 84)  # mlp only
  c.model.dueling = False

  c.eval = ml_collections.ConfigDict()
  c.eval.episodes = 10  # greedy episodes per seed
  # Which policy the final evaluation scores: 'last' (where training ended) or
  # 'best' (each seed's policy that did best on eval.episodes validation
  # episodes, apart from the evaluation ones, checked every
  # eval.validate_every iterations, a multiple of train.log_every; 0: every
  # train.log_every). A tie goes to the newer policy.
  c.eval.select = "last"
  c.eval.validate_every = 0

  c.checkpoint = configs.checkpoint_section()  # keep_best: a metric such as 'test/return'
  c.checkpoint.every_steps = 0  # iterations; 0: only at the end
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """One-line errors naming the offending key, before anything is built or written."""
  configs.check_keys(c, default_config())
  for key in ("start", "end"):
    if not 0.0 <= c.epsilon[key] <= 1.0:
      raise JaxdlError(f"epsilon.{key}={c.epsilon[key]} must be in [0, 1]")
  if not 0.0 <= c.epsilon.fraction <= 1.0:
    raise JaxdlError(f"epsilon.fraction={c.epsilon.fraction} must be in [0, 1]")
  t = c.train
  # The checks every fit-driven loop shares: these train keys > 0, eval_every,
  # checkpoint.every_steps, optim.learning_rate.
  validate_schedule(c, ("num_seeds", "env_steps", "batch_size", "n_step", "updates_per_iteration", "target_every",
                        "log_every"))
  for key in ("num_envs", "frame_stack"):
    if c.env[key] <= 0:
      raise JaxdlError(f"env.{key}={c.env[key]} must be > 0")
  if t.seed_groups <= 0 or t.num_seeds % t.seed_groups:
    raise JaxdlError(f"train.seed_groups={t.seed_groups} must be > 0 and divide train.num_seeds={t.num_seeds}")
  if c.env.backend not in ("jax", "gym"):
    raise JaxdlError(f"env.backend='{c.env.backend}' must be 'jax' or 'gym'")
  if c.buffer.size < t.batch_size:
    raise JaxdlError(f"buffer.size={c.buffer.size} is smaller than train.batch_size={t.batch_size}")
  if c.buffer.size < c.env.num_envs * t.n_step:
    raise JaxdlError(f"buffer.size={c.buffer.size} cannot hold one {t.n_step}-step window of "
                     f"env.num_envs={c.env.num_envs} environments")
  if not 0.0 <= t.gamma <= 1.0:
    raise JaxdlError(f"train.gamma={t.gamma} must be in [0, 1]")
  if not 0.0 < t.tau <= 1.0:
    raise JaxdlError(f"train.tau={t.tau} must be in (0, 1]")
  if t.loss not in ("huber", "mse"):
    raise JaxdlError(f"train.loss='{t.loss}' must be 'huber' or 'mse'")
  if t.learning_starts < 0:
    raise JaxdlError(f"train.learning_starts={t.learning_starts} must be >= 0")
  if t.env_steps <= t.learning_starts:
    raise JaxdlError(f"train.env_steps={t.env_steps} must exceed train.learning_starts={t.learning_starts}: "
                     f"otherwise no update would run")
  if c.model.name not in QNETS:
    raise JaxdlError(f"model.name='{c.model.name}' must be one of {', '.join(QNETS)}")
  if c.optim.name not in optim_lib.OPTIMIZERS:
    raise JaxdlError(f"optim.name='{c.optim.name}' must be one of {', '.join(optim_lib.OPTIMIZERS)}")
  if c.optim.schedule not in optim_lib.SCHEDULES:
    raise JaxdlError(f"optim.schedule='{c.optim.schedule}' must be one of {', '.join(optim_lib.SCHEDULES)}")
  b = c.buffer
  if b.alpha < 0:
    raise JaxdlError(f"buffer.alpha={b.alpha} must be >= 0")
  if not 0.0 <= b.beta_start <= 1.0:
    raise JaxdlError(f"buffer.beta_start={b.beta_start} must be in [0, 1]")
  if b.priority_eps <= 0:
    raise JaxdlError(f"buffer.priority_eps={b.priority_eps} must be > 0")
  if c.eval.episodes <= 0:
    raise JaxdlError(f"eval.episodes={c.eval.episodes} must be > 0")
  if c.eval.select not in ("last", "best"):
    raise JaxdlError(f"eval.select='{c.eval.select}' must be 'last' or 'best'")
  if c.eval.validate_every < 0 or c.eval.validate_every % t.log_every:
    raise JaxdlError(f"eval.validate_every={c.eval.validate_every} must be 0 (every train.log_every) or a "
                     f"multiple of train.log_every={t.log_every}")


@dataclass(frozen=True)
class Setup:
  """The pieces a config builds, shared by the jitted path and the host loop.

  Attributes:
    network: the Q-network module.
    tx: the optimizer.
    epsilon: env step -> exploration rate.
    update: :func:`dqn.update` with the config's options bound.
    prioritization: prioritised replay's settings, None for uniform replay.
    num_envs, iterations, warmup_iterations, buffer_rows: the run's sizes.
  """

  config: Any
  network: nn.Module
  tx: optax.GradientTransformation
  epsilon: optax.Schedule
  update: Any
  num_envs: int
  iterations: int
  warmup_iterations: int
  buffer_rows: int
  prioritization: dqn.Prioritization | None = None

  def apply(self, params, obs):
    return self.network.apply({"params": params}, obs)


def build(c: ml_collections.ConfigDict, num_actions: int) -> Setup:
  """Builds the network, optimizer and bound update for ``num_actions`` actions."""
  t = c.train
  num_envs = c.env.num_envs
  iterations = max(t.env_steps // num_envs, 1)
  warmup = min(-(-t.learning_starts // num_envs), iterations)
  kwargs = {"dueling": c.model.dueling}
  if c.model.name == "mlp":
    kwargs["hidden"] = tuple(c.model.hidden)
  network = QNETS[c.model.name](num_actions, **kwargs)
  num_updates = max((iterations - warmup) * t.updates_per_iteration, 1)
  tx = make_optimizer(c.optim, num_updates)
  prioritization = None
  if c.buffer.prioritized:
    prioritization = dqn.Prioritization(alpha=c.buffer.alpha, eps=c.buffer.priority_eps,
                                        beta=optax.linear_schedule(c.buffer.beta_start, 1.0, num_updates))
  update = functools.partial(
      dqn.update, apply_fn=network.apply, tx=tx, double=t.double, loss=t.loss, huber_delta=t.huber_delta,
      target_every=t.target_every, tau=t.tau)
  return Setup(config=c, network=network, tx=tx,
               epsilon=dqn.epsilon_schedule(c.epsilon.start, c.epsilon.end,
                                            int(c.epsilon.fraction * t.env_steps)),
               update=update, num_envs=num_envs, iterations=iterations, warmup_iterations=warmup,
               buffer_rows=max(c.buffer.size // num_envs, t.n_step), prioritization=prioritization)


@functools.partial(jax.jit, static_argnums=(0, 1))  # one program, not an eager op per line
def seed_keys(seed: int, num_seeds: int) -> jax.Array:
  """(S, 2) one key per seed: ``fold_in(PRNGKey(seed), s)``, for both executors."""
  root = jax.random.PRNGKey(seed)
  return jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(num_seeds))


def make_optimizer(optim: ml_collections.ConfigDict, num_updates: int) -> optax.GradientTransformation:
  """The ``optim`` section's optimizer (``jaxdl.optim``), its schedule spanning ``num_updates`` updates.

  'constant' passes the learning rate as a float rather than a schedule: the
  optimizer state then holds no step count, as with ``optax.adam(lr)``, so DQN
  checkpoints and ``state_sha256`` stay what they were before DQN used
  ``jaxdl.optim``.
  """
  lr = (optim.learning_rate if optim.schedule == "constant"
        else optim_lib.schedule_from_config(optim, num_updates))
  return optim_lib.optimizer_from_config(optim, lr)
