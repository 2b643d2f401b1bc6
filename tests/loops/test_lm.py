"""The character-level language-model loop: corpus, baselines, steps, sampling, presets, CLI."""

import functools
import hashlib
import json
import math
import os
import signal
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cli_helpers import assert_one_line_error, killed_after_save, run_cli
from jaxdl import checkpoint, configs, models, optim, train
from jaxdl.loops import lm
from jaxdl.loops.lm import config as lm_config
from jaxdl.data import text
from jaxdl.train.state import TrainState
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256

# A shortened run of each language-model preset (the supervised presets' are
# in test_presets.py): it must beat the unigram baseline on the validation text.
SHRUNK = {
    "charlm_lstm": ["train.steps=300", "model.hidden=64", "model.embed_dim=32", "data.seq_len=32",
                    "optim.warmup_steps=10", "optim.learning_rate=1e-2"],
    "charlm_transformer": ["train.steps=300", "model.width=32", "model.num_layers=1",
                           "data.seq_len=32", "optim.warmup_steps=10", "optim.learning_rate=1e-2"],
}
QUICK = ["--set", "train.eval_every=0", "--set", "train.log_every=20"]


# ------------------------------------------------------------------- corpus --


def test_the_default_corpus_is_the_listed_stdlib_files_and_its_hash():
  corpus = text.load_text("pystdlib")
  root = text.stdlib_dir()
  data = b"".join((root / rel).read_bytes() for rel in text.PYSTDLIB_FILES)
  assert corpus.info["sha256"] == hashlib.sha256(data).hexdigest()
  assert corpus.info["files"] == list(text.PYSTDLIB_FILES)
  assert corpus.info["num_files"] == len(text.PYSTDLIB_FILES) == 40
  assert corpus.text == data.decode("utf-8")
  assert 500_000 < len(corpus.ids) < 3_000_000  # "a few MB at most"
  assert corpus.vocab == tuple(sorted(set(corpus.text)))
  assert text.decode(corpus.ids[:1000], corpus.vocab) == corpus.text[:1000]


def test_a_missing_stdlib_file_is_an_error_naming_it(monkeypatch, tmp_path):
  monkeypatch.setattr(text, "stdlib_dir", lambda: tmp_path)
  (tmp_path / "abc.py").write_text("x = 1\n")
  with pytest.raises(JaxdlError, match=r"standard-library file argparse\.py is missing"):
    text.load_text("pystdlib")


def test_split_is_by_position():
  ids = np.arange(1000, dtype=np.int32)
  train, val = text.split_by_position(ids, 0.1)
  np.testing.assert_array_equal(train, ids[:900])
  np.testing.assert_array_equal(val, ids[900:])


def test_ngram_baselines_match_counting_by_hand():
  train = np.array([0, 1, 0, 1, 2, 0], np.int32)
  contexts, targets = np.array([0, 2, 1]), np.array([1, 1, 0])
  v = 4
  # Unigram: counts (3, 2, 1, 0) over 6 tokens, add-one over 4 symbols.
  p_uni = {0: 4 / 10, 1: 3 / 10, 2: 2 / 10}
  assert text.unigram_bpc(train, targets, v) == pytest.approx(
      -np.mean([math.log2(p_uni[t]) for t in targets]))
  # Bigram pairs: 01, 10, 01, 12, 20; rows n_0. = 2, n_1. = 2, n_2. = 1.
  p_bi = [(2 + 1) / (2 + 4), (0 + 1) / (1 + 4), (1 + 1) / (2 + 4)]
  assert text.bigram_bpc(train, contexts, targets, v) == pytest.approx(
      -np.mean(np.log2(p_bi)))


# -------------------------------------------------------------------- steps --


@pytest.fixture(scope="module")
def state():
  """A small causal Transformer over 11 tokens, windows of 8 (one init for the module)."""
  model = models.get_model("transformer_lm", 11, width=16, num_layers=1, num_heads=2, max_len=8,
                           dropout=0.1)
  tx = optim.make_optimizer("adam", 1e-2)
  return train.create_train_state(model, tx, jax.random.PRNGKey(0),
                                       jnp.zeros((2, 8), jnp.int32))


def test_train_step_is_next_token_cross_entropy_in_nats_and_bits(state):
  tokens = np.random.default_rng(0).integers(0, 11, (4, 9)).astype(np.int32)
  batch = {"x": tokens[:, :-1], "y": tokens[:, 1:]}
  new, metrics = jax.jit(lm.lm_train_step)(state, batch)
  _, key = jax.random.split(state.rng)  # the step's dropout key, as step_keys derives it
  logits = jax.jit(functools.partial(state.apply_fn, train=True))(
      {"params": state.params}, batch["x"], rngs={"dropout": jax.random.fold_in(key, 0)})
  logp = jax.nn.log_softmax(logits)
  want = -np.mean(np.take_along_axis(np.asarray(logp), tokens[:, 1:, None], -1))
  np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)
  np.testing.assert_allclose(metrics["bpc"], want / math.log(2), rtol=1e-5)
  assert int(new.step) == 1
  # Evaluation: padding windows are ignored (the masked batch scores as its
  # first two windows twice over).
  evaluate = jax.jit(lm.lm_eval_step)
  masked = evaluate(new, {**batch, "mask": jnp.array([1.0, 1.0, 0.0, 0.0])})
  twice = {k: jnp.concatenate([v[:2], v[:2]]) for k, v in batch.items()}
  np.testing.assert_allclose(masked["loss"], evaluate(new, {**twice, "mask": jnp.ones(4)})["loss"],
                             rtol=1e-6)
  assert float(masked["count"]) == 2.0


def test_chunk_trains_on_consecutive_windows_shifted_by_one():
  tokens = jnp.arange(500, dtype=jnp.int32)  # a token's value is its position

  def probe(state, batch):
    x, y = batch["x"], batch["y"]
    phase = x[0, 0] % 16
    ok = (jnp.all(y == x + 1) & jnp.all(x == x[:, :1] + jnp.arange(16)[None])
          & jnp.all(x[:, 0] % 16 == phase)  # one tiling of the text per epoch
          & (jnp.unique(x[:, 0], size=8, fill_value=-1) >= 0).all()  # distinct windows
          & jnp.all(x[:, 0] >= 0) & jnp.all(y[:, -1] < 500))
    return state.replace(step=state.step + 1), {"ok": ok.astype(jnp.float32)}

  chunk = lm.make_lm_chunk(probe, num_tokens=500, seq_len=16, batch_size=8)
  assert chunk.num_windows == 500 // 16 - 1 and chunk.steps_per_epoch == 30 // 8
  # The probe needs no model: a state with a step and a key is enough.
  state = TrainState.create(apply_fn=None, params={}, tx=optax.sgd(0.1), rng=jax.random.PRNGKey(0))
  state, metrics = jax.jit(chunk)(state, tokens, np.int32(20))
  assert float(metrics["ok"]) == 1.0
  assert int(state.step) == 20


def test_generate_is_greedy_at_zero_temperature_and_slides_past_the_window(state):
  variables = {"params": state.params}
  gen = functools.partial(lm.generate, state.apply_fn, variables, seq_len=8)
  prompt = np.array([1, 2, 3], np.int32)
  a = gen(prompt, length=20, temperature=0.0, rng=jax.random.PRNGKey(0))
  b = gen(prompt, length=20, temperature=0.0, rng=jax.random.PRNGKey(1))
  assert a.shape == (20,) and a.dtype == np.int32
  np.testing.assert_array_equal(a, b)  # greedy ignores the key
  # The first token is the argmax after the prompt, and a long prompt only
  # contributes its last seq_len tokens.
  logits = jax.jit(functools.partial(state.apply_fn, train=False))(variables, prompt[None])
  assert a[0] == int(jnp.argmax(logits[0, -1]))
  long = np.concatenate([np.full(30, 5, np.int32), np.arange(8, dtype=np.int32)])
  np.testing.assert_array_equal(gen(long, length=5, temperature=0.7, rng=jax.random.PRNGKey(3)),
                                gen(long[-8:], length=5, temperature=0.7,
                                    rng=jax.random.PRNGKey(3)))


# ------------------------------------------------------------------- sizing --

PANGRAMS = "Pack my box with five dozen liquor jugs; how vexingly quick daft zebras jump. " * 40


def test_auto_keys_follow_the_texts_size_and_a_number_wins():
  config = lm.default_config()
  config.train.steps, config.optim.weight_decay = configs.auto(), configs.auto()
  config.model.dropout = configs.auto()
  rule = lm_config
  params, reference = 10_000, rule.REFERENCE_CHARS_PER_PARAM

  def derived(chars, steps_per_epoch=50):
    return lm.derive(config, train_chars=int(chars), num_params=params, steps_per_epoch=steps_per_epoch)

  # At the reference size and above: the presets' unregularised settings, the full budget.
  assert derived(reference * params, 10_000) == {
      "train.steps": rule.AUTO_MAX_STEPS, "model.dropout": 0.0, "optim.weight_decay": rule.BASE_WEIGHT_DECAY}
  assert derived(4 * reference * params) == derived(reference * params)
  # Two halvings below it: twice the dropout step, four times the decay (within their caps), and a
  # budget of AUTO_EPOCHS passes over the windows.
  quarter = derived(reference * params / 4)
  assert quarter["model.dropout"] == pytest.approx(min(rule.MAX_DROPOUT, 2 * rule.DROPOUT_PER_HALVING))
  assert quarter["optim.weight_decay"] == pytest.approx(min(rule.MAX_WEIGHT_DECAY, 4 * rule.BASE_WEIGHT_DECAY))
  assert quarter["train.steps"] == rule.AUTO_EPOCHS * 50
  # A tiny text gets the caps; in between, smaller texts never get less regularisation.
  assert derived(10) == {"train.steps": rule.AUTO_EPOCHS * 50, "model.dropout": rule.MAX_DROPOUT,
                         "optim.weight_decay": rule.MAX_WEIGHT_DECAY}
  grid = [derived(reference * params / 2 ** (k / 4)) for k in range(16)]
  for key in ("model.dropout", "optim.weight_decay"):
    assert all(a[key] <= b[key] for a, b in zip(grid, grid[1:])), key
  # --set replaces 'auto' by a number, which is then not derived; anything else is refused.
  configs.apply_overrides(config, ["model.dropout=0.05", "train.steps=7"])
  assert (config.model.dropout, config.train.steps) == (0.05, 7)
  assert set(derived(10)) == {"optim.weight_decay"}
  with pytest.raises(JaxdlError, match="a number or 'auto'"):
    configs.apply_overrides(config, ["optim.weight_decay=lots"])


def test_a_small_text_is_sized_logged_recorded_and_warned_about(repo_root, capsys):
  config, _ = configs.load_preset(repo_root / "experiments" / "charlm_transformer.py")
  configs.apply_overrides(config, ["data.seq_len=16", "train.batch_size=16", "model.width=32", "train.num_devices=1"])
  task = lm.LMTask(config, text=PANGRAMS)
  out = capsys.readouterr().out
  assert set(task.derived) == set(lm.AUTO_KEYS)
  # The values are the rule's for this text and this model, and they are the ones used.
  n, params = len(task.train_tokens), param_count(task.state.params)
  assert task.derived == lm.derive(config, train_chars=n, num_params=params, steps_per_epoch=task.steps_per_epoch)
  assert task.model.dropout == task.derived["model.dropout"] > 0
  assert task.total_steps == task.derived["train.steps"] == lm_config.AUTO_EPOCHS * task.steps_per_epoch
  assert task.settings.optim.weight_decay == task.derived["optim.weight_decay"] > lm_config.BASE_WEIGHT_DECAY
  sized = [line for line in out.splitlines() if "sized to the text" in line]
  assert len(sized) == 1 and all(f"{k}={v}" in sized[0] for k, v in task.derived.items()), out
  assert f"{n:,} training characters" in sized[0]
  warned = [line for line in out.splitlines() if line.startswith("jaxdl: warning:")]
  assert len(warned) == 1 and "the text passed in is small for model transformer_lm" in warned[0], out
  assert f"{params:,} parameters" in warned[0]
  # config.json keeps 'auto'; what the run chose is in the task (and in vocab.json and metrics.json).
  assert configs.to_dict(task.config)["model"]["dropout"] == lm.AUTO


# ------------------------------------------------------------------ presets --


@pytest.mark.parametrize("name", sorted(SHRUNK))
def test_lm_preset_learns_beyond_the_ngram_models(repo_root, tmp_path, name):
  config, _ = configs.load_preset(repo_root / "experiments" / f"{name}.py")
  assert config.loop == "lm" and config.data.name == "pystdlib"
  # 2 of the 8 devices, as tests/test_presets.py: 300 recurrent steps run 2.6x faster than on all 8.
  configs.apply_overrides(config, SHRUNK[name] + ["train.eval_every=0", "train.log_every=100", "train.num_devices=2"])
  _, metrics = lm.train_and_evaluate(config, tmp_path)
  # 300 short steps already beat the unigram model by a wide margin and the
  # bigram model too (full runs: README).
  assert metrics["val_bpc"] < metrics["bigram_bpc"] < metrics["unigram_bpc"] - 0.5, metrics
  assert metrics["corpus_files"] == 40 and metrics["steps"] == 300
  on_disk = json.loads((tmp_path / "metrics.json").read_text())
  for key in ("val_bpc", "val_loss", "train_loss", "unigram_bpc", "bigram_bpc", "steps",
              "wall_seconds", "params_sha256", "corpus_sha256", "corpus_files", "vocab_size"):
    assert key in on_disk, key
  assert on_disk["val_bpc"] == pytest.approx(on_disk["val_loss"] / math.log(2))
  assert on_disk["corpus_sha256"] == text.load_text("pystdlib").info["sha256"]
  for png in ["learning_curves.png"] + (["attention.png"] if "transformer" in name else []):
    assert (tmp_path / png).stat().st_size > 0, png
  assert len((tmp_path / "sample.txt").read_text(encoding="utf-8")) > lm.END_SAMPLE_LENGTH


# ---------------------------------------------------------------------- CLI --


def _tiny(path):
  return ["--set", "data.name=text", "--set", f"data.path={path}", "--set", "data.seq_len=16",
          "--set", "train.steps=20", "--set", "checkpoint.every_steps=10", "--set", "train.batch_size=16", "--set", "model.width=16",
          "--set", "model.num_layers=1", "--set", "optim.warmup_steps=0", *QUICK]


def test_non_ascii_text_trains_saves_its_vocabulary_and_samples(capsys, tmp_path):
  corpus = tmp_path / "poème.txt"
  corpus.write_text("Ça va? Ünïcödé ✓ — naïve café, 東京. " * 120, encoding="utf-8")
  workdir = tmp_path / "run"
  code, out, err = run_cli(capsys, "run", "charlm_transformer", "--workdir", str(workdir),
                           *_tiny(corpus), "--set", "train.num_devices=1")
  assert code == 0, err
  vocab = json.loads((workdir / "vocab.json").read_text(encoding="utf-8"))["chars"]
  assert vocab == sorted(set(corpus.read_text(encoding="utf-8")))
  assert "東" in vocab and "✓" in vocab
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert metrics["vocab_size"] == len(vocab) and metrics["corpus_files"] == 1
  assert metrics["corpus_sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
  code, out, err = run_cli(capsys, "sample", str(workdir), "--prompt", "東京", "--length", "12")
  assert code == 0, err
  generated = out.rstrip("\n")[2:]
  assert out.startswith("東京") and set(generated) <= set(vocab) | {"\n"}
  # A prompt character the run never saw is bad input.
  code, _, err = run_cli(capsys, "sample", str(workdir), "--prompt", "café€", "--length", "5")
  assert_one_line_error(code, err, "1 character(s)", "'€'")

  # Killed right after its step-10 checkpoint (saved synchronously, so it is
  # complete), the same run resumes from it and ends bit-identical to the
  # uninterrupted one above.
  resumed = tmp_path / "killed"
  argv = [sys.executable, "-m", "jaxdl", "run", "charlm_transformer", "--workdir", str(resumed),
          *_tiny(corpus), "--set", "train.num_devices=1", "--set", "checkpoint.async_save=false"]
  killed = subprocess.run(killed_after_save(argv, 10), capture_output=True, text=True, timeout=300)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert not (resumed / "metrics.json").exists()
  done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  again = json.loads((resumed / "metrics.json").read_text())
  assert again["resumed_from_step"] == 10
  assert again["params_sha256"] == metrics["params_sha256"]
  assert again["val_bpc"] == metrics["val_bpc"]
  assert (again["best_step"], again["best_val_bpc"]) == (metrics["best_step"], metrics["best_val_bpc"])

  # The text changing under a run is refused, and the run is left as it was.
  corpus.write_text("Something else entirely, at least as long. " * 120, encoding="utf-8")
  code, _, err = run_cli(capsys, "run", "charlm_transformer", "--workdir", str(workdir),
                         *_tiny(corpus), "--set", "train.num_devices=1")
  assert_one_line_error(code, err, "changed since the run", str(workdir))
  assert json.loads((workdir / "metrics.json").read_text()) == metrics


def test_your_own_text_and_optimizer_from_python_keep_the_whole_run_and_its_best_state(repo_root, tmp_path):
  config, _ = configs.load_preset(repo_root / "experiments" / "charlm_lstm.py")
  configs.apply_overrides(config, ["data.seq_len=16", "train.steps=24", "checkpoint.every_steps=10",
                                   "train.batch_size=16", "model.hidden=16", "model.embed_dim=8", "train.eval_every=4",
                                   "train.log_every=4", "train.num_devices=1", "optim.warmup_steps=0"])
  words = PANGRAMS
  # Twelve steps down the training loss, then twelve up it (proof that this optimizer is the one
  # used): validation bpc falls and then climbs, so the best state is inside the run.
  tx = optax.adam(optax.join_schedules([optax.constant_schedule(1e-2), optax.constant_schedule(-1e-2)], [12]))
  state, metrics = lm.train_and_evaluate(config, tmp_path, text=words, tx=tx)
  assert metrics["corpus_sha256"] == hashlib.sha256(words.encode()).hexdigest() and metrics["steps"] == 24
  assert metrics["corpus_chars"] == len(words) and metrics["val_bpc"] > 0
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert records and not any("train/learning_rate" in r for r in records)  # no schedule jaxdl knows of
  evals = {r["step"]: r["test/bpc"] for r in records if "test/bpc" in r}
  assert sorted(evals) == list(range(4, 25, 4))
  best = min(evals, key=evals.get)
  assert metrics["best_step"] == best < 24 and evals[24] > evals[best]
  assert metrics["best_val_bpc"] == pytest.approx(evals[best], rel=1e-6)
  assert metrics["val_bpc"] == pytest.approx(evals[24], rel=1e-6)
  assert metrics["bpc_vs_bigram"] == pytest.approx(1 - metrics["best_val_bpc"] / metrics["bigram_bpc"])
  # checkpoints_best/ holds that step alone (whether or not it was a checkpoint step); checkpoints/
  # still ends at the latest state, for resume; jaxdl sample reads the best, not the latest.
  assert checkpoint.Checkpointer(tmp_path / "checkpoints_best").steps() == [best]
  assert checkpoint.Checkpointer(tmp_path / "checkpoints").steps()[-1] == 24
  kept = checkpoint.Checkpointer(tmp_path / "checkpoints_best").restore(best, jax.device_get(state))
  _, variables, _, _ = lm.load_run(tmp_path)
  chex.assert_trees_all_equal(variables["params"], kept.params)
  assert tree_sha256(variables["params"]) != metrics["params_sha256"] == tree_sha256(state.params)
  saved = json.loads((tmp_path / "config.json").read_text())
  assert (saved["data"]["name"], saved["data"]["path"]) == ("text", "")
  assert json.loads((tmp_path / "vocab.json").read_text())["chars"] == sorted(set(words))
  assert set((tmp_path / "sample.txt").read_text()) <= set(words) | {"\n"}  # decoded with the saved vocabulary
  assert (tmp_path / "learning_curves.png").is_file()
  # Another text on resume is refused in one line; so is a text that is not a str.
  with pytest.raises(JaxdlError, match="the text passed in changed since the run"):
    lm.train_and_evaluate(config, tmp_path, text=words[::-1], tx=tx)  # the same characters, reordered
  with pytest.raises(JaxdlError, match="text must be a str"):
    lm.LMTask(config, text=words.encode())


@pytest.mark.parametrize("content, words", [
    (b"", ["is empty"]),
    (b"   \n\n  ", ["is empty", "whitespace"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), ["is not text", "NUL"]),
    (b"caf\xe9 au lait " * 200, ["not UTF-8 text", "0xe9"]),
    (b"just a short line of text\n", ["too short", "26 characters", "data.seq_len=16", "need at least"]),
], ids=["empty", "whitespace", "png", "latin-1", "too-short"])
def test_bad_text_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, content, words):
  path = tmp_path / "data.txt"
  path.write_bytes(content)
  workdir = tmp_path / "run"
  code, _, err = run_cli(capsys, "run", "charlm_lstm", "--workdir", str(workdir), *_tiny(path)[:8],
                         "--set", "train.batch_size=16")
  assert_one_line_error(code, err, str(path), *words)
  assert not workdir.exists()


@pytest.mark.parametrize("argv, words", [
    (["run", "charlm_lstm", "--set", "data.name=text"], ["'text' needs a path"]),
    (["run", "charlm_lstm", "--set", "data.name=text", "--set", "data.path=/nonexistent/a.txt"],
     ["/nonexistent/a.txt", "no such file"]),
    (["run", "charlm_lstm", "--set", "data.name=mnist1d"], ["mnist1d", "pystdlib, text"]),
    (["run", "charlm_transformer", "--set", "model.name=transformer"],
     ["'transformer' is not a language model", "transformer_lm"]),
    (["run", "charlm_lstm", "--set", "data.val_fraction=1.5"], ["data.val_fraction=1.5"]),
    (["run", "charlm_transformer", "--set", "model.num_heads=3"], ["width 128", "num_heads=3"]),
    (["sample", "/nonexistent/run", "--prompt", "x"], ["/nonexistent/run", "no such directory"]),
    (["sample", ".", "--prompt", "x", "--length", "0"], ["--length 0"]),
    (["sample", ".", "--prompt", "x", "--temperature", "-1"], ["--temperature -1"]),
    (["sample", "."], ["--prompt"]),
])
def test_bad_lm_input_is_one_line_exit_2(capsys, tmp_path, argv, words):
  if argv[0] == "run":
    argv = argv + ["--workdir", str(tmp_path / "w")]
  code, _, err = run_cli(capsys, *argv)
  assert_one_line_error(code, err, *words)
