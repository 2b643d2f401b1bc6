"""DQN: buffer, targets, update rules, both executors, resume, bad input, presets, notebook."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_helpers import assert_one_line_error, killed_after_save, run_cli, tensorboard_steps
from jaxdl import checkpoint, cli, configs, envs
from jaxdl.loops.dqn import agent as agent_lib
from jaxdl.loops.dqn import buffer, jitted
from jaxdl.loops.dqn import learner as dqn
from jaxdl.loops.dqn.host import HostRunner
from jaxdl.loops.dqn import train_and_evaluate

EXPERIMENTS = pathlib.Path(__file__).parents[2] / "experiments"

# A small jitted CartPole run: 2 seeds in 2 groups (threads), 12k env steps each,
# checkpoints every 250 iterations.
SMALL = ["train.num_seeds=2", "train.seed_groups=2", "train.env_steps=12000", "train.learning_starts=1000",
         "train.log_every=250", "checkpoint.every_steps=250", "checkpoint.max_to_keep=10", "eval.episodes=5",
         "eval.select=best", "eval.validate_every=0"]
RANDOM_CARTPOLE = 22.4  # mean return of the uniformly random policy on CartPole-v1 (measured below)


def preset(name, overrides=()):
  config, _ = configs.load_preset(EXPERIMENTS / f"{name}.py")
  return configs.apply_overrides(config, list(overrides))


def set_args(overrides):
  return [a for o in overrides for a in ("--set", o)]


# ------------------------------------------------------------------- buffer --


_add = jax.jit(buffer.add)  # one compile per shape instead of eager op-by-op dispatch


def _filled(capacity, num_envs, rows):
  """A buffer after ``rows`` writes; transition (t, e) has obs t * 10 + e."""
  buf = buffer.init(capacity, num_envs, jnp.zeros((1,), jnp.float32))
  for t in range(rows):
    ids = t * 10 + jnp.arange(num_envs, dtype=jnp.float32)
    buf = _add(buf, ids[:, None], jnp.full((num_envs,), t % 2), jnp.ones(num_envs), ids[:, None] + 0.5,
                     jnp.zeros(num_envs, bool), jnp.zeros(num_envs, bool))
  return buf


def test_buffer_wraps_around_keeping_the_newest_rows():
  buf = _filled(5, 2, 8)  # rows 0..7 written into 5 slots
  assert int(buf.pos) == 8 % 5 and int(buf.size) == 5
  # Slots hold rows 5, 6, 7, 3, 4 (5..7 overwrote 0..2).
  np.testing.assert_array_equal(buf.obs[:, :, 0], [[50, 51], [60, 61], [70, 71], [30, 31], [40, 41]])
  np.testing.assert_array_equal(buf.next_obs[:, :, 0] - buf.obs[:, :, 0], 0.5)
  # With row=pos given explicitly (as under vmap), the write is the same.
  again = buffer.add(buf, jnp.full((2, 1), 80.0), jnp.zeros(2), jnp.ones(2), jnp.full((2, 1), 80.5),
                     jnp.zeros(2, bool), jnp.zeros(2, bool), row=buf.pos)
  assert float(again.obs[3, 0, 0]) == 80.0 and int(again.pos) == 4


def test_uniform_sampling_covers_every_stored_transition_equally():
  buf = _filled(6, 3, 10)  # 18 stored transitions: rows 4..9
  draws = 36_000
  batch = jax.jit(lambda k: buffer.sample(buf, k, draws))(jax.random.PRNGKey(0))
  ids = np.asarray(batch["obs"][:, 0]).astype(int)
  expected = {t * 10 + e for t in range(4, 10) for e in range(3)}
  counts = {i: int((ids == i).sum()) for i in expected}
  assert set(ids) == expected  # nothing overwritten is ever drawn
  # Each count is Binomial(36000, 1/18): mean 2000, sd 43; 5 sd apart is a bug.
  assert all(abs(c - 2000) < 5 * 43 for c in counts.values()), counts
  np.testing.assert_array_equal(batch["next_obs"][:, 0], batch["obs"][:, 0] + 0.5)
  np.testing.assert_allclose(batch["discount"], 0.99)


def test_n_step_windows_stop_at_episode_ends():
  gamma = 0.5
  buf = buffer.init(8, 1, jnp.zeros((1,), jnp.float32))
  # One env: rewards 1, 2, 4, 8, 16; step 1 ends by truncation, step 3 by termination.
  for t, (r, term, done) in enumerate([(1, 0, 0), (2, 0, 1), (4, 0, 0), (8, 1, 1), (16, 0, 0)]):
    buf = _add(buf, jnp.full((1, 1), float(t)), jnp.zeros(1), jnp.full(1, float(r)),
                     jnp.full((1, 1), t + 0.5), jnp.full(1, bool(term)), jnp.full(1, bool(done)))
  batch = buffer.sample(buf, jax.random.PRNGKey(1), 400, n_step=3, gamma=gamma)
  starts = np.asarray(batch["obs"][:, 0]).astype(int)
  assert set(starts) == {0, 1, 2}  # windows of 3 that fit in 5 stored steps
  # Hand-computed: start 0 -> 1 + 0.5 * 2 (truncated at 1: bootstrap from 1.5 with 0.5^2);
  # start 1 -> 2 (truncated there: bootstrap 0.5^1); start 2 -> 4 + 0.5 * 8 (terminated: no bootstrap).
  expected = {0: (2.0, 1.5, 0.25), 1: (2.0, 1.5, 0.5), 2: (8.0, 3.5, 0.0)}
  for s, (ret, nxt, disc) in expected.items():
    rows = starts == s
    np.testing.assert_allclose(batch["reward"][rows], ret)
    np.testing.assert_allclose(batch["next_obs"][rows, 0], nxt)
    np.testing.assert_allclose(batch["discount"][rows], disc)


# ------------------------------------------------------------ update rules --


def test_target_update_hard_every_n_and_polyak():
  online, target = {"w": jnp.full((2,), 3.0)}, {"w": jnp.zeros((2,))}
  for updates, expected in [(1, 0.0), (4, 3.0), (6, 0.0), (8, 3.0)]:
    out = dqn.target_update(online, target, jnp.int32(updates), every=4, tau=1.0)
    np.testing.assert_array_equal(out["w"], expected)
  out = dqn.target_update(online, {"w": jnp.ones((2,))}, jnp.int32(5), every=1, tau=0.25)
  np.testing.assert_allclose(out["w"], 0.25 * 3.0 + 0.75 * 1.0)


def test_double_dqn_targets_on_a_hand_computed_example():
  reward = jnp.array([1.0, 0.5])
  discount = jnp.array([0.9, 0.0])  # the second transition terminated
  q_target = jnp.array([[1.0, 5.0, 2.0], [3.0, 1.0, 7.0]])
  q_online = jnp.array([[0.0, 1.0, 9.0], [4.0, 0.0, 0.0]])
  # DQN: max of the target net: 1 + 0.9 * 5 = 5.5. Double: the online net picks
  # action 2, the target net values it: 1 + 0.9 * 2 = 2.8. No bootstrap after termination.
  np.testing.assert_allclose(dqn.q_targets(reward, discount, q_target), [5.5, 0.5])
  np.testing.assert_allclose(dqn.q_targets(reward, discount, q_target, q_online), [2.8, 0.5])


def test_huber_and_epsilon_schedule():
  np.testing.assert_allclose(dqn.huber(jnp.array([-3.0, -0.5, 0.0, 0.5, 2.0])), [2.5, 0.125, 0.0, 0.125, 1.5])
  schedule = dqn.epsilon_schedule(1.0, 0.05, 1000)
  np.testing.assert_allclose([schedule(0), schedule(500), schedule(1000), schedule(10**6)],
                             [1.0, 0.525, 0.05, 0.05], rtol=1e-6)
  q = jnp.array([[0.0, 1.0]] * 4000)
  greedy = dqn.epsilon_greedy(jax.random.PRNGKey(0), q, 0.0)
  assert np.all(greedy == 1)
  explored = dqn.epsilon_greedy(jax.random.PRNGKey(0), q, 0.3)
  assert abs(float((explored == 0).mean()) - 0.15) < 0.02  # half the random picks are action 0


# ------------------------------------------------------------ the two paths --


def test_jitted_and_host_updates_are_equal_for_the_same_batch():
  """One iteration of the jitted path against the host loop's observe on the same transition.

  Both run seed-vmapped (here one seed), as they do in training, and must agree bit for bit.
  """
  config = preset("dqn_cartpole", ["train.num_seeds=1", "train.seed_groups=1", "env.num_envs=4",
                                   "train.learning_starts=0",
                                   "train.batch_size=16", "buffer.size=64"])
  runner = jitted.JittedRunner(config)
  state, _ = runner.chunk(runner.init(), 3)  # a few rows in the buffer, a few updates done
  before = jax.tree_util.tree_map(jnp.copy, state.seeds)
  after, _ = runner.chunk(state, 1)  # the jitted path (donates its input)

  @jax.jit
  @jax.vmap
  def transition(agent):  # what the jitted iteration fed to its update
    action = agent_lib.act(runner.setup, agent)
    _, k_env, _ = agent_lib.iteration_keys(agent)
    obs, _, reward, term, trunc, info = jax.vmap(runner.env.step, in_axes=(0, 0, 0, None))(
        jax.random.split(k_env, 4), agent.env_state, action, runner.env_params)
    return action, reward, info["final_obs"], obs, term, trunc

  host = HostRunner(config)
  seeds, _ = host._observe[True](before, *transition(before), jnp.int32(3))
  host.close()
  for a, b in zip(jax.tree_util.tree_leaves(after.seeds.learner), jax.tree_util.tree_leaves(seeds.learner)):
    np.testing.assert_array_equal(a, b)
  assert int(after.seeds.learner.updates[0]) == 4 * config.train.updates_per_iteration


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  """The uninterrupted jitted run that the killed-and-resumed one must reproduce."""
  workdir = tmp_path_factory.mktemp("dqn_ref")
  _, metrics = train_and_evaluate(preset("dqn_cartpole", SMALL), workdir)
  return workdir, metrics


def test_random_policy_baseline():
  """RANDOM_CARTPOLE, the bar the learning tests clear, is what uniform actions get."""
  env, params = envs.make("CartPole-v1")

  def episode(key):
    _, state = env.reset(key, params)

    def body(carry, k):
      state, ret, alive = carry
      _, state, r, term = env.step_env(k, state, jax.random.randint(k, (), 0, 2), params)
      return (state, ret + r * alive, alive & ~term & (state.time < params.max_steps)), None

    (_, ret, _), _ = jax.lax.scan(body, (state, 0.0, True), jax.random.split(key, params.max_steps))
    return ret

  returns = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), 1000))
  assert abs(float(returns.mean()) - RANDOM_CARTPOLE) < 1.5  # the standard error is about 0.4


def test_short_jitted_run_beats_a_random_policy(small_run):
  workdir, metrics = small_run
  assert metrics["eval_return_mean"] > 3 * RANDOM_CARTPOLE, metrics["eval_return_per_seed"]
  assert len(metrics["eval_return_per_seed"]) == 2 and min(metrics["eval_return_per_seed"]) > 2 * RANDOM_CARTPOLE
  assert metrics["env_steps"] == 2 * 12000 and metrics["env_steps_per_second"] > 0
  for key in ("eval_return_mean", "eval_return_std", "wall_seconds", "params_sha256"):
    assert key in metrics
  assert (workdir / "learning_curves.png").stat().st_size > 10_000
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert all("train/episode_return/seed1" in r for r in records)


def test_tensorboard_counts_env_steps_and_metrics_jsonl_both(small_run):
  workdir, _ = small_run
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  # step: the iteration (as checkpoints count it); env_steps: per seed, the unit of train.env_steps.
  assert [r["step"] for r in records] == list(range(250, 1501, 250))
  assert [r["env_steps"] for r in records] == list(range(2000, 12001, 2000))
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())[-1] == 1500
  steps = tensorboard_steps(workdir / "tb")
  assert steps["train/loss"] == list(range(2000, 12001, 2000)) and steps["test/return"] == [12000]
  assert "env_steps" not in steps


def test_keep_best_picks_per_seed_and_prefers_the_newer_policy_on_a_tie():
  params = {"w": jnp.arange(6.0).reshape(3, 2)}  # (S=3, 2)
  best = {"params": {"w": jnp.zeros((3, 2))}, "score": jnp.array([5.0, 7.0, 1.0]), "step": jnp.array([1, 1, 1])}
  best = jitted.keep_best(best, params, jnp.array([6.0, 7.0, 0.5]), jnp.int32(9))
  np.testing.assert_array_equal(best["params"]["w"], [[0.0, 1.0], [2.0, 3.0], [0.0, 0.0]])
  np.testing.assert_array_equal(best["score"], [6.0, 7.0, 1.0])
  np.testing.assert_array_equal(best["step"], [9, 9, 1])


def test_select_best_reports_each_seeds_best_validated_policy(small_run):
  workdir, metrics = small_run
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert metrics["eval_select"] == "best"
  for seed in range(2):
    history = [(r["step"], r[f"train/validation_return/seed{seed}"]) for r in records
               if f"train/validation_return/seed{seed}" in r]
    assert len(history) == 12000 // 8 // 250  # one validation per log interval
    top = max(score for _, score in history)
    assert metrics["selected_validation_return_per_seed"][seed] == pytest.approx(top)
    newest = max(step for step, score in history if score == pytest.approx(top))
    assert metrics["selected_env_steps_per_seed"][seed] == newest * 8
  # The reported policy is the selected one, not the last one, and both are on record.
  assert len(metrics["last_policy_return_per_seed"]) == 2
  config = preset("dqn_cartpole", SMALL)
  runner = jitted.JittedRunner(config)
  state = runner.init()
  restored = checkpoint.Checkpointer(workdir / "checkpoints").restore(12000 // 8, jax.device_get(state))
  returns = np.asarray(runner.evaluate(restored, restored.best["params"])).mean(axis=1)
  np.testing.assert_allclose(returns, metrics["eval_return_per_seed"])
  runner.close()


def test_sigkill_then_same_command_resumes_bit_exactly(tmp_path, small_run):
  _, reference = small_run
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "jaxdl", "run", "dqn_cartpole", "--workdir", str(workdir), *set_args(SMALL)]
  # Killed mid-run, with the replay buffer full of data.
  killed = subprocess.run(killed_after_save(cmd, 750), capture_output=True, text=True, timeout=300)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert not (workdir / "metrics.json").exists()
  assert cli.main(["run", "dqn_cartpole", "--workdir", str(workdir), *set_args(SMALL)]) == 0
  final = json.loads((workdir / "metrics.json").read_text())
  # The kill lands right after the save at 750 starts (async): 750 if it landed, else 500.
  assert final["resumed_from_step"] in (500, 750)
  for key in ("params_sha256", "state_sha256", "eval_return_per_seed", "updates_per_seed"):
    assert final[key] == reference[key], key


# ---------------------------------------------------------------- bad input --


@pytest.mark.parametrize("overrides, named", [
    (["env.id=CartPol-v1"], "env.id='CartPol-v1'"),
    (["env.id=Pendulum-v1", "env.backend=gym"], "env.id='Pendulum-v1'"),
    (["env.id=Pendulum-v1"], "env.id='Pendulum-v1'"),
    (["buffer.size=64", "train.batch_size=128"], "buffer.size=64"),
    (["epsilon.start=1.5"], "epsilon.start=1.5"),
    (["epsilon.end=-0.1"], "epsilon.end=-0.1"),
    (["eval.select=first"], "eval.select='first'"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, overrides, named):
  workdir = tmp_path / "run"
  code, _, err = run_cli(capsys, "run", "dqn_cartpole", "--workdir", str(workdir), *set_args(overrides))
  assert_one_line_error(code, err, named)
  assert not workdir.exists()  # nothing was written


# ------------------------------------------------------------------ presets --


def test_dqn_cartpole_gym_host_loop_learns(tmp_path):
  config = preset("dqn_cartpole_gym", ["train.num_seeds=1", "train.env_steps=12000", "train.learning_starts=1000",
                                       "train.log_every=250", "eval.episodes=5"])
  _, metrics = train_and_evaluate(config, tmp_path)
  assert metrics["env_backend"] == "gym"
  assert metrics["eval_return_mean"] > 3 * RANDOM_CARTPOLE, metrics["eval_return_per_seed"]


@pytest.mark.parametrize("name, overrides, random_return, margin", [
    # Random Acrobot rarely swings up in 500 steps (about -499); MountainCar never does in 200 (-200).
    ("dqn_acrobot", ["train.env_steps=32000", "train.num_seeds=2"], -499.0, 100.0),
    # MountainCar finds its goal only after ~150k steps of exploration: too long for the default suite.
    pytest.param("dqn_mountaincar", ["train.env_steps=200000", "train.num_seeds=2"], -200.0, 2.0,
                 marks=pytest.mark.slow),
])
def test_jitted_presets_learn(tmp_path, name, overrides, random_return, margin):
  _, metrics = train_and_evaluate(preset(name, overrides + ["eval.episodes=5", "train.log_every=250"]), tmp_path)
  assert metrics["eval_return_mean"] > random_return + margin, metrics["eval_return_per_seed"]


def test_dqn_atari_runs_tiny_on_cpu(tmp_path):
  config = preset("dqn_atari", ["train.env_steps=96", "train.learning_starts=32", "train.batch_size=8",
                                "buffer.size=64", "env.max_episode_steps=40", "eval.episodes=1",
                                "train.log_every=4", "train.target_every=4", "env.num_envs=1"])
  state, metrics = train_and_evaluate(config, tmp_path)
  assert state.seeds.obs.shape == (1, 1, 4, 84, 84) and state.seeds.obs.dtype == jnp.uint8
  assert metrics["updates_per_seed"] == (96 - 32) // 1
  assert -21 <= metrics["eval_return_mean"] <= 21
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  losses = [r["train/loss"] for r in records if isinstance(r.get("train/loss"), float)]
  assert losses and all(np.isfinite(losses))
