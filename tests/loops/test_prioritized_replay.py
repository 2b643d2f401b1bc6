"""Prioritised replay (Schaul et al. 2016, proportional) and DQN's optimizer through jaxdl.optim."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli
from jaxdl import configs
from jaxdl.loops.dqn import agent as agent_lib
from jaxdl.loops.dqn import buffer, jitted
from jaxdl.loops.dqn import learner as dqn
from jaxdl.loops.dqn.config import build

EXPERIMENTS = pathlib.Path(__file__).parents[2] / "experiments"
RANDOM_CARTPOLE = 22.4  # mean return of the uniformly random policy on CartPole-v1 (tests/loops/test_dqn.py measures it)


def preset(name, overrides=()):
  config, _ = configs.load_preset(EXPERIMENTS / f"{name}.py")
  return configs.apply_overrides(config, list(overrides))


@jax.jit
def _fill(buf, ids):
  """Writes one row per entry of ``ids`` (R, E): transition (t, e) gets obs ``ids[t, e]``."""
  def write(buf, row):
    e = row.shape[0]
    return buffer.add(buf, row[:, None], jnp.zeros(e), jnp.ones(e), row[:, None] + 0.5, jnp.zeros(e, bool),
                      jnp.zeros(e, bool)), None
  return jax.lax.scan(write, buf, ids)[0]


def _filled(capacity, num_envs, rows, prioritized=True):
  """A buffer after ``rows`` writes; transition (t, e) has obs t * 10 + e."""
  ids = jnp.arange(rows, dtype=jnp.float32)[:, None] * 10 + jnp.arange(num_envs, dtype=jnp.float32)[None, :]
  return _fill(buffer.init(capacity, num_envs, jnp.zeros((1,), jnp.float32), prioritized=prioritized), ids)


def _draw(buf, keys, batch_size, n_step=1, beta=0.4):
  """Batches drawn by priority with each of ``keys``, flattened: (obs ids, weights, slots, envs)."""
  def one(key):
    batch, (slots, envs) = buffer.sample_prioritized(buf, key, batch_size, beta=beta, n_step=n_step)
    return batch["obs"][:, 0], batch["weight"], slots, envs
  return [np.asarray(x).reshape(-1) for x in jax.jit(jax.vmap(one))(keys)]


def _set_all(buf, values):
  """Stores ``values`` (C, E) as every transition's p^alpha."""
  capacity, num_envs = values.shape
  slots, envs = np.meshgrid(np.arange(capacity), np.arange(num_envs), indexing="ij")
  return buffer.set_priorities(buf, (jnp.asarray(slots.ravel()), jnp.asarray(envs.ravel())),
                               jnp.asarray(values, jnp.float32).ravel())


# --------------------------------------------------------------- sampling --


def test_draws_follow_priorities_to_the_alpha():
  alpha = 0.6
  buf = _filled(6, 3, 10)  # 18 transitions, rows 4..9, oldest in slot 4: the draw has to unroll the ring
  raw = np.arange(1, 19, dtype=np.float32).reshape(6, 3)  # p_i = |delta_i| + eps, all different
  buf = _set_all(buf, raw**alpha)
  ids, _, slots, envs = _draw(buf, jax.random.split(jax.random.PRNGKey(0), 500), 64)  # 32000 draws
  np.testing.assert_array_equal(ids, np.asarray(buf.obs)[slots, envs, 0])  # positions match what was drawn
  counts = np.zeros((6, 3))
  np.add.at(counts, (slots, envs), 1)
  expected = raw**alpha / (raw**alpha).sum() * len(ids)
  # Stratified draws vary less than multinomial ones; 5 multinomial sd still
  # separates alpha = 0.6 from alpha = 1 (proportional to p) or 0 (uniform)
  # by over 10 sd on the smallest and largest priorities.
  sd = np.sqrt(expected)
  assert np.all(np.abs(counts - expected) < 5 * sd), (counts, expected)
  for wrong in (raw / raw.sum(), np.full_like(raw, 1 / 18)):
    assert np.max(np.abs(counts - wrong * len(ids)) / sd) > 10


@pytest.mark.parametrize("rows", [5, 11])  # not yet wrapped; wrapped (oldest row in slot 3)
def test_newest_rows_never_start_an_n_step_window(rows):
  capacity, n_step = 8, 3
  buf = _filled(capacity, 2, rows)
  stored = list(range(max(rows - capacity, 0), rows))
  newest = stored[-(n_step - 1):]
  # The newest rows get a priority 10^6 times the others': any leak shows.
  is_newest = np.isin(np.arange(capacity), [r % capacity for r in newest])
  buf = _set_all(buf, np.where(is_newest[:, None], 1e6, 1.0) * np.ones((capacity, 2)))
  ids, _, _, _ = _draw(buf, jax.random.split(jax.random.PRNGKey(1), 100), 64, n_step=n_step)
  starts = set((ids // 10).astype(int))
  assert starts == set(stored[:-(n_step - 1)]), (starts, stored)


def test_importance_weights_on_a_hand_computed_example():
  buf = _set_all(_filled(4, 1, 4), np.array([[1.0], [2.0], [3.0], [4.0]]))  # P = 0.1, 0.2, 0.3, 0.4
  ids, weights, _, _ = _draw(buf, jax.random.PRNGKey(2)[None], 100, beta=0.5)
  # w_i = (N P_i)^-beta / max_j w_j. 100 strata of width 0.01 < min P: every
  # transition is in the batch, so the max is transition 0's (the least likely):
  # w_i / w_0 = (P_i / P_0)^-0.5 = 1, 2^-0.5, 3^-0.5, 4^-0.5.
  assert set(ids.astype(int)) == {0, 10, 20, 30}
  np.testing.assert_allclose(weights, (ids // 10 + 1) ** -0.5, rtol=1e-6)
  # Drawn in proportion: 10, 20, 30, 40 of the 100 (exactly, since stratified).
  np.testing.assert_array_equal(np.bincount((ids // 10).astype(int)), [10, 20, 30, 40])


def test_new_rows_get_the_highest_priority_so_far():
  buf = _filled(4, 2, 2)
  assert float(buf.max_priority) == 1.0 and np.all(np.asarray(buf.priority) == 1.0)  # Schaul et al.: p_1 = 1
  buf = buffer.set_priorities(buf, (jnp.array([0, 1]), jnp.array([1, 0])), jnp.array([5.0, 0.25]))
  buf = buffer.set_priorities(buf, (jnp.array([0]), jnp.array([0])), jnp.array([2.0]))  # lower: the max stays
  assert float(buf.max_priority) == 5.0
  buf = _fill(buf, jnp.full((1, 2), 99.0))  # written into slot 2
  np.testing.assert_array_equal(buf.priority, [[2.0, 5.0], [0.25, 1.0], [5.0, 5.0], [1.0, 1.0]])


def test_uniform_buffer_and_sampling_are_what_they_were():
  buf = _filled(6, 3, 10, prioritized=False)
  assert type(buf) is buffer.ReplayBuffer  # the same pytree as before: no priority leaves
  assert [f for f in buf.__dataclass_fields__] == ["obs", "action", "reward", "next_obs", "terminated", "done",
                                                   "pos", "size"]
  key = jax.random.PRNGKey(3)
  batch = buffer.sample(buf, key, 256, n_step=2)
  # The draw as documented: start ~ randint(t_key, 0, valid), env ~ randint(e_key, 0, E)
  # from split(key), start counted from the oldest stored row (row 4 here).
  t_key, e_key = jax.random.split(key)
  start = jax.random.randint(t_key, (256,), 0, 6 - 1)
  env = jax.random.randint(e_key, (256,), 0, 3)
  np.testing.assert_array_equal(batch["obs"][:, 0], (4 + start) * 10 + env)


# ---------------------------------------------------------------- learning --


def test_learn_writes_abs_td_plus_eps_to_the_alpha_at_the_sampled_windows():
  config = preset("dqn_cartpole", ["buffer.prioritized=True", "env.num_envs=4", "buffer.size=64",
                                   "train.batch_size=16", "train.n_step=3", "buffer.alpha=0.7"])
  setup = build(config, 2)
  agent = jax.jit(lambda key: agent_lib.init_agent(setup, key, jnp.zeros((4, 4))))(jax.random.PRNGKey(5))

  @jax.jit
  def random_rows(buf, key):  # 10 rows of random CartPole-shaped transitions with some episode ends
    def write(buf, t):
      k1, k2 = jax.random.split(jax.random.fold_in(key, t))
      end = jnp.arange(4) == t % 4
      return buffer.add(buf, jax.random.normal(k1, (4, 4)), jnp.arange(4) % 2, jnp.ones(4),
                        jax.random.normal(k2, (4, 4)), end, end), None
    return jax.lax.scan(write, buf, jnp.arange(10))[0]

  buf = random_rows(agent.buffer, jax.random.PRNGKey(6))
  buf = buf.replace(max_priority=jnp.float32(1e-3))  # so that the largest written priority is the new max
  learner = agent.learner.replace(updates=jnp.int32(7))
  key = jax.random.PRNGKey(7)
  new_learner, new_buf, _ = jax.jit(
      lambda l, b: dqn.learn(l, b, key, batch_size=16, n_step=3, gamma=0.99, update_fn=setup.update,
                             prioritization=setup.prioritization))(learner, buf)

  @jax.jit
  def by_hand(learner, buf):  # the same draw and update: beta comes from the update count
    beta = setup.prioritization.beta(learner.updates)
    batch, where = buffer.sample_prioritized(buf, key, 16, beta=beta, n_step=3, gamma=0.99)
    reference, _, td = setup.update(learner, batch)
    return reference, td, where, beta

  reference, td, (slots, envs), beta = by_hand(learner, buf)
  assert 0.4 < float(beta) < 1.0
  expected = (np.abs(np.asarray(td)) + 1e-6) ** 0.7
  np.testing.assert_allclose(np.asarray(new_buf.priority)[slots, envs], expected, rtol=1e-5)
  untouched = np.ones(buf.priority.shape, bool)
  untouched[np.asarray(slots), np.asarray(envs)] = False
  np.testing.assert_array_equal(np.asarray(new_buf.priority)[untouched], np.asarray(buf.priority)[untouched])
  np.testing.assert_allclose(new_buf.max_priority, expected.max(), rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(new_learner), jax.tree_util.tree_leaves(reference)):
    np.testing.assert_array_equal(a, b)


def test_short_jitted_run_vmapped_over_two_seeds_beats_a_random_policy():
  config = preset("dqn_cartpole", ["buffer.prioritized=True", "train.env_steps=12000", "train.learning_starts=1000",
                                   "train.log_every=250", "eval.episodes=5"])
  train = jax.jit(jax.vmap(jitted.make_train(config)))
  agent, metrics, returns = train(jax.random.split(jax.random.PRNGKey(0), 2))
  assert isinstance(agent.buffer, buffer.PrioritizedReplayBuffer) and agent.buffer.priority.shape == (2, 1250, 8)
  # Learning moved the priorities off their initial 1 and the seeds apart.
  assert float(agent.buffer.priority.std()) > 0 and not np.array_equal(agent.buffer.priority[0],
                                                                        agent.buffer.priority[1])
  per_seed = np.asarray(returns).mean(axis=1)
  assert per_seed.mean() > 3 * RANDOM_CARTPOLE and per_seed.min() > 2 * RANDOM_CARTPOLE, per_seed
  assert np.all(np.isfinite(metrics["loss"][:, -1]))


# ---------------------------------------------------------------- optimizer --


def test_optim_name_and_schedules_reach_the_dqn_optimizer():
  grads = {"w": jnp.array([0.5, -2.0, 0.0])}
  params = {"w": jnp.zeros(3)}

  def first_step(overrides):
    tx = build(preset("dqn_cartpole", overrides), 2).tx
    return np.asarray(tx.update(grads, tx.init(params), params)[0]["w"])

  np.testing.assert_allclose(first_step(["optim.name=sgd", "optim.schedule=constant", "optim.learning_rate=0.1"]),
                             [-0.05, 0.2, 0.0], rtol=1e-6)  # plain SGD: -lr * g
  # Adam's first step is -lr * g / (|g| + eps): the sign times lr.
  np.testing.assert_allclose(first_step(["optim.learning_rate=0.1"]), [-0.1, 0.1, 0.0], rtol=1e-4)
  # A jaxdl.optim schedule: warmup_cosine starts at 0.
  np.testing.assert_array_equal(first_step(["optim.schedule=warmup_cosine", "optim.warmup_steps=10"]), 0.0)
  # Clipping to a global norm of 0.5 comes first: SGD then moves by 0.5 * lr in all.
  clipped = first_step(["optim.name=sgd", "optim.schedule=constant", "optim.learning_rate=1.0", "optim.clip_norm=0.5"])
  np.testing.assert_allclose(np.linalg.norm(clipped), 0.5, rtol=1e-6)


# ---------------------------------------------------------------- bad input --


@pytest.mark.parametrize("override, named", [
    ("buffer.alpha=-0.5", "buffer.alpha=-0.5"),
    ("buffer.beta_start=1.5", "buffer.beta_start=1.5"),
    ("buffer.beta_start=-0.1", "buffer.beta_start=-0.1"),
    ("buffer.priority_eps=0.0", "buffer.priority_eps=0.0"),
    ("optim.name=adamax", "optim.name='adamax'"),
    ("optim.schedule=exp", "optim.schedule='exp'"),
])
def test_bad_input_is_one_line_naming_the_key(tmp_path, capsys, override, named):
  workdir = tmp_path / "run"
  code, _, err = run_cli(capsys, "run", "dqn_cartpole", "--workdir", str(workdir), "--set", override)
  assert_one_line_error(code, err, named)
  assert not workdir.exists()
