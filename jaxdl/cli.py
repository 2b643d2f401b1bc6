"""``jaxdl`` on the command line: find a preset, apply ``--set``, call its loop.

    jaxdl list
    jaxdl show PRESET [--set KEY=VALUE ...]
    jaxdl run PRESET [--workdir DIR] [--set KEY=VALUE ...] [--debug]
    jaxdl sample WORKDIR --prompt TEXT [--length N] [--temperature T]
    jaxdl explain WORKDIR [--method M] [--examples N] [--out DIR]

Presets are the ``get_config()`` files of ``$JAXDL_PRESETS``, then of the
package (the repository's ``experiments/``, installed with the wheel as
``jaxdl/experiments``), then of ``./experiments``; a path to a ``.py`` file
works as a preset too. Bad input exits with code 2 and one line on stderr;
``--debug`` shows the traceback instead. This module parses, validates and
calls ``jaxdl.loops.<loop>.train_and_evaluate``; nothing else.
"""

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Sequence

from jaxdl.utils.errors import JaxdlError, Preempted

from jaxdl.configs import find_presets, resolve_preset
from jaxdl.loops import LOOPS, get_loop


def _summary(doc: str) -> str:
  return doc.strip().splitlines()[0] if doc.strip() else ""


def _load(name: str, overrides: Sequence[str]):
  from jaxdl import configs

  config, doc = configs.load_preset(resolve_preset(name))
  if config.get("loop", "supervised") in OPEN_MODEL_LOOPS:
    _open_model_options(config, overrides)
  configs.apply_overrides(config, overrides)
  return config, doc


# Loops whose ``model`` section holds the chosen model's own options.
OPEN_MODEL_LOOPS = ("supervised", "lm", "simclr", "grad_flow", "transfer", "distill")


def _open_model_options(config, overrides: Sequence[str]) -> None:
  """Lets ``--set`` reach every option of the chosen model, not only those the preset names.

  ``--set model.name=X`` (another model) replaces the section by X's
  options and their defaults; ``--set model.KEY=...`` for an option the
  preset leaves at its default adds it first, so it parses like the default.
  """
  import ml_collections

  from jaxdl.models import model_options, option_defaults

  keys = [item.partition("=")[0].strip() for item in overrides]
  names = [item.partition("=")[2].strip() for item, key in zip(overrides, keys) if key == "model.name"]
  if names and names[-1] != config.model.name:
    defaults = option_defaults(names[-1])  # an unknown name is a one-line error here
    if config.get("loop") == "lm":
      defaults.pop("max_len", None)  # the LM loop sizes a position table to data.seq_len unless told
    with config.unlocked():
      config.model = ml_collections.ConfigDict({"name": names[-1], **defaults})
  defaults = option_defaults(config.model.name)
  with config.model.unlocked():
    for key in keys:
      option = key[len("model."):] if key.startswith("model.") else None
      if option and option not in config.model:
        if option not in model_options(config.model.name):
          raise JaxdlError(f"--set {key}: unknown key: model '{config.model.name}' has no option '{option}' "
                           f"(its options: {', '.join(model_options(config.model.name))})")
        if option in defaults:
          config.model[option] = defaults[option]


def default_workdir(preset: str, overrides: Sequence[str]) -> pathlib.Path:
  """``runs/PRESET``, or ``runs/PRESET/KEY=VALUE,...`` with overrides: a changed config gets its own run.

  So ``jaxdl run P --set train.seed=1`` after ``jaxdl run P`` starts a second
  run instead of being refused for a different config, and the same command
  again resumes its own. Long override lists are cut and hashed.
  """
  import hashlib
  import re

  base = pathlib.Path("runs") / preset
  if not overrides:
    return base
  text = ",".join(item.strip().replace(" ", "") for item in overrides)
  safe = re.sub(r"[^A-Za-z0-9._=,+()-]", "_", text)
  if len(safe) > 80:
    safe = f"{safe[:60]}...{hashlib.sha256(text.encode()).hexdigest()[:12]}"
  return base / safe


def cmd_list(args) -> int:
  import ast

  presets = find_presets()
  if not presets:
    raise JaxdlError("no presets found (looked in: the package's experiments/ and the current "
                     "directory's; set JAXDL_PRESETS=DIR to add one)")
  width = max(map(len, presets))
  for name, path in presets.items():
    # The docstring is read without running the file: listing stays instant.
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    print(f"{name:<{width}}  {_summary(doc)}")
  return 0


def cmd_show(args) -> int:
  from jaxdl import configs

  config, _ = _load(args.preset, args.set)
  get_loop(config.get("loop", "supervised")).validate(config)  # unused keys, bad values
  print(json.dumps(configs.to_dict(config), indent=2, sort_keys=True))
  return 0


def cmd_run(args) -> int:
  config, _ = _load(args.preset, args.set)
  name = pathlib.Path(args.preset).stem
  workdir = pathlib.Path(args.workdir or default_workdir(name, args.set))
  loop = config.get("loop", "supervised")
  if loop not in LOOPS:
    raise JaxdlError(f"preset '{name}' names an unknown loop '{loop}' "
                     f"(known: {', '.join(LOOPS)})")
  _join_flags(args, config, loop)
  get_loop(loop).train_and_evaluate(config, workdir)
  return 0


_JOIN_FLAGS = {"num_processes": "JAX_NUM_PROCESSES", "process_id": "JAX_PROCESS_ID",
               "coordinator": "JAX_COORDINATOR_ADDRESS"}


def _join_flags(args, config, loop: str) -> None:
  """``--num-processes``, ``--process-id`` and ``--coordinator``: the variables they stand for, and ``train.distributed``."""
  given = {k: getattr(args, k) for k in _JOIN_FLAGS if getattr(args, k) is not None}
  if not given:
    return
  if "distributed" not in config.get("train", {}):
    raise JaxdlError(f"the '{loop}' loop runs in one process; --num-processes, --process-id and "
                     f"--coordinator do not apply to it")
  if "num_processes" not in given or "process_id" not in given:
    raise JaxdlError("--num-processes and --process-id go together (with --coordinator HOST:PORT, "
                     "or JAX_COORDINATOR_ADDRESS)")
  for key, value in given.items():
    os.environ[_JOIN_FLAGS[key]] = str(value)
  config.train.distributed = True


def cmd_sample(args) -> int:
  from jaxdl.loops.lm import sample_from_workdir

  text = sample_from_workdir(args.workdir, prompt=args.prompt, length=args.length,
                             temperature=args.temperature, seed=args.seed)
  print(args.prompt + text)
  return 0


def cmd_explain(args) -> int:
  from jaxdl import interpret
  from jaxdl.loops.supervised import load_run

  workdir = pathlib.Path(args.workdir)
  interpret.get_method(args.method)  # an unknown method fails before anything loads
  interpret.check_classifier_workdir(workdir)
  run = load_run(workdir)
  x, y = interpret.test_examples(run.config, workdir, args.examples)
  out = pathlib.Path(args.out) if args.out else workdir / "explain"
  result = interpret.explain(run.model, run.variables, x, y, method=args.method, out_dir=out,
                             title=f"{args.method}: {run.config.model.name} on {run.config.data.name} "
                                   f"(step {run.step})")
  extra = (f", completeness error {result['completeness_error']:.2%}"
           if "completeness_error" in result else "")
  print(f"jaxdl: {args.method} on {result['examples']} test examples (accuracy {result['accuracy']:.3f}), "
        f"sanity rank correlation {result['sanity_rank_correlation']:.3f}{extra} -> "
        f"{out / (args.method + '.png')}")
  return 0


class _Parser(argparse.ArgumentParser):
  """argparse, but usage errors are one line and exit 2 like every other bad input."""

  def error(self, message):
    print(f"jaxdl: error: {message} (see '{self.prog} --help')", file=sys.stderr)
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
      prog="jaxdl", description="jaxdl: a JAX functional research toolkit.")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                              parser_class=_Parser)

  p = sub.add_parser("list", help="list the presets with a one-line description")
  p.set_defaults(func=cmd_list)

  def add_common(p):
    p.add_argument("preset", help="a preset name (see 'jaxdl list') or a path to a .py config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by dotted key, e.g. --set optim.learning_rate=3e-4")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")

  p = sub.add_parser("show", help="print a preset's resolved config as JSON")
  add_common(p)
  p.set_defaults(func=cmd_show)

  p = sub.add_parser("run", help="train and evaluate a preset")
  add_common(p)
  p.add_argument("--workdir", help="output directory (default: runs/PRESET, or runs/PRESET/KEY=VALUE,... with --set)")
  p.add_argument("--num-processes", type=int, metavar="N",
                 help="processes in a multi-host job (sets train.distributed=true; or JAX_NUM_PROCESSES)")
  p.add_argument("--process-id", type=int, metavar="I", help="this process's index in [0, N) (or JAX_PROCESS_ID)")
  p.add_argument("--coordinator", metavar="HOST:PORT",
                 help="the address of process 0 (or JAX_COORDINATOR_ADDRESS)")
  p.set_defaults(func=cmd_run)

  p = sub.add_parser("sample", help="generate text with a trained language model")
  p.add_argument("workdir", help="the workdir of a finished language-model run")
  p.add_argument("--prompt", required=True, help="the text to continue")
  p.add_argument("--length", type=int, default=200, help="characters to generate (default 200)")
  p.add_argument("--temperature", type=float, default=0.8,
                 help="softmax temperature; 0 is greedy (default 0.8)")
  p.add_argument("--seed", type=int, default=0, help="the sampling seed")
  p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
  p.set_defaults(func=cmd_sample)

  p = sub.add_parser("explain", help="attribution maps of a trained classifier, with their sanity check")
  p.add_argument("workdir", help="the workdir of a trained classifier (supervised) run")
  p.add_argument("--method", default="gradient",
                 help="gradient (default), gradient_x_input, smoothgrad, integrated_gradients, gradcam "
                      "or attention_rollout")
  p.add_argument("--examples", type=int, default=16, help="test examples to explain, the first N (default 16)")
  p.add_argument("--out", help="output directory (default WORKDIR/explain)")
  p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
  p.set_defaults(func=cmd_explain)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``jaxdl`` command; returns the exit code."""
  parser = build_parser()
  try:
    args = parser.parse_args(argv)
  except SystemExit as e:  # --help (0) or a usage error (2), already printed
    return int(e.code or 0)
  debug = getattr(args, "debug", False)
  try:
    return args.func(args)
  except Preempted as e:  # not an error: the run saved and can be resumed
    print(f"jaxdl: {e}", file=sys.stderr)
    return e.exit_code
  except JaxdlError as e:
    if debug:
      raise
    print(f"jaxdl: error: {e}", file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt:
    print("jaxdl: interrupted", file=sys.stderr)
    return 130
  except BrokenPipeError:  # `jaxdl list | head`: the reader left; stop quietly, as `yes | head` does
    import os
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit-time flush has nowhere to fail
    return 141  # 128 + SIGPIPE
  except Exception as e:  # a bug, not bad input: still one line unless --debug
    if debug:
      raise
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    print(f"jaxdl: internal error: {type(e).__name__}: {first} (rerun with --debug for the "
          f"traceback)", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
