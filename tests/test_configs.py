import pathlib
import sys

import pytest

from cli_helpers import assert_one_line_error, run_cli
from jaxdl import configs
from jaxdl.loops import supervised
from jaxdl.utils.errors import JaxdlError


def test_overrides_parse_by_field_type():
  c = supervised.default_config()
  configs.apply_overrides(c, [
      "optim.learning_rate=3e-4", "train.seed=7", "augment.flip=true",
      "optim.boundaries=(0.3, 0.6)", "data.path=/tmp/x.npz", "optim.learning_rate=1"])
  assert c.optim.learning_rate == 1.0 and isinstance(c.optim.learning_rate, float)
  assert c.train.seed == 7
  assert c.augment.flip is True
  assert c.optim.boundaries == (0.3, 0.6)
  assert c.data.path == "/tmp/x.npz"


@pytest.mark.parametrize("item, words", [
    ("train.sed=1", ["train.sed", "unknown key", "seed"]),
    ("trian.seed=1", ["trian", "unknown key"]),
    ("train.steps=ten", ["train.steps", "integer"]),
    ("train.steps=1.5", ["train.steps", "integer"]),
    ("augment.flip=maybe", ["augment.flip", "boolean"]),
    ("optim.boundaries=(1, 'a')", ["optim.boundaries", "tuple"]),
    ("train=1", ["train", "section"]),
    ("novalue", ["KEY=VALUE"]),
])
def test_bad_overrides_name_the_key(item, words):
  with pytest.raises(JaxdlError) as info:
    configs.apply_overrides(supervised.default_config(), [item])
  message = str(info.value)
  assert "\n" not in message
  for word in words:
    assert word in message


def test_every_preset_has_the_common_keys(repo_root):
  presets = sorted((repo_root / "experiments").glob("[!_]*.py"))
  assert len(presets) >= 6
  for path in presets:
    config, doc = configs.load_preset(path)
    flat = configs.flatten(config)
    # A Q-learning run counts environment steps and reads an environment, not a dataset;
    # self-play reads a game, and its network is the one policy-value tower.
    loop = config.get("loop")
    rl, selfplay = loop == "dqn", loop == "alphazero"
    source = ("env.id",) if rl else ("game.name",) if selfplay else ("data.name", "data.path")
    for key in ("train.seed", "train.env_steps" if rl else "train.steps", "train.batch_size",
                "optim.learning_rate", *source, "model.blocks" if selfplay else "model.name"):
      assert key in flat, f"{path.name} lacks {key}"
    # The docstring states the command and the result it reaches.
    assert f"jaxdl run {path.stem}" in doc, path.name
    assert "accuracy" in doc.lower() or "result" in doc.lower(), path.name


@pytest.mark.parametrize("preset, item", [
    ("gan_ring8", "augment.shift=2"),
    ("gan_ring8", "train.label_smoothing=0.1"),
    ("gan_ring8", "data.num_classes=3"),
    ("charlm_transformer", "augment.shift=1"),
    ("charlm_transformer", "train.label_smoothing=0.1"),
    ("charlm_transformer", "data.num_classes=3"),
    ("dqn_cartpole", "train.label_smoothing=0.1"),
    ("dqn_cartpole", "augment.shift=1"),
    ("digits_mlp", "gan.r1=1"),
])
def test_a_key_the_loop_does_not_read_is_refused(capsys, preset, item):
  loop = configs.load_preset(pathlib.Path(__file__).parent.parent / "experiments" / f"{preset}.py")[0].loop
  for command in ("run", "show"):
    code, _, err = run_cli(capsys, command, preset, "--set", item)
    assert_one_line_error(code, err, item.split("=")[0].split(".")[0], f"'{loop}' loop", "unknown key")


@pytest.mark.parametrize("section, key", [("train", "label_smoothing"), ("gan", "latent_dims"), ("extra", "x")])
def test_a_preset_that_sets_a_key_its_loop_ignores_is_refused(capsys, tmp_path, section, key):
  preset = tmp_path / "my_gan.py"
  preset.write_text(
      '"""A GAN preset with a key the GAN loop does not read."""\n'
      "import ml_collections\n"
      "from jaxdl.loops.gan import default_config\n\n"
      "def get_config():\n"
      "  config = default_config()\n"
      f"  if '{section}' not in config:\n"
      f"    config.{section} = ml_collections.ConfigDict()\n"
      f"  config.{section}.{key} = 1\n"
      "  return config\n")
  for command in ("show", "run"):
    code, _, err = run_cli(capsys, command, str(preset), *(["--workdir", str(tmp_path / "w")] * (command == "run")))
    assert_one_line_error(code, err, f"{section}.{key}", "'gan' loop")
  assert not (tmp_path / "w").exists()  # nothing written


def test_presets_build_on_family_bases_beside_them(tmp_path):
  # Two folders with a base of the same name: each preset gets its own.
  for name, steps in (("a", 11), ("b", 22)):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "_base.py").write_text(
        "from jaxdl.loops.supervised import default_config\n\n"
        f"def base():\n  c = default_config()\n  c.train.steps = {steps}\n  return c\n")
    (folder / "mine.py").write_text('"""Mine."""\nfrom _base import base\n\ndef get_config():\n  return base()\n')
  assert configs.load_preset(tmp_path / "a" / "mine.py")[0].train.steps == 11
  assert configs.load_preset(tmp_path / "b" / "mine.py")[0].train.steps == 22
  assert "_base" not in sys.modules and str(tmp_path / "a") not in sys.path


@pytest.mark.parametrize("preset, items, words", [
    ("digits_cnn", ["model.dropout=1.0"], ["model.dropout=1.0", "[0, 1)"]),
    ("mnist1d_lstm", ["model.dropout=-0.1"], ["model.dropout=-0.1"]),
    ("dqn_cartpole", ["train.env_steps=5000", "train.learning_starts=5000"],
     ["train.env_steps=5000", "train.learning_starts=5000"]),
])
def test_values_that_make_no_sense_are_bad_input(capsys, tmp_path, preset, items, words):
  code, _, err = run_cli(capsys, "run", preset, "--workdir", str(tmp_path / "w"),
                         *[a for item in items for a in ("--set", item)])
  assert_one_line_error(code, err, *words)
  assert not (tmp_path / "w").exists()
