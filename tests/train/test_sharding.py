"""train.sharding=fsdp: the layout rule, equality with the replicated run, checkpoints across layouts.

The suite runs on 8 CPU devices (conftest.py). The models are tiny, so
MIN_SHARD_SIZE is lowered to 256 elements here: most kernels are then split.
"""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxdl import checkpoint as checkpoint_lib
from jaxdl.configs import apply_overrides, load_preset
from jaxdl.loops import gan
from jaxdl.loops.lm.experiment import LMTask
from jaxdl.loops.supervised.experiment import SupervisedTask
from jaxdl.train import parallel
from jaxdl.train import sharding as sharding_lib
from jaxdl.utils.errors import JaxdlError

STEPS = 3
TEXT = "".join(f"def f{i}(x):\n  return x * {i} + {i % 7}\n" for i in range(400))


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
  monkeypatch.setattr(sharding_lib, "MIN_SHARD_SIZE", 256)


def test_each_array_is_split_on_its_largest_divisible_axis_or_kept_whole():
  spec = sharding_lib.fsdp_spec
  assert spec((3, 3, 16, 64), 8) == P(None, None, None, "data")  # the channels out
  assert spec((800, 12), 8) == P("data")  # the largest axis first
  assert spec((12, 4096), 8, min_size=10) == P(None, "data")
  assert spec((6, 800), 8) == P(None, "data")  # 6 is not divisible by 8: the next axis
  assert spec((64, 64), 8) == P(None, "data")  # a tie: the later axis
  assert spec((1001, 3), 8) == P()  # no divisible axis
  assert spec((128,), 8) == P()  # under MIN_SHARD_SIZE (256 here)
  assert spec((), 8) == P()  # a step counter
  assert spec((4096,), 1) == P()  # one device: nothing to split


def test_unknown_or_unsupported_sharding_is_a_one_line_error():
  config, _ = load_preset("digits_mlp")
  apply_overrides(config, ["train.sharding=zero3"])
  with pytest.raises(JaxdlError, match=r"^train.sharding='zero3' must be one of replicated, fsdp$"):
    SupervisedTask(config)
  config = gan.default_config()
  apply_overrides(config, ["train.sharding=fsdp"])
  with pytest.raises(JaxdlError, match=r"^train.sharding='fsdp' is not supported by the 'gan' loop"):
    gan.config.validate(config)


def test_place_names_the_array_its_sharding_cannot_split():
  mesh = parallel.make_mesh(8)
  tree = {"params": {"w": np.zeros((12, 3), np.float32)}}
  with pytest.raises(JaxdlError, match=r"array \['params'\]\['w'\] of shape \(12, 3\) cannot be placed"):
    sharding_lib.place(tree, {"params": {"w": NamedSharding(mesh, P("data"))}})


def cnn_task(sharding: str, num_devices: int = 8) -> SupervisedTask:
  config, _ = load_preset("digits_cnn")
  apply_overrides(config, [f"train.sharding={sharding}", f"train.num_devices={num_devices}",
                           "model.features=(8, 16)", "model.hidden=(32,)", "model.dropout=0.0",
                           f"train.steps={STEPS}", "optim.warmup_steps=1", "train.batch_size=32"])
  return SupervisedTask(config)


def lm_task(sharding: str, num_devices: int = 8) -> LMTask:
  config, _ = load_preset("charlm_transformer")
  apply_overrides(config, [f"train.sharding={sharding}", f"train.num_devices={num_devices}",
                           "model.width=16", "model.num_layers=1", "model.num_heads=2", "model.dropout=0.0",
                           "optim.weight_decay=0.0", "optim.name=momentum", "data.seq_len=8", f"train.steps={STEPS}",
                           "optim.warmup_steps=1", "train.batch_size=16"])
  return LMTask(config, text=TEXT)


def specs(tree):
  return [x.sharding.spec for x in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("make_task", [cnn_task, lm_task], ids=["cnn", "transformer"])
def test_fsdp_trains_like_replicated_with_a_fraction_of_the_bytes(make_task):
  runs = {}
  for name in ("replicated", "fsdp"):
    task = make_task(name)
    start = jax.tree_util.tree_leaves(task.state)
    # A copy: a host view of the state's own buffers (zero-copy on CPU) would keep them from being donated.
    init = jax.tree_util.tree_map(lambda x: np.asarray(x + 0), task.state.params)
    losses, state = [], task.state
    for _ in range(STEPS):  # one step a chunk: each loss on its own
      state, metrics = task.run_chunk(state, np.int32(1))
      losses.append(float(metrics["loss"]))
    assert all(x.is_deleted() for x in start if isinstance(x, jax.Array))  # donated, not copied
    update = jax.tree_util.tree_map(lambda a, b: np.asarray(a) - b, state.params, init)
    runs[name] = task, state, losses, update
  (_, rep, rep_losses, rep_update), (task, fsdp, fsdp_losses, fsdp_update) = runs["replicated"], runs["fsdp"]
  # float32 sums in another order (reduce-scatter vs all-reduce): the losses agree to ~1e-7 relative.
  np.testing.assert_allclose(fsdp_losses, rep_losses, rtol=1e-5)
  # Each leaf's update agrees as a whole (relative norm). The Transformer trains with SGD (momentum):
  # its key bias gets no gradient (softmax ignores it) but float noise, which Adam's
  # division by sqrt(nu) would blow up to steps of the learning rate, differently per layout.
  for path, a in jax.tree_util.tree_flatten_with_path(fsdp_update)[0]:
    b = rep_update
    for key in path:
      b = b[key.key]
    assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(b), jax.tree_util.keystr(path)
  # It shards, and keeps the layout through the chunk: Adam's moments like their params.
  assert specs(fsdp) == [s.spec for s in jax.tree_util.tree_leaves(task.state_shardings)]
  assert any("data" in spec for spec in specs(fsdp.params))
  # The optimizer's moments (Adam's mu and nu, SGD's momentum) have their params' specs.
  like_params = lambda s: jax.tree_util.tree_structure(s) == jax.tree_util.tree_structure(fsdp.params)
  moments = [s for s in jax.tree_util.tree_leaves(fsdp.opt_state, is_leaf=like_params) if like_params(s)]
  assert moments and all(specs(m) == specs(fsdp.params) for m in moments)
  assert all(spec == P() for spec in specs(rep))
  rep_bytes = sharding_lib.per_device_bytes((rep.params, rep.opt_state))
  fsdp_bytes = sharding_lib.per_device_bytes((fsdp.params, fsdp.opt_state))
  assert fsdp_bytes < rep_bytes / 2, (fsdp_bytes, rep_bytes)


def test_checkpoints_restore_across_layouts_and_device_counts(tmp_path):
  saved_under = cnn_task("fsdp", 8)
  state, _ = saved_under.run_chunk(saved_under.state, np.int32(2))
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "fsdp", async_save=False)
  ckpt.save(2, state)
  ckpt.close()
  expected = jax.device_get(state)
  for name, devices in (("replicated", 2), ("fsdp", 4)):
    task = cnn_task(name, devices)
    host = checkpoint_lib.Checkpointer(tmp_path / "fsdp").restore(2, jax.device_get(task.state))
    placed = task.place_restored(host, tmp_path / "fsdp")
    assert specs(placed) == specs(task.state)  # the current run's layout, not the saved one
    assert {d for x in jax.tree_util.tree_leaves(placed) for d in x.devices()} == set(task.mesh.devices.flat)
    for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(placed)), jax.tree_util.tree_leaves(expected)):
      np.testing.assert_array_equal(a, b)
  # And back: a replicated one-device checkpoint onto fsdp over 8.
  task = cnn_task("replicated", 1)
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "rep", async_save=False)
  ckpt.save(0, task.state)
  ckpt.close()
  target = cnn_task("fsdp", 8)
  placed = target.place_restored(
      checkpoint_lib.Checkpointer(tmp_path / "rep").restore(0, jax.device_get(target.state)), tmp_path / "rep")
  assert specs(placed) == specs(target.state) and any("data" in s for s in specs(placed.params))
  for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(placed)), jax.tree_util.tree_leaves(jax.device_get(task.state))):
    np.testing.assert_array_equal(a, b)
