"""Classic-control environments in JAX, ``EnvState`` and ``EnvParams`` apart (gymnax style).

Each environment is a stateless object with pure methods::

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

``step`` resets an episode that ended (terminated or truncated) from ``key``
and returns the new episode's first observation; the last observation of the
finished episode is ``info["final_obs"]`` (what a replay buffer stores as the
next observation). Everything is ``jit``/``vmap``-able; the time limit lives in
the state (``time``) and the params (``max_steps``), so truncation happens
inside the jitted step exactly where Gymnasium's ``TimeLimit`` puts it.

The dynamics follow Gymnasium's ``CartPole-v1``, ``Acrobot-v1`` and
``MountainCar-v0`` (https://gymnasium.farama.org/environments/classic_control/)
and are tested against them step by step in ``tests/test_envs.py``. JAX
computes in float32 where Gymnasium uses float64, so observations agree to
about 1e-6 per step.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnasium.envs.phys2d import cartpole as gym_cartpole


class Environment:
  """The interface: ``reset``, ``step`` (with auto-reset), sizes and default params."""

  name: str = ""
  num_actions: int = 0
  observation_shape: tuple[int, ...] = ()

  @property
  def default_params(self) -> Any:
    raise NotImplementedError

  def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
    """Draws an initial state; returns ``(obs, state)``."""
    raise NotImplementedError

  def step_env(self, key: jax.Array, state: Any, action: jax.Array, params: Any):
    """One transition without auto-reset: ``(obs, state, reward, terminated)``."""
    raise NotImplementedError

  def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any):
    """One transition; a finished episode is replaced by a fresh one.

    Returns:
      ``(obs, state, reward, terminated, truncated, info)``. ``obs`` and
      ``state`` are the new episode's when the episode ended; ``truncated``
      is true when the time limit ended an episode that did not terminate;
      ``info["final_obs"]`` is the true next observation either way.
    """
    next_obs, next_state, reward, terminated = self.step_env(key, state, action, params)
    truncated = (next_state.time >= params.max_steps) & ~terminated
    done = terminated | truncated
    reset_obs, reset_state = self.reset(key, params)
    state = jax.tree_util.tree_map(lambda r, n: jnp.where(done, r, n), reset_state, next_state)
    obs = jnp.where(done, reset_obs, next_obs)
    return obs, state, reward, terminated, truncated, {"final_obs": next_obs}


# ------------------------------------------------------------------ CartPole --


@struct.dataclass
class CartPoleState:
  physics: jax.Array  # (4,) x, x_dot, theta, theta_dot
  time: jax.Array  # steps taken in this episode


@struct.dataclass
class CartPoleParams:
  physics: gym_cartpole.CartPoleParams
  max_steps: int = struct.field(pytree_node=False, default=500)  # CartPole-v1's TimeLimit


class CartPole(Environment):
  """``CartPole-v1`` on top of Gymnasium's functional JAX CartPole.

  Gymnasium's functional params set ``polemass_length = masspole + length``
  (0.6); ``CartPole-v1`` uses ``masspole * length`` (0.1 * 0.5 = 0.05), so the
  default params here pass 0.05 (see known trap 1 in docs/design.md).
  """

  name = "CartPole-v1"
  num_actions = 2
  observation_shape = (4,)
  _func = gym_cartpole.CartPoleFunctional()

  @property
  def default_params(self) -> CartPoleParams:
    masspole, length = 0.1, 0.5  # CartPole-v1's pole
    return CartPoleParams(physics=gym_cartpole.CartPoleParams(polemass_length=masspole * length))

  def reset(self, key, params):
    physics = self._func.initial(key, params.physics).astype(jnp.float32)
    return physics, CartPoleState(physics=physics, time=jnp.zeros((), jnp.int32))

  def step_env(self, key, state, action, params):
    physics = self._func.transition(state.physics, action, None, params.physics)
    terminated = self._func.terminal(physics, None, params.physics)
    # CartPole-v1 pays 1 for every step, the terminating one included.
    reward = jnp.ones((), jnp.float32)
    return physics, CartPoleState(physics=physics, time=state.time + 1), reward, terminated


# ------------------------------------------------------------------- Acrobot --


@struct.dataclass
class AcrobotState:
  physics: jax.Array  # (4,) theta1, theta2, dtheta1, dtheta2
  time: jax.Array


@struct.dataclass
class AcrobotParams:
  # Gymnasium's AcrobotEnv class constants (the "book" dynamics of Sutton & Barto).
  dt: float = 0.2
  link_length_1: float = 1.0
  link_mass_1: float = 1.0
  link_mass_2: float = 1.0
  link_com_pos_1: float = 0.5
  link_com_pos_2: float = 0.5
  link_moi: float = 1.0
  max_vel_1: float = 4 * math.pi
  max_vel_2: float = 9 * math.pi
  gravity: float = 9.8
  max_steps: int = struct.field(pytree_node=False, default=500)  # Acrobot-v1's TimeLimit


class Acrobot(Environment):
  """``Acrobot-v1``: swing the tip above the bar; -1 per step until it is there."""

  name = "Acrobot-v1"
  num_actions = 3
  observation_shape = (6,)

  @property
  def default_params(self) -> AcrobotParams:
    return AcrobotParams()

  @staticmethod
  def _obs(s):
    return jnp.stack([jnp.cos(s[0]), jnp.sin(s[0]), jnp.cos(s[1]), jnp.sin(s[1]), s[2], s[3]])

  def reset(self, key, params):
    physics = jax.random.uniform(key, (4,), jnp.float32, -0.1, 0.1)  # Gymnasium's reset bounds
    return self._obs(physics), AcrobotState(physics=physics, time=jnp.zeros((), jnp.int32))

  @staticmethod
  def _dsdt(s, torque, p):
    m1, m2, l1 = p.link_mass_1, p.link_mass_2, p.link_length_1
    lc1, lc2, i1, i2, g = p.link_com_pos_1, p.link_com_pos_2, p.link_moi, p.link_moi, p.gravity
    theta1, theta2, dtheta1, dtheta2 = s
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2)) + i1 + i2
    d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + i2
    phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - jnp.pi / 2.0)
    phi1 = (-m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - jnp.pi / 2) + phi2)
    ddtheta2 = ((torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2) - phi2)
                / (m2 * lc2**2 + i2 - d2**2 / d1))
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])

  def step_env(self, key, state, action, params):
    torque = action.astype(jnp.float32) - 1.0  # actions 0, 1, 2 -> torques -1, 0, +1
    s, dt = state.physics, params.dt
    # One classical Runge-Kutta step over [0, dt], as Gymnasium's rk4 does.
    k1 = self._dsdt(s, torque, params)
    k2 = self._dsdt(s + dt / 2 * k1, torque, params)
    k3 = self._dsdt(s + dt / 2 * k2, torque, params)
    k4 = self._dsdt(s + dt * k3, torque, params)
    ns = s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    wrap = lambda x: (x + jnp.pi) % (2 * jnp.pi) - jnp.pi  # angles into [-pi, pi)
    ns = jnp.stack([wrap(ns[0]), wrap(ns[1]), jnp.clip(ns[2], -params.max_vel_1, params.max_vel_1),
                    jnp.clip(ns[3], -params.max_vel_2, params.max_vel_2)]).astype(jnp.float32)
    terminated = -jnp.cos(ns[0]) - jnp.cos(ns[1] + ns[0]) > 1.0  # the tip above the bar
    reward = jnp.where(terminated, 0.0, -1.0).astype(jnp.float32)
    return self._obs(ns), AcrobotState(physics=ns, time=state.time + 1), reward, terminated


# --------------------------------------------------------------- MountainCar --


@struct.dataclass
class MountainCarState:
  physics: jax.Array  # (2,) position, velocity
  time: jax.Array


@struct.dataclass
class MountainCarParams:
  # Gymnasium's MountainCarEnv constants.
  min_position: float = -1.2
  max_position: float = 0.6
  max_speed: float = 0.07
  goal_position: float = 0.5
  goal_velocity: float = 0.0
  force: float = 0.001
  gravity: float = 0.0025
  max_steps: int = struct.field(pytree_node=False, default=200)  # MountainCar-v0's TimeLimit


class MountainCar(Environment):
  """``MountainCar-v0``: drive an underpowered car up the right hill; -1 per step."""

  name = "MountainCar-v0"
  num_actions = 3
  observation_shape = (2,)

  @property
  def default_params(self) -> MountainCarParams:
    return MountainCarParams()

  def reset(self, key, params):
    position = jax.random.uniform(key, (), jnp.float32, -0.6, -0.4)  # Gymnasium's reset bounds
    physics = jnp.stack([position, jnp.zeros((), jnp.float32)])
    return physics, MountainCarState(physics=physics, time=jnp.zeros((), jnp.int32))

  def step_env(self, key, state, action, params):
    position, velocity = state.physics
    velocity = velocity + (action - 1) * params.force + jnp.cos(3 * position) * (-params.gravity)
    velocity = jnp.clip(velocity, -params.max_speed, params.max_speed)
    position = jnp.clip(position + velocity, params.min_position, params.max_position)
    velocity = jnp.where((position == params.min_position) & (velocity < 0), 0.0, velocity)
    terminated = (position >= params.goal_position) & (velocity >= params.goal_velocity)
    physics = jnp.stack([position, velocity]).astype(jnp.float32)
    reward = -jnp.ones((), jnp.float32)
    return physics, MountainCarState(physics=physics, time=state.time + 1), reward, terminated


# ------------------------------------------------------------------ registry --

JAX_ENVS: dict[str, type[Environment]] = {
    "CartPole-v1": CartPole,
    "Acrobot-v1": Acrobot,
    "MountainCar-v0": MountainCar,
}


def make(env_id: str) -> tuple[Environment, Any]:
  """``(env, default_params)`` for a JAX-native environment id.

  Raises:
    KeyError: the id has no JAX port (``JAX_ENVS`` lists those that do).
  """
  env = JAX_ENVS[env_id]()
  return env, env.default_params
