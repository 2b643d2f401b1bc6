"""Where a train step's time goes on the CPU: XLA's thunks, per step, named by the HLO they run.

XLA's CPU backend runs a compiled program as a sequence of thunks (a fusion,
a library matmul, a copy, a loop). With ``--xla_cpu_enable_xprof_traceme``
each thunk is a ``jax.profiler`` event, and the trace's XSpace, read with
``jax.profiler.ProfileData`` (in jaxlib, no extra package), gives each one's
start and duration. XLA's executor runs independent thunks at the same time
(on 2 cores, a layer's input gradient next to its kernel gradient), so a
thunk's own duration overstates it: each moment is split between the thunks
running then, and a thunk's time is its share.

The script trains a preset's model as ``benchmarks/vs_pytorch.py`` does (the
same ``jaxdl_task``), traces a few steps of the chosen path, and prints the
thunks that took longest per step, each with its HLO result shape and the
JAX operation it came from (the ``op_name`` metadata of the compiled
program), then the same times summed by operation.

Read with care:
- a thunk that XLA runs asynchronously (an Eigen matmul next to a YNNPACK
  one) shows only its dispatch, and the one it overlaps gets its time;
- the chunk's work outside its loop (the epoch's permutation) is divided
  by the few steps traced, so it looks larger than in a run;
- the trace costs some speed: compare thunks with each other, not the total
  with ``vs_pytorch.py``'s numbers;
- the chunk's thunks are its loop body's, summed over the steps traced.

    python benchmarks/thunk_profile.py digits_cnn_28                 # the step from Python
    python benchmarks/thunk_profile.py charlm_transformer --path chunk --top 30

ARCH is any of vs_pytorch.py's architectures (digits_mlp, digits_cnn,
digits_cnn_28, mnist1d_resnet, mnist1d_gru, mnist1d_transformer,
charlm_transformer). CPU only; on a GPU use the profiler's own viewer.
"""

import os

_FLAG = "--xla_cpu_enable_xprof_traceme=true"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):  # before JAX starts its backend
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

import argparse
import collections
import pathlib
import re
import sys
import tempfile

import jaxdl  # noqa: F401  (first: its CPU runtime settings, see jaxdl.utils.cpu_runtime)
import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vs_pytorch  # noqa: E402  (the same tasks and runners)

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+) ")


def hlo_index(text: str) -> dict[str, tuple[str, str]]:
  """``{instruction name: (result shape, op_name)}`` of a compiled program's HLO text."""
  index = {}
  for line in text.splitlines():
    m = _INSTRUCTION.match(line)
    if m:
      op = re.search(r'op_name="([^"]*)"', line)
      index[m.group(1)] = (m.group(2), op.group(1) if op else "")
  return index


def thunk_times(xspace: pathlib.Path, names) -> tuple[collections.Counter, float, float]:
  """Each thunk's share of the wall clock, the wall time thunks ran, and their summed durations (seconds).

  Thunks that run at once (XLA's executor starts independent ones together)
  share the wall clock: each moment is split evenly between the thunks
  running then, so the shares add up to the time any thunk ran.
  """
  edges = []  # (time, +1 start / -1 end, name)
  summed = 0.0
  for plane in jax.profiler.ProfileData.from_file(str(xspace)).planes:
    for line in plane.lines:
      for event in line.events:
        if event.name in names:
          edges += [(event.start_ns, 1, event.name), (event.start_ns + event.duration_ns, -1, event.name)]
          summed += event.duration_ns * 1e-9
  shares, running, busy, last = collections.Counter(), collections.Counter(), 0.0, None
  for t, kind, name in sorted(edges, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
    active = sum(running.values())
    if active and last is not None:
      dt = (t - last) * 1e-9
      busy += dt
      for running_name, count in running.items():
        if count:
          shares[running_name] += dt * count / active
    running[name] += kind
    last = t
  return shares, busy, summed


def operation(op_name: str) -> str:
  """``jit(train_step)/transpose(jvp(CNN))/Conv_1/dot_general`` -> ``bwd CNN/Conv_1/dot_general``."""
  backward = "transpose(" in op_name
  parts = [p for p in op_name.split("/") if p and not p.startswith("jit(")]
  parts = [re.sub(r"^(?:transpose\()?(?:jvp\()?([^()]*)\)*$", r"\1", p) for p in parts]
  return ("bwd " if backward else "") + "/".join(parts)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("arch", choices=vs_pytorch.ARCHS)
  parser.add_argument("--path", choices=("step", "chunk"), default="step",
                      help="the jitted step called from Python (default) or the on-device chunk")
  parser.add_argument("--steps", type=int, default=4, help="steps traced (default 4)")
  parser.add_argument("--top", type=int, default=25, help="thunks listed (default 25)")
  args = parser.parse_args()

  config, task = vs_pytorch.jaxdl_task(args.arch)
  runners = vs_pytorch.jaxdl_runners(task, config.loop == "lm", np.random.default_rng(0))
  run = runners[f"jaxdl_{args.path}"]
  run(2)  # compile and warm up
  if args.path == "chunk":
    program, call_args = task.chunk_program(task.state)
  else:
    program = jax.jit(task.train_step, donate_argnums=0)
    call_args = (task.state, vs_pytorch.step_batches(task, config.loop == "lm", np.random.default_rng(0), 1)[0])
  index = hlo_index(program.lower(*call_args).compile().as_text())

  with tempfile.TemporaryDirectory() as tmp:
    jax.profiler.start_trace(tmp)
    done = run(args.steps)
    jax.profiler.stop_trace()
    xspace = next(pathlib.Path(tmp).rglob("*.xplane.pb"))
    shares, busy, summed = thunk_times(xspace, set(index))
  thunks = {name: seconds / done for name, seconds in shares.items()}
  total = busy / done
  print(f"{args.arch}, {args.path}: {len(thunks)} thunks ran for {total * 1e3:.1f} ms per step, "
        f"{summed / busy:.2f} at once on average (traced, {done} steps)\n")
  print(f"{'ms/step':>8} {'share':>6}  {'thunk':<28} {'result':<34} operation")
  for name, t in sorted(thunks.items(), key=lambda kv: -kv[1])[:args.top]:
    shape, op_name = index[name]
    print(f"{t * 1e3:8.2f} {t / total:6.1%}  {name:<28} {shape[:34]:<34} {operation(op_name)}")
  by_op = collections.Counter()
  for name, t in thunks.items():
    by_op[operation(index[name][1]) or "(no op_name)"] += t
  print(f"\nby operation (top {args.top}):")
  for op, t in by_op.most_common(args.top):
    print(f"{t * 1e3:8.2f} {t / total:6.1%}  {op}")


if __name__ == "__main__":
  main()
