"""JAX environments against Gymnasium's, step by step; the Gymnasium host adapter."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import envs
from jaxdl.utils.errors import JaxdlError

# Random states inside the region each env visits; the bounds are the
# termination limits (CartPole), the velocity limits (Acrobot), the track (MountainCar).
STATE_BOUNDS = {
    "CartPole-v1": (np.array([-2.6, -3.0, -0.25, -3.5]), np.array([2.6, 3.0, 0.25, 3.5])),
    "Acrobot-v1": (np.array([-np.pi, -np.pi, -4 * np.pi, -9 * np.pi]), np.array([np.pi, np.pi, 4 * np.pi, 9 * np.pi])),
    "MountainCar-v0": (np.array([-1.2, -0.07]), np.array([0.6, 0.07])),
}
NUM_STATES = 1000
# float32 (JAX) against float64 (Gymnasium): one RK4 step of Acrobot at the
# velocity limits loses about 4e-4 relative, one Euler step of the others 1e-6.
TOLERANCE = {"Acrobot-v1": {"rtol": 1e-3, "atol": 1e-4}}


@pytest.mark.parametrize("env_id", sorted(envs.JAX_ENVS))
def test_one_step_matches_gymnasium_on_random_states(env_id):
  env, params = envs.make(env_id)
  rng = np.random.default_rng(0)
  low, high = STATE_BOUNDS[env_id]
  states = rng.uniform(low, high, (NUM_STATES, len(low))).astype(np.float32)
  if env_id == "MountainCar-v0":
    states[: NUM_STATES // 10, 0] = -1.2  # on the left wall, where the velocity is zeroed
    states[NUM_STATES // 10: NUM_STATES // 5, 0] = rng.uniform(0.45, 0.6, NUM_STATES // 10)  # near the goal
  actions = rng.integers(0, env.num_actions, NUM_STATES)
  _, template = env.reset(jax.random.PRNGKey(0), params)
  batch = template.replace(physics=jnp.asarray(states), time=jnp.zeros((NUM_STATES,), jnp.int32))
  step = jax.jit(jax.vmap(lambda s, a: env.step_env(jax.random.PRNGKey(0), s, a, params)))
  obs, _, reward, terminated = jax.device_get(step(batch, jnp.asarray(actions, jnp.int32)))

  reference = gym.make(env_id).unwrapped
  reference.reset(seed=0)
  ref_obs, ref_reward, ref_terminated = [], [], []
  for s, a in zip(states, actions):
    reference.state = s.astype(np.float64) if env_id != "Acrobot-v1" else s.copy()
    reference.steps_beyond_terminated = None  # CartPole: each state is a fresh step, not one past the end
    o, r, term, _, _ = reference.step(int(a))
    ref_obs.append(o), ref_reward.append(r), ref_terminated.append(term)
  np.testing.assert_allclose(obs, np.stack(ref_obs), **TOLERANCE.get(env_id, {"rtol": 1e-5, "atol": 2e-5}))
  np.testing.assert_array_equal(reward, np.asarray(ref_reward, np.float32))
  np.testing.assert_array_equal(terminated, np.asarray(ref_terminated))
  # The sample exercised both outcomes (except Acrobot, whose goal a random state rarely reaches).
  assert terminated.any() or env_id == "Acrobot-v1"
  assert not terminated.all()


def test_cartpole_default_params_fix_polemass_length():
  env, params = envs.make("CartPole-v1")
  assert params.physics.polemass_length == pytest.approx(0.05)  # masspole * length, as CartPole-v1
  assert gym.make("CartPole-v1").unwrapped.polemass_length == pytest.approx(0.05)


def _policy(env_id, physics, key):
  """CartPole: a linear controller that balances to the time limit, with
  random pushes in the first 30 steps of each 600 (so some episodes fall);
  the others: uniformly random actions."""
  if env_id != "CartPole-v1":
    return jax.random.randint(key, (), 0, 3)
  x, x_dot, theta, theta_dot = physics
  return (3 * theta + theta_dot + 0.1 * x + 0.5 * x_dot > 0).astype(jnp.int32)


@pytest.mark.parametrize("env_id", sorted(envs.JAX_ENVS))
def test_episodes_match_gymnasium_with_time_limit_and_auto_reset(env_id):
  """Whole episodes through ``env.step`` (auto-reset) against ``gym.make`` (TimeLimit).

  The JAX rollout runs in one scan; the Gymnasium env is then re-synchronised
  to each JAX pre-step state (the two compute in float32 and float64) and
  stepped, so termination, truncation at the time limit and the reset all
  line up step by step.
  """
  env, params = envs.make(env_id)
  steps = {"CartPole-v1": 1100, "Acrobot-v1": 1010, "MountainCar-v0": 410}[env_id]

  def body(carry, i):
    obs, state = carry
    key = jax.random.PRNGKey(i)
    action = jnp.where(i % 600 < 30, jax.random.bernoulli(key).astype(jnp.int32),
                       _policy(env_id, state.physics, key))
    out = env.step(key, state, action, params)
    return (out[0], out[1]), (state.physics, action, out[0], out[2], out[3], out[4], out[5]["final_obs"], out[1].time)

  init = env.reset(jax.random.PRNGKey(123), params)
  _, trace = jax.jit(lambda: jax.lax.scan(body, init, jnp.arange(steps)))()
  physics, actions, obs, rewards, terminated, truncated, final_obs, time = jax.device_get(trace)

  reference = gym.make(env_id)
  reference.reset(seed=0)
  tolerance = TOLERANCE.get(env_id, {"rtol": 1e-5, "atol": 2e-5})
  for i in range(steps):
    reference.unwrapped.state = np.array(physics[i], np.float64 if env_id != "Acrobot-v1" else np.float32)
    ref_obs, ref_reward, ref_term, ref_trunc, _ = reference.step(int(actions[i]))
    np.testing.assert_allclose(final_obs[i], ref_obs, **tolerance)
    assert (rewards[i], terminated[i], truncated[i]) == (ref_reward, ref_term, ref_trunc), i
    if ref_term or ref_trunc:
      assert time[i] == 0  # a fresh episode
      np.testing.assert_array_equal(obs[i], env.reset(jax.random.PRNGKey(i), params)[0])
      reference.reset()
  assert truncated.sum() >= 1  # an episode reached the time limit
  if env_id == "CartPole-v1":
    assert terminated.sum() >= 1


def test_reset_distribution_matches_gymnasium():
  for env_id, (low, high) in {"CartPole-v1": (-0.05, 0.05), "Acrobot-v1": (-0.1, 0.1)}.items():
    env, params = envs.make(env_id)
    _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), 4000), params)
    physics = np.asarray(states.physics)
    assert physics.min() >= low and physics.max() <= high
    np.testing.assert_allclose(physics.mean(axis=0), 0.0, atol=0.01 * (high - low))
  env, params = envs.make("MountainCar-v0")
  _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), 4000), params)
  physics = np.asarray(states.physics)
  assert physics[:, 0].min() >= -0.6 and physics[:, 0].max() <= -0.4 and np.all(physics[:, 1] == 0)


def test_host_adapter_returns_final_observations():
  vec = envs.make_vector_env("CartPole-v1", 3)
  obs, _ = vec.reset(seed=0)
  ended = 0
  for _ in range(200):
    new_obs, _, terminated, truncated, infos = vec.step(np.ones(3, np.int64))  # always right: falls fast
    done = terminated | truncated
    final = envs.final_observations(new_obs, infos, done)
    for i in np.flatnonzero(done):
      ended += 1
      assert abs(final[i][2]) > 0.2 or abs(final[i][0]) > 2.4  # the pole fell or the cart left
      assert abs(new_obs[i]).max() <= 0.05  # a fresh episode
    np.testing.assert_array_equal(final[~done], new_obs[~done])
  assert ended >= 3
  vec.close()


def test_host_adapter_rejects_bad_ids():
  with pytest.raises(JaxdlError, match="CartPole-v9.*did you mean 'CartPole-v1'"):
    envs.make_vector_env("CartPole-v9", 1)
  with pytest.raises(JaxdlError, match="Pendulum-v1.*Box action space"):
    envs.make_vector_env("Pendulum-v1", 1)
