"""jaxdl's training speed against PyTorch's on the same models, batches and optimizer.

For each architecture, jaxdl trains the preset's model exactly as ``jaxdl run
PRESET`` builds it (``SupervisedTask`` / ``LMTask`` from the loaded preset,
one device, float32) in two ways:

  chunk     ``task.run_chunk(state, n)``: n steps in one jitted on-device
            loop, the path ``jaxdl run`` trains on;
  step      the task's pure ``train_step``, jitted with the state donated,
            called from a Python loop on device-resident batches.

PyTorch (``torch.set_num_threads(2)``, or ``--torch-threads``) trains a hand-written equivalent of the
same model (same layer sizes; both parameter counts are printed), same batch,
same input shapes, AdamW with the preset's learning rate and weight decay,
clipping where the preset clips, label smoothing where it smooths:

  eager     plain eager mode;
  eager_cl  eager with channels-last tensors (2-D convolutional models only);
  compile   ``torch.compile(model)`` in its default mode (a failure is recorded).

Compile is excluded (every variant warms up first); the repeats of all
variants are interleaved (A B C ... A B C ...) and the medians kept, since
the machine may be shared. Prints steps/s and the ratio of each jaxdl path
to the best PyTorch variant, the load average, and writes ``vs_pytorch.json``
and ``vs_pytorch.png`` to ``--out``.

Known differences, all in PyTorch's favour: jaxdl's step also runs the
preset's on-device augmentation (a random shift), reports accuracy and the
gradient norm, and its chunk runs the NaN guard; the PyTorch step does none
of these. Its data are random tensors of the same shapes (speed does not
depend on the values).

    python benchmarks/vs_pytorch.py [--quick] [--out DIR] [ARCH ...]

ARCH is any of: digits_mlp digits_cnn digits_cnn_28 mnist1d_resnet
mnist1d_gru mnist1d_transformer charlm_transformer (default: all).
``digits_cnn_28`` is the digits_cnn preset's model on 28x28 images: the
digits upsampled bilinearly to (N, 28, 28, 1) and passed to the preset's
``SupervisedTask`` as its data (MNIST's shape, with no download).
Needs the bench extra: ``pip install -e '.[bench]'``.
"""

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import time

import jaxdl  # noqa: F401  (first: its CPU runtime settings must precede JAX's backend, see jaxdl.utils.cpu_runtime)
import jax
import jax.numpy as jnp
import numpy as np

ARCHS = ("digits_mlp", "digits_cnn", "digits_cnn_28", "mnist1d_resnet", "mnist1d_gru",
         "mnist1d_transformer", "charlm_transformer")
JAXDL_PATHS = ("jaxdl_chunk", "jaxdl_step")
TORCH_PATHS = ("torch_eager", "torch_eager_cl", "torch_compile")


# ------------------------------------------------------------------ jaxdl --


def jaxdl_task(arch: str, conv_impl: str | None = None):
  """The task ``jaxdl run`` builds for the architecture's preset, on one device (and ``model.conv_impl``, if given)."""
  from jaxdl import data as data_lib
  from jaxdl.configs import load_preset
  from jaxdl.loops.lm.experiment import LMTask
  from jaxdl.loops.supervised.experiment import SupervisedTask

  preset = "digits_cnn" if arch == "digits_cnn_28" else arch
  config, _ = load_preset(preset)
  config.train.num_devices = 1
  if conv_impl is not None:
    config.model.conv_impl = conv_impl
  if config.loop == "lm":
    return config, LMTask(config)
  if arch == "digits_cnn_28":
    ds = data_lib.load_dataset("digits")
    up = lambda x: np.asarray(jax.image.resize(x, (len(x), 28, 28, x.shape[-1]), "bilinear"), np.float32)
    data = data_lib.Dataset.from_arrays("digits28", up(ds.x_train), ds.y_train, up(ds.x_test), ds.y_test)
    return config, SupervisedTask(config, data=data)
  return config, SupervisedTask(config)


def step_batches(task, is_lm: bool, rng: np.random.Generator, count: int = 16) -> list[dict]:
  """``count`` device-resident training batches of the task's batch size, for its step from Python."""
  batch_size = task.config.train.batch_size
  if is_lm:
    tokens = np.asarray(task.train_tokens)
    seq_len = task.config.data.seq_len
    starts = rng.integers(0, len(tokens) - seq_len - 1, (count, batch_size))
    windows = [tokens[s[:, None] + np.arange(seq_len + 1)] for s in starts]
    batches = [{"x": jnp.asarray(w[:, :-1]), "y": jnp.asarray(w[:, 1:])} for w in windows]
  else:
    x, y = task.train_data["x"], task.train_data["y"]
    idx = rng.integers(0, x.shape[0], (count, batch_size))
    batches = [{"x": x[i], "y": y[i]} for i in idx]
  return jax.block_until_ready(batches)


def jaxdl_runners(task, is_lm: bool, rng: np.random.Generator):
  """``{path: run(n) -> steps done}`` for the chunk and the step from Python; each blocks at its end."""
  state_box = [task.state]
  spe = task.steps_per_epoch

  def run_chunk(n):
    done = 0
    state = state_box[0]
    while done < n:
      k = min(spe, n - done)
      state, metrics = task.run_chunk(state, np.int32(k))
      done += k
    jax.block_until_ready((state, metrics))
    state_box[0] = state
    return done

  step = jax.jit(task.train_step, donate_argnums=0)
  batches = step_batches(task, is_lm, rng)

  def run_step(n):
    state = state_box[0]
    for i in range(n):
      state, metrics = step(state, batches[i % len(batches)])
    jax.block_until_ready((state, metrics))
    state_box[0] = state
    return n

  return {"jaxdl_chunk": run_chunk, "jaxdl_step": run_step}


# ---------------------------------------------------------------- PyTorch --


def torch_model(arch: str, vocab_size: int = 0):
  """The architecture's model in PyTorch, layer for layer as jaxdl/models builds it."""
  import torch
  from torch import nn
  import torch.nn.functional as F

  if arch == "digits_mlp":  # MLP hidden (256, 256), relu, dropout 0.2 after each hidden layer
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 10))
  if arch in ("digits_cnn", "digits_cnn_28"):
    # CNN features (64, 128), 3x3 SAME convs without bias + BN + relu + 2x2 max-pool,
    # dropout 0.3 before each dense layer, dense 256, 10.
    side = 8 if arch == "digits_cnn" else 28
    flat = (side // 4) ** 2 * 128
    return nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(flat, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))

  if arch == "mnist1d_resnet":

    class Block(nn.Module):
      """Basic block: k5 conv (strided) BN relu, k5 conv BN, + shortcut (1x1 conv + BN if shapes differ), relu."""

      def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 5, stride=stride, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.proj = None
        if cin != cout or stride != 1:
          self.proj = nn.Sequential(nn.Conv1d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm1d(cout))

      def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu((x if self.proj is None else self.proj(x)) + y)

    class ResNet1D(nn.Module):
      """Stem k3 conv 32 + BN + relu, stages (1, 1, 1) of widths 32, 64, 128, mean pool, dense 10."""

      def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(1, 32, 3, padding=1, bias=False), nn.BatchNorm1d(32), nn.ReLU())
        self.blocks = nn.Sequential(Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2))
        self.head = nn.Linear(128, 10)

      def forward(self, x):  # (B, C, L)
        return self.head(self.blocks(self.stem(x)).mean(-1))

    return ResNet1D()

  if arch == "mnist1d_gru":

    class GRUClassifier(nn.Module):
      """One GRU layer of 128 (PyTorch's gate layout, as jaxdl's), the last state, dense 10."""

      def __init__(self):
        super().__init__()
        self.gru = nn.GRU(1, 128, batch_first=True)
        self.head = nn.Linear(128, 10)

      def forward(self, x):  # (B, T, 1)
        _, h = self.gru(x)
        return self.head(h[-1])

    return GRUClassifier()

  class Attention(nn.Module):
    def __init__(self, width, heads, causal):
      super().__init__()
      self.heads, self.causal = heads, causal
      self.qkv = nn.Linear(width, 3 * width)
      self.out = nn.Linear(width, width)

    def forward(self, x):  # (B, T, D)
      b, t, d = x.shape
      q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
      y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, D / H)
      return self.out(y.transpose(1, 2).reshape(b, t, d))

  class Block(nn.Module):
    """Pre-LayerNorm block: x + drop(attn(LN x)), x + drop(mlp(LN x)), MLP 4x wide with tanh-GELU."""

    def __init__(self, width, heads, dropout, causal):
      super().__init__()
      self.norm_1, self.norm_2 = nn.LayerNorm(width), nn.LayerNorm(width)
      self.attention = Attention(width, heads, causal)
      self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"),
                               nn.Linear(4 * width, width))
      self.drop = nn.Dropout(dropout)

    def forward(self, x):
      x = x + self.drop(self.attention(self.norm_1(x)))
      return x + self.drop(self.mlp(self.norm_2(x)))

  if arch == "mnist1d_transformer":

    class PatchTransformer(nn.Module):
      """Patches of 4 samples -> dense 64 + learned positions (10), dropout 0.1, 3 blocks, LN, mean, dense 10."""

      def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 64)
        self.positions = nn.Parameter(torch.zeros(10, 64))
        self.drop = nn.Dropout(0.1)
        self.blocks = nn.Sequential(*[Block(64, 4, 0.1, False) for _ in range(3)])
        self.norm = nn.LayerNorm(64)
        self.head = nn.Linear(64, 10)

      def forward(self, x):  # (B, 40, 1)
        x = self.drop(self.embed(x.reshape(x.shape[0], 10, 4)) + self.positions)
        return self.head(self.drop(self.norm(self.blocks(x)).mean(1)))

    return PatchTransformer()

  if arch == "charlm_transformer":

    class CharTransformer(nn.Module):
      """GPT-style: embedding 128 + learned positions (64), 2 causal blocks of 4 heads, LN, tied output."""

      def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 128)
        self.positions = nn.Parameter(torch.zeros(64, 128))
        self.blocks = nn.Sequential(*[Block(128, 4, 0.0, True) for _ in range(2)])
        self.norm = nn.LayerNorm(128)

      def forward(self, tokens):  # (B, T)
        x = self.norm(self.blocks(self.embed(tokens) + self.positions))
        return x @ self.embed.weight.T  # (B, T, V)

    return CharTransformer()
  raise ValueError(arch)


def torch_runners(arch: str, config, task, rng: np.random.Generator) -> tuple[dict, dict, int]:
  """``({variant: run(n)}, {variant: error}, parameter count)`` of the PyTorch versions."""
  import torch
  import torch.nn.functional as F

  is_lm = config.loop == "lm"
  o, t = config.optim, config.train
  settings = getattr(task, "settings", config)  # the lm task's 'auto' keys filled in
  weight_decay = float(settings.optim.weight_decay)
  clip = float(o.get("clip_norm", 0.0) or 0.0)
  smoothing = float(t.get("label_smoothing", 0.0) or 0.0)
  batch_size = t.batch_size
  vocab = task.corpus.vocab_size if is_lm else 0
  if is_lm:
    seq_len = config.data.seq_len
    xs = [torch.from_numpy(rng.integers(0, vocab, (batch_size, seq_len + 1))) for _ in range(16)]
    batches = [(w[:, :-1].contiguous(), w[:, 1:].contiguous()) for w in xs]
  else:
    shape = task.dataset.x_train.shape[1:]  # jaxdl's (H, W, C) or (L, C)
    if len(shape) == 3:  # images: NCHW
      shape = (shape[2], shape[0], shape[1])
    elif arch == "mnist1d_resnet":  # signals for Conv1d: (C, L)
      shape = (shape[1], shape[0])
    batches = [(torch.from_numpy(rng.standard_normal((batch_size, *shape), np.float32)),
                torch.from_numpy(rng.integers(0, task.dataset.num_classes, batch_size)))
               for _ in range(16)]

  def build(variant):
    torch.manual_seed(0)
    model = torch_model(arch, vocab)
    data = batches
    if variant == "torch_eager_cl":
      model = model.to(memory_format=torch.channels_last)
      data = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    params = list(model.parameters())
    # jaxdl decays kernels only: here every weight matrix / conv kernel.
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=float(o.learning_rate))
    model.train()
    forward = torch.compile(model) if variant == "torch_compile" else model

    def one(x, y):
      opt.zero_grad(set_to_none=True)
      logits = forward(x)
      loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), label_smoothing=smoothing)
      loss.backward()
      if clip:
        torch.nn.utils.clip_grad_norm_(params, clip)
      opt.step()
      return loss

    def run(n):
      for i in range(n):
        loss = one(*data[i % len(data)])
      loss.item()
      return n

    return run, sum(p.numel() for p in params)

  runners, errors, count = {}, {}, 0
  variants = list(TORCH_PATHS)
  if arch not in ("digits_cnn", "digits_cnn_28"):  # channels-last is a 4-D (image) layout
    variants.remove("torch_eager_cl")
  for variant in variants:
    try:
      run, count = build(variant)
      run(3)  # warm-up (compiles under torch.compile)
      runners[variant] = run
    except Exception as e:  # a compile failure: recorded, the others go on
      errors[variant] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
      print(f"  {arch} {variant} failed: {errors[variant]}", flush=True)
  return runners, errors, count


# ------------------------------------------------------------------ timing --


def calibrate(run, target_s: float) -> int:
  """Steps that take about ``target_s`` seconds, from one short timed block."""
  n = 2
  while True:
    t = time.perf_counter()
    run(n)
    dt = time.perf_counter() - t
    if dt > 0.2 or n >= 4096:
      return max(2, int(n * target_s / dt))
    n *= 4


def bench(arch: str, repeats: int, target_s: float) -> dict:
  """Steps/s (medians over interleaved repeats) of every path on one architecture."""
  from jaxdl.utils.tree import param_count

  rng = np.random.default_rng(0)
  t0 = time.perf_counter()
  config, task = jaxdl_task(arch)
  is_lm = config.loop == "lm"
  runners = jaxdl_runners(task, is_lm, rng)
  jax_params = param_count(task.state.params)
  for name, run in runners.items():
    run(2)  # compile
  t_runners, errors, torch_params = torch_runners(arch, config, task, rng)
  runners.update(t_runners)
  print(f"  {arch}: built and warmed up in {time.perf_counter() - t0:.0f} s", flush=True)
  steps = {name: calibrate(run, target_s) for name, run in runners.items()}
  times = {name: [] for name in runners}
  for _ in range(repeats):  # interleaved: the machine's drift hits every path alike
    for name, run in runners.items():
      t = time.perf_counter()
      done = run(steps[name])
      times[name].append(done / (time.perf_counter() - t))
  rates = {name: statistics.median(r) for name, r in times.items()}
  torch_rates = {k: v for k, v in rates.items() if k.startswith("torch")}
  best = max(torch_rates, key=torch_rates.get) if torch_rates else None
  row = {"arch": arch, "jaxdl_params": jax_params, "torch_params": torch_params,
         "batch_size": config.train.batch_size, "steps_per_block": steps, "rates": rates,
         "all_rates": times, "torch_errors": errors, "best_torch": best}
  if best:
    row["ratios"] = {p: rates[p] / torch_rates[best] for p in JAXDL_PATHS}
  return row


def load_average() -> tuple[float, float, float]:
  return os.getloadavg()


def cpu_model() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in out.splitlines():
      if line.startswith("Model name:"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def print_table(rows: list[dict]) -> None:
  head = ("| preset's model | params (jaxdl / torch) | jaxdl chunk | jaxdl step from Python | PyTorch eager | "
          "eager, channels-last | torch.compile | chunk / best PyTorch | step / best PyTorch |")
  print(head)
  print("|" + "---|" * (head.count("|") - 1))
  fmt = lambda v: "—" if v is None else (f"{v:.0f}" if v >= 1000 else f"{v:.1f}")
  for r in rows:
    rates, ratios = r["rates"], r.get("ratios", {})
    cells = [fmt(rates.get(p)) if p not in r["torch_errors"] else "failed" for p in (*JAXDL_PATHS, *TORCH_PATHS)]
    ratio = [f"**{ratios[p]:.2f}x**" if p in ratios else "—" for p in JAXDL_PATHS]
    print(f"| {r['arch']} | {r['jaxdl_params']:,} / {r['torch_params']:,} | " + " | ".join(cells + ratio) + " |")


def plot(rows: list[dict], path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = [r for r in rows if r.get("ratios")]
  x = np.arange(len(rows))
  fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
  for k, (p, label) in enumerate((("jaxdl_chunk", "jaxdl chunk"), ("jaxdl_step", "jaxdl step from Python"))):
    ax.bar(x + (k - 0.5) * 0.38, [r["ratios"][p] for r in rows], 0.38, label=label)
  ax.axhline(1.0, color="k", lw=1, ls="--")
  ax.set_xticks(x, [r["arch"] for r in rows], rotation=25, ha="right")
  ax.set_ylabel("steps/s / best PyTorch variant")
  ax.set_title("jaxdl against the best PyTorch variant (CPU, float32)")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("archs", nargs="*", help=f"architectures (default: all of {', '.join(ARCHS)})")
  parser.add_argument("--quick", action="store_true", help="3 repeats of about 0.5 s each (default: 5 of 1.5 s)")
  parser.add_argument("--repeats", type=int, default=0)
  parser.add_argument("--torch-threads", type=int, default=2,
                      help="torch.set_num_threads (default 2; on a loaded machine 2 threads spin-wait on each "
                           "other, and 1 can be many times faster)")
  parser.add_argument("--out", default="", help="folder for vs_pytorch.json and vs_pytorch.png")
  args = parser.parse_args()
  archs = args.archs or list(ARCHS)
  unknown = [a for a in archs if a not in ARCHS]
  if unknown:
    parser.error(f"unknown architecture(s) {unknown}; choose from {', '.join(ARCHS)}")

  import torch
  torch.set_num_threads(args.torch_threads)
  repeats = args.repeats or (3 if args.quick else 5)
  target_s = 0.5 if args.quick else 1.5
  print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {cpu_model()}, {os.cpu_count()} cpus", flush=True)
  loads = [load_average()]
  rows = []
  for arch in archs:
    rows.append(bench(arch, repeats, target_s))
    loads.append(load_average())
    r = rows[-1]
    print(f"  {arch}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["rates"].items()) + f"  (load {loads[-1][0]:.2f})",
          flush=True)
  print()
  print_table(rows)
  one_min = [l[0] for l in loads]
  print(f"\nsteps/s, medians of {repeats} interleaved repeats; load average (1 min) during the run "
        f"{min(one_min):.2f}-{max(one_min):.2f} on {os.cpu_count()} cpus")
  if args.out:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_model(),
              "cpus": os.cpu_count(), "jax": jax.__version__, "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "repeats": repeats, "quick": args.quick,
              "load_average": loads, "rows": rows}
    (out / "vs_pytorch.json").write_text(json.dumps(record, indent=1))
    plot(rows, out / "vs_pytorch.png")
    print(f"wrote {out / 'vs_pytorch.json'} and {out / 'vs_pytorch.png'}")


if __name__ == "__main__":
  main()
