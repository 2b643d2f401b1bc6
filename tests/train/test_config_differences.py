"""Which config changes a resume refuses: keys the saved run predates count only when they turn something on."""

from jaxdl.train.workdir import config_differences


def test_a_key_the_saved_run_predates_counts_only_when_it_turns_something_on():
  saved = {"loop": "supervised", "train": {"steps": 100, "seed": 0}}
  off = {"loop": "supervised", "train": {"steps": 200, "seed": 0, "log_layer_stats": False},
         "init": {"workdir": "", "include": ["*"], "exclude": []}, "optim": {"frozen": [], "lr_multipliers": []}}
  assert config_differences(saved, off) == []  # train.steps is harmless, the rest is off
  on = {**off, "init": {"workdir": "runs/a", "include": ["Conv_*"], "exclude": []}, "optim": {"frozen": ["Conv_0.*"]}}
  assert config_differences(saved, on) == ["init.include", "init.workdir", "optim.frozen"]


def test_a_changed_value_of_a_key_both_have_is_a_difference():
  saved = {"train": {"seed": 0, "log_layer_stats": False}, "init": {"workdir": ""}}
  assert config_differences(saved, {"train": {"seed": 1, "log_layer_stats": True}, "init": {"workdir": ""}}) == \
      ["train.seed"]  # log_layer_stats changes no parameter
  assert config_differences(saved, {"train": {"seed": 0, "log_layer_stats": False}, "init": {"workdir": "x"}}) == \
      ["init.workdir"]


def test_a_run_from_before_mixed_precision_and_accumulation_resumes_at_their_defaults_only():
  saved = {"train": {"seed": 0}}
  assert config_differences(saved, {"train": {"seed": 0, "dtype": "float32", "accumulate_steps": 1}}) == []
  assert config_differences(saved, {"train": {"seed": 0, "dtype": "bfloat16", "accumulate_steps": 4}}) == \
      ["train.accumulate_steps", "train.dtype"]
