"""A replay buffer as a pure pytree: circular, uniform sampling, n-step windows.

The buffer is time-major: row ``t`` holds the transitions of all ``E``
parallel environments at one time step, so an n-step window is ``n``
consecutive rows of one column. It is a ``flax.struct`` dataclass of arrays,
so it lives inside the training state: it is jitted, vmapped over seeds,
scanned, and checkpointed with everything else.

    buf = buffer.init(capacity_rows, num_envs, obs_example)
    buf = buffer.add(buf, obs, action, reward, next_obs, terminated, done)   # one row
    batch = buffer.sample(buf, key, batch_size, n_step=3, gamma=0.99)
"""

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


def init(capacity: int, num_envs: int, obs: jax.Array) -> ReplayBuffer:
  """An empty buffer of ``capacity`` rows for observations like ``obs`` (one, unbatched)."""
  obs = jnp.asarray(obs)
  shape = (capacity, num_envs)
  return ReplayBuffer(
      obs=jnp.zeros(shape + obs.shape, obs.dtype),
      action=jnp.zeros(shape, jnp.int32),
      reward=jnp.zeros(shape, jnp.float32),
      next_obs=jnp.zeros(shape + obs.shape, obs.dtype),
      terminated=jnp.zeros(shape, bool),
      done=jnp.zeros(shape, bool),
      pos=jnp.zeros((), jnp.int32),
      size=jnp.zeros((), jnp.int32))


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
  valid = jnp.maximum(buf.size - (n_step - 1), 1)  # windows that fit in what is stored
  oldest = (buf.pos - buf.size) % capacity
  start = jax.random.randint(t_key, (batch_size,), 0, valid)  # (B,) logical, 0 = oldest
  env = jax.random.randint(e_key, (batch_size,), 0, num_envs)  # (B,)
  rows = (oldest + start[:, None] + jnp.arange(n_step)[None, :]) % capacity  # (B, n)
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
  first = rows[:, 0]
  return {"obs": buf.obs[first, env], "action": buf.action[first, env], "reward": ret,
          "next_obs": buf.next_obs[last, env], "discount": discount}
