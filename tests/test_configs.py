import pytest

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
    # A Q-learning run counts environment steps and reads an environment, not a dataset.
    rl = config.get("loop") == "dqn"
    for key in ("train.seed", "train.env_steps" if rl else "train.steps", "train.batch_size",
                "optim.learning_rate", *(("env.id",) if rl else ("data.name", "data.path")),
                "model.name"):
      assert key in flat, f"{path.name} lacks {key}"
    # The docstring states the command and the result it reaches.
    assert f"jaxdl run {path.stem}" in doc, path.name
    assert "accuracy" in doc.lower() or "result" in doc.lower(), path.name
