"""A replay buffer as a pure pytree: circular, uniform or prioritised sampling, n-step windows.

The buffer is time-major: row ``t`` holds the transitions of all ``E``
parallel environments at one time step, so an n-step window is ``n``
consecutive rows of one column. It is a ``flax.struct`` dataclass of arrays,
so it lives inside the training state: it is jitted, vmapped over seeds,
scanned, and checkpointed with everything else.

    buf = buffer.init(capacity_rows, num_envs, obs_example)
    buf = buffer.add(buf, obs, action, reward, next_obs, terminated, done)   # one row
    batch = buffer.sample(buf, key, batch_size, n_step=3, gamma=0.99)

Prioritised replay (Schaul et al. 2016, https://arxiv.org/abs/1511.05952,
the proportional variant) is the same buffer plus a priority per transition:

    buf = buffer.init(capacity_rows, num_envs, obs_example, prioritized=True)
    batch, where = buffer.sample_prioritized(buf, key, batch_size, beta=0.4, n_step=3)
    buf = buffer.set_priorities(buf, where, (abs(td) + eps) ** alpha)
"""

import math

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayBuffer:
  """Arrays of shape (C, E, ...) with C rows, plus the write position and fill.

  ``terminated`` marks a true end (no bootstrap); ``done`` marks any episode
  end, termination or truncation (an n-step window stops there).
  """

  obs: jax.Array  # (C, E, *obs_shape)
  action: jax.Array  # (C, E) int32
  reward: jax.Array  # (C, E) float32
  next_obs: jax.Array  # (C, E, *obs_shape)
  terminated: jax.Array  # (C, E) bool
  done: jax.Array  # (C, E) bool
  pos: jax.Array  # () int32, the next row written
  size: jax.Array  # () int32, rows filled (<= C)

  @property
  def capacity(self) -> int:
    return self.action.shape[0]


@struct.dataclass
class PrioritizedReplayBuffer(ReplayBuffer):
  """A :class:`ReplayBuffer` with a sampling priority per stored transition.

  A subclass rather than optional fields, so that a uniform buffer is exactly
  the pytree it always was (same leaves, same checkpoints, same hashes).

  ``priority`` holds ``p_i^alpha`` with ``p_i = |delta_i| + eps`` (the TD
  error of the window starting at transition i when it was last learned
  from): stored already raised to ``alpha`` so that sampling never
  recomputes C * E powers. New transitions get ``max_priority``, the largest
  value stored so far, 1 before any update (Schaul et al., Algorithm 1: new
  transitions have no TD error yet and are guaranteed to be seen).
  """

  priority: jax.Array  # (C, E) float32, p^alpha
  max_priority: jax.Array  # () float32, the largest p^alpha stored so far


def init(capacity: int, num_envs: int, obs: jax.Array, *, prioritized: bool = False) -> ReplayBuffer:
  """An empty buffer of ``capacity`` rows for observations like ``obs`` (one, unbatched).

  With ``prioritized``: a :class:`PrioritizedReplayBuffer`.
  """
  obs = jnp.asarray(obs)
  shape = (capacity, num_envs)
  fields = dict(
      obs=jnp.zeros(shape + obs.shape, obs.dtype),
      action=jnp.zeros(shape, jnp.int32),
      reward=jnp.zeros(shape, jnp.float32),
      next_obs=jnp.zeros(shape + obs.shape, obs.dtype),
      terminated=jnp.zeros(shape, bool),
      done=jnp.zeros(shape, bool),
      pos=jnp.zeros((), jnp.int32),
      size=jnp.zeros((), jnp.int32))
  if not prioritized:
    return ReplayBuffer(**fields)
  return PrioritizedReplayBuffer(**fields, priority=jnp.ones(shape, jnp.float32),
                                 max_priority=jnp.ones((), jnp.float32))


def add(buf: ReplayBuffer, obs, action, reward, next_obs, terminated, done, *, row=None) -> ReplayBuffer:
  """Writes one row (one transition per environment, each (E, ...)) over the oldest.

  Args:
    row: where to write, if the caller knows it without looking at the buffer
      (it must equal ``buf.pos``). Under ``vmap`` over seeds ``buf.pos`` is
      batched, which turns the write into a scatter that XLA's CPU backend
      copies the whole buffer for; an unbatched ``row`` keeps it an in-place
      ``dynamic_update_slice``.
  """
  row_index = buf.pos if row is None else row
  row = {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs,
         "terminated": terminated, "done": done}
  if isinstance(buf, PrioritizedReplayBuffer):  # new transitions: the highest priority so far
    row["priority"] = jnp.broadcast_to(buf.max_priority, buf.priority.shape[1:])
  new = {k: jax.lax.dynamic_update_index_in_dim(getattr(buf, k), jnp.asarray(v, getattr(buf, k).dtype),
                                                row_index, axis=0)
         for k, v in row.items()}
  return buf.replace(**new, pos=(buf.pos + 1) % buf.capacity,
                     size=jnp.minimum(buf.size + 1, buf.capacity))


def sample(buf: ReplayBuffer, key: jax.Array, batch_size: int, *, n_step: int = 1,
           gamma: float = 0.99) -> dict[str, jax.Array]:
  """Draws ``batch_size`` windows uniformly and folds each into one n-step transition.

  A window starts at any stored transition that has ``n_step - 1`` newer rows
  after it (with ``n_step=1``: any stored transition), in any environment,
  with equal probability. Its return is ``sum_k gamma^k r_{t+k}`` up to the
  first episode end inside the window (``m <= n`` terms); the target then
  bootstraps from ``next_obs[t+m-1]`` with discount ``gamma^m``, or not at
  all if that end was a termination.

  Returns:
    ``obs`` (B, ...), ``action`` (B,), ``reward`` (B,) (the n-step return),
    ``next_obs`` (B, ...), ``discount`` (B,) (``gamma^m``, 0 on termination).
  """
  capacity, num_envs = buf.action.shape
  t_key, e_key = jax.random.split(key)
  valid, oldest = _valid_starts(buf, n_step)
  start = jax.random.randint(t_key, (batch_size,), 0, valid)  # (B,) logical, 0 = oldest
  env = jax.random.randint(e_key, (batch_size,), 0, num_envs)  # (B,)
  return _windows(buf, (oldest + start) % capacity, env, n_step, gamma)


def _valid_starts(buf: ReplayBuffer, n_step: int) -> tuple[jax.Array, jax.Array]:
  """(rows that can start an n-step window, counted from the oldest; the oldest row's slot)."""
  valid = jnp.maximum(buf.size - (n_step - 1), 1)  # windows that fit in what is stored
  oldest = (buf.pos - buf.size) % buf.capacity
  return valid, oldest


def _windows(buf: ReplayBuffer, first: jax.Array, env: jax.Array, n_step: int, gamma: float) -> dict[str, jax.Array]:
  """Folds the windows starting at slots ``first`` (B,) of environments ``env`` (B,); see :func:`sample`."""
  capacity = buf.capacity
  batch_size = first.shape[0]
  rows = (first[:, None] + jnp.arange(n_step)[None, :]) % capacity  # (B, n)
  rewards = buf.reward[rows, env[:, None]]  # (B, n)
  dones = buf.done[rows, env[:, None]]  # (B, n)
  # Step k counts if no episode ended at an earlier step of the window.
  not_done = jnp.concatenate([jnp.ones((batch_size, 1), jnp.int32), (~dones[:, :-1]).astype(jnp.int32)], axis=1)
  alive = jnp.cumprod(not_done, axis=1)  # (B, n) 1 up to and including the first end
  length = alive.sum(axis=1)  # (B,) m in 1..n
  powers = gamma ** jnp.arange(n_step, dtype=jnp.float32)  # (n,)
  ret = (rewards * alive.astype(jnp.float32) * powers[None, :]).sum(axis=1)  # (B,)
  last = jnp.take_along_axis(rows, (length - 1)[:, None], axis=1)[:, 0]  # (B,)
  terminated = buf.terminated[last, env]
  discount = jnp.where(terminated, 0.0, gamma ** length.astype(jnp.float32))
  return {"obs": buf.obs[first, env], "action": buf.action[first, env], "reward": ret,
          "next_obs": buf.next_obs[last, env], "discount": discount}


# -------------------------------------------------------------- prioritised --


def sample_prioritized(buf: PrioritizedReplayBuffer, key: jax.Array, batch_size: int, *, beta: jax.Array | float,
                       n_step: int = 1, gamma: float = 0.99,
                       ) -> tuple[dict[str, jax.Array], tuple[jax.Array, jax.Array]]:
  """Draws windows with probability proportional to their stored ``p^alpha``.

  Only the starts that :func:`sample` could draw are eligible (with n-step,
  the newest ``n_step - 1`` rows cannot start a window): their probability is
  ``P(i) = p_i^alpha / sum_k p_k^alpha`` over the ``N`` eligible starts. The
  draw is stratified as in Schaul et al. (Appendix B.2.1): the total mass is
  cut into ``batch_size`` equal ranges and one value is drawn in each.

  Why no sum tree: a sum tree gives O(log N) sampling and updates, but its
  descent is ``log N`` dependent gathers and its update a serial walk up the
  tree per written priority; on accelerators and under ``vmap`` those are
  small, latency-bound ops, and the tree's 2N floats must also be kept in
  the state. Here each draw recomputes prefix sums, in two levels of blocks
  of about sqrt(N) (block totals and their prefix sums, then prefix sums
  within the B chosen blocks): O(N) streaming work that vectorises, no
  extra state, and priority writes are one scatter of B values. At the
  replay sizes of these presets (10^4 to 10^5 transitions per seed) that is
  cheaper than the tree's serial walks would be per step under ``vmap``
  (``benchmarks/dqn_prioritized.py`` measures it); at 10^6 and beyond the
  O(N) pass per draw dominates and a sum tree would win.

  Args:
    buf: a buffer made with ``init(..., prioritized=True)``.
    beta: the importance-sampling exponent (annealed towards 1 by the caller).

  Returns:
    The batch of :func:`sample` plus ``weight`` (B,), the importance-sampling
    weights ``(N * P(i))^-beta`` divided by their maximum over the batch (so
    they only scale updates down, Schaul et al. section 3.4), and ``where``:
    (slots, envs), each (B,), the sampled windows' positions for
    :func:`set_priorities`.
  """
  capacity, num_envs = buf.action.shape
  valid, oldest = _valid_starts(buf, n_step)
  eligible = valid * num_envs  # N
  # In logical order (oldest row first) the eligible starts are exactly the
  # first N entries, so clamping the drawn index below N excludes the rest
  # whatever the rounding of the prefix sums.
  logical = jnp.roll(buf.priority, -oldest, axis=0).reshape(-1)  # (C * E,)
  mass = jnp.where(jnp.arange(capacity * num_envs) < eligible, logical, 0.0)
  u = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) / batch_size  # (B,) stratified in [0, 1)
  index, total = _draw(mass, u)
  index = jnp.minimum(index, eligible - 1)
  prob = jnp.maximum(mass[index] / total, jnp.finfo(jnp.float32).tiny)  # (B,) P(i), > 0 even with eps = 0
  weight = (eligible.astype(jnp.float32) * prob) ** -beta
  start, env = index // num_envs, index % num_envs
  first = (oldest + start) % capacity
  batch = _windows(buf, first, env, n_step, gamma)
  return {**batch, "weight": weight / weight.max()}, (first, env)


def _draw(mass: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Indices ``i`` with ``cdf[i-1] <= u * total < cdf[i]`` for ``mass`` (N,) and ``u`` (B,) in [0, 1).

  Two levels of blocks of ``M ~ sqrt(N)`` entries: the block is found from
  the prefix sums of the block totals, the entry from the prefix sums inside
  that block. Prefix sums are ``associative_scan`` (``jnp.cumsum`` lowers to
  a ``reduce_window`` that XLA's CPU backend ran 3-4x slower) and the search
  counts the sums at or below the target, (B, K) and (B, M) compares with no
  loop (``jnp.searchsorted`` is a loop of dependent gathers). Returns
  (indices (B,), the total mass).
  """
  n = mass.shape[0]
  block = math.isqrt(n - 1) + 1  # M >= sqrt(N)
  blocks = -(-n // block)  # K
  grid = jnp.pad(mass, (0, blocks * block - n)).reshape(blocks, block)  # (K, M)
  block_cdf = jax.lax.associative_scan(jnp.add, grid.sum(axis=1))  # (K,)
  total = block_cdf[-1]
  target = u * total  # (B,)
  k = jnp.minimum((block_cdf[None, :] <= target[:, None]).sum(axis=1), blocks - 1)  # (B,)
  before = jnp.where(k > 0, block_cdf[k - 1], 0.0)  # (B,) mass of the blocks ahead of k
  inner_cdf = jax.lax.associative_scan(jnp.add, grid[k], axis=1)  # (B, M)
  j = (inner_cdf <= (target - before)[:, None]).sum(axis=1)  # (B,)
  return k * block + jnp.minimum(j, block - 1), total


def set_priorities(buf: PrioritizedReplayBuffer, where: tuple[jax.Array, jax.Array],
                   priority: jax.Array) -> PrioritizedReplayBuffer:
  """Stores ``priority`` (B,) (already ``p^alpha``) at the windows ``where`` returned by :func:`sample_prioritized`.

  One scatter of B values into the (C, E) priorities. Under ``vmap`` over
  seeds the positions are batched and XLA's CPU backend may copy the whole
  (C, E) array for it (see :func:`add`); that is C * E floats, the same
  order of work as the draw that picked them, and the large arrays (the
  observations) are never written here.
  """
  slots, envs = where
  return buf.replace(priority=buf.priority.at[slots, envs].set(priority),
                     max_priority=jnp.maximum(buf.max_priority, priority.max()))
