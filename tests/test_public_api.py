"""The curated public names: today's, and the earlier ones that code written before the layout move uses."""

import jaxdl
from jaxdl import gan, lm, rl, supervised
from jaxdl.loops import dqn as dqn_loop
from jaxdl.loops import gan as gan_loop
from jaxdl.loops import lm as lm_loop
from jaxdl.loops import supervised as supervised_loop

# jaxdl.__all__ before the engine and the loops moved (issue #12).
EARLIER_TOP_LEVEL = [
    "DATASETS", "Dataset", "JaxdlError", "MODELS", "TrainState", "apply_overrides", "base_config",
    "create_train_state", "eval_step", "get_model", "load_dataset", "load_preset", "make_augment",
    "make_evaluate", "make_optimizer", "make_schedule", "make_train_chunk", "param_count",
    "plot_learning_curves", "train_and_evaluate", "train_step", "tree_sha256",
]


def test_every_name_in_all_resolves_and_the_earlier_ones_remain():
  assert set(EARLIER_TOP_LEVEL) <= set(jaxdl.__all__)
  for name in jaxdl.__all__:
    assert getattr(jaxdl, name) is not None, name
  assert jaxdl.train_step is supervised_loop.train_step
  assert jaxdl.train_and_evaluate is supervised_loop.train_and_evaluate
  assert jaxdl.base_config().loop == "supervised"


def test_the_earlier_module_names_reexport_the_loops():
  assert rl.make_train is dqn_loop.make_train
  assert rl.Runner is dqn_loop.JittedRunner and rl.dqn is dqn_loop.learner
  assert rl.default_config().loop == "dqn"
  assert gan.base_gan_config().loop == "gan" and gan.gan_step is gan_loop.gan_step
  assert lm.sample_from_workdir is lm_loop.sample_from_workdir
  assert supervised.train_and_evaluate is supervised_loop.train_and_evaluate
  assert supervised.fit is jaxdl.train.fit and supervised.make_train_chunk is jaxdl.make_train_chunk


def test_each_loop_declares_its_schema_and_entry_point():
  for name in jaxdl.loops.LOOPS:
    loop = jaxdl.loops.get_loop(name)
    config = loop.default_config()
    assert config.loop == name
    loop.validate(config)  # a loop's own defaults are a valid config
    assert callable(loop.train_and_evaluate)


def test_loops_load_as_attributes_on_first_use():
  import subprocess
  import sys
  code = ("import sys, jaxdl; assert 'jaxdl.rl' not in sys.modules; "
          "print(jaxdl.rl.make_train.__module__, jaxdl.gan.gan_step.__module__, jaxdl.lm.generate.__module__)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
  assert out == ["jaxdl.loops.dqn.jitted", "jaxdl.loops.gan.step", "jaxdl.loops.lm.sampling"]
