"""Traced programs kept across processes, so a warm run does not trace its chunk again.

JAX's persistent cache (:mod:`jaxdl.train.compile`) keys an executable on
the lowered module, so every run traces and lowers each program before it
can find it: for ``mnist1d_transformer``'s chunk, 0.7 s of tracing and 0.3 s
of lowering come before the 0.9 s load, however warm the cache. A
:class:`PersistentJit` keeps the traced program as well, as a
``jax.export`` artifact beside the executables (:func:`programs_dir`). A later process
with the same key deserializes it (milliseconds) and compiles a thin
``jax.jit`` around it, which the persistent cache then loads.

The key is everything the traced program is a function of:

- the caller's ``key``: the resolved config, and the data's SHA-256 where
  the data decides shapes or constants (a loop passes None, which turns
  this cache off, when it was given Python code jaxdl cannot fingerprint:
  a loss, an optimizer, a model registered from outside jaxdl);
- :func:`code_key`: the source of every module of the jaxdl package, the
  versions of JAX and the libraries traced through, every ``jax.config``
  value, ``XLA_FLAGS`` and the devices;
- each argument's shape, dtype, weak type and sharding, and the argument
  tree.

Both runs compile the program from the same serialized bytes (the first
run round-trips what it exported), so the cold and warm runs execute one
executable and give the same bits. An entry that cannot be read is traced
again and rewritten. The cache is on when the compilation cache is
(``train.compile_cache``), in single-process runs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import pathlib
import pickle
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxdl.train.cost import matmul_flops
from jaxdl.train.writers import console

FORMAT = 1
# Reported with jax.monitoring, so jaxdl.train.compile.CompileClock counts the loads.
LOAD_EVENT = "/jaxdl/programs/load_duration"
HIT_EVENT = "/jaxdl/programs/hits"
# The libraries whose code a jaxdl program is traced through.
_LIBRARIES = ("jax", "jaxlib", "flax", "optax", "chex", "numpy", "pgx", "mctx")


def programs_dir() -> pathlib.Path:
  """``jaxdl-programs`` in the compilation cache's directory (by default ``~/.cache/jaxdl/xla/jaxdl-programs``).

  Beside the executables, so the programs go where the cache was chosen to
  go and are removed with it.
  """
  return pathlib.Path(jax.config.jax_compilation_cache_dir) / "jaxdl-programs"


@functools.cache
def _serializer() -> bool:
  return importlib.util.find_spec("flatbuffers") is not None  # jax.export's serialization needs it


def available() -> bool:
  """Whether programs are kept: the compilation cache on, one process, and ``jax.export``'s serializer installed."""
  return (bool(jax.config.jax_enable_compilation_cache) and bool(jax.config.jax_compilation_cache_dir)
          and jax.process_count() == 1 and _serializer())


def _source_digest() -> str:
  package = pathlib.Path(__file__).resolve().parent.parent
  digest = hashlib.sha256()
  for path in sorted(package.rglob("*.py")):
    digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
  return digest.hexdigest()


# Taken when jaxdl is imported (6 ms), so it is the source of the code this process runs: a file edited
# afterwards, in a notebook's session, does not key programs traced with the code loaded before the edit.
_SOURCE = _source_digest()


def _version(name: str) -> str:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return "-"


def code_key() -> str:
  """What decides a traced program besides its arguments and the caller's key (see the module's docstring)."""
  devices = jax.devices()
  facts = [FORMAT, _SOURCE, sys.version, *(f"{n}={_version(n)}" for n in _LIBRARIES),
           sorted((k, repr(v)) for k, v in jax.config.values.items()), os.environ.get("XLA_FLAGS", ""),
           [(d.platform, d.device_kind, d.id) for d in devices]]
  return hashlib.sha256(repr(facts).encode()).hexdigest()


def from_jaxdl(*code: Any) -> bool:
  """Whether every callable in ``code`` (None skipped; partials unwrapped) is jaxdl's own, so its source is keyed."""
  for fn in code:
    while isinstance(fn, functools.partial):
      fn = fn.func
    if fn is not None and not str(getattr(fn, "__module__", "")).startswith("jaxdl."):
      return False
  return True


def _describe(x: Any) -> tuple | None:
  """An argument's shape, dtype, weak type and sharding; None for one that is not an array (a Python scalar)."""
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    return None
  return (tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False)), getattr(x, "sharding", None))


def _encode_tree(tree: Any, in_tree: Any) -> tuple:
  """An output tree, storable: each part the tree of an argument named by its position, the rest pickled.

  A state's tree holds its static fields (a ``TrainState``'s ``apply_fn``
  and ``tx``), which do not pickle; a chunk's output state has its input's
  tree, which the next process builds again.
  """
  args = in_tree.children()
  parts = tree.children() if tree.node_data() is not None and tree.node_data()[0] is tuple else None
  if parts is None:
    return ("whole", pickle.dumps(tree))
  return ("tuple", [("arg", args.index(p)) if p in args else ("pickled", pickle.dumps(p)) for p in parts])


def _decode_tree(code: tuple, in_tree: Any) -> Any:
  kind, value = code
  if kind == "whole":
    return pickle.loads(value)
  args = in_tree.children()
  return jax.tree_util.treedef_tuple([args[v] if k == "arg" else pickle.loads(v) for k, v in value])


class _Program:
  """One argument signature's program: the jitted call of the exported module, and its output tree."""

  def __init__(self, entry: dict, donate: Sequence[int], in_tree: Any):
    exported = jax.export.deserialize(bytearray(entry["exported"]))
    self.call = jax.jit(exported.call, donate_argnums=tuple(donate))
    self.out_tree = _decode_tree(entry["out_tree"], in_tree)
    self.flops = entry["flops"]


class PersistentJit:
  """``jax.jit(fn, donate_argnums=..., **jit_kwargs)`` whose traced program outlives the process.

  Calls, ``lower`` and ``cost`` take the arguments ``fn`` takes. With
  ``key=None``, or where :func:`available` is false, it is that ``jax.jit``
  and nothing more. Place the arguments on their devices
  (``jax.device_put`` with a device or sharding): the program's outputs are
  committed to theirs, and a first call with uncommitted arrays would
  compile the program a second time when the outputs come back in.

  Args:
    fn: the function to jit.
    key: what, besides jaxdl's code and the arguments, decides the program
      (``repr``-able: the resolved config and the data's hash); None: keep
      nothing.
    donate_argnums: as for ``jax.jit``.
    **jit_kwargs: the rest of ``jax.jit``'s keywords (``out_shardings``).
  """

  def __init__(self, fn: Callable, *, key: Any, donate_argnums: Sequence[int] = (), **jit_kwargs):
    self.jitted = jax.jit(fn, donate_argnums=donate_argnums, **jit_kwargs)
    self._donate = tuple(donate_argnums)
    self._key = key
    self._programs: dict[tuple, _Program | None] = {}  # None: jax.export refused it, the plain jit runs it
    self._lock = threading.Lock()  # seed groups call one chunk from several threads

  def _program(self, args: tuple) -> tuple[_Program | None, list]:
    leaves, in_tree = jax.tree_util.tree_flatten(args)
    if self._key is None or not available():
      return None, leaves
    described = tuple(_describe(x) for x in leaves)
    if None in described:
      return None, leaves
    signature = (in_tree, described)
    with self._lock:
      if signature not in self._programs:
        self._programs[signature] = self._build(args, leaves, in_tree, described)
      return self._programs[signature], leaves

  def _build(self, args: tuple, leaves: list, in_tree: Any, described: tuple) -> _Program | None:
    counts = [len(jax.tree_util.tree_leaves(a)) for a in args]
    starts = [sum(counts[:i]) for i in range(len(args))]
    donate = [j for i in self._donate for j in range(starts[i], starts[i] + counts[i])]
    try:
      return _Program(self._entry(leaves, in_tree, described), donate, in_tree)
    except Exception as e:  # noqa: BLE001 -- jax.export refuses some programs (host callbacks): trace as before
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      console(f"jaxdl: this program is traced at every run, not kept ({type(e).__name__}: {first[:200]})")
      return None

  def _entry(self, leaves: list, in_tree: Any, described: tuple) -> dict:
    # The tree's static fields (a TrainState's apply_fn and tx) print with their addresses, which the key
    # does not need: the config that built them is in it.
    facts = [code_key(), repr(self._key), re.sub(r" at 0x[0-9a-f]+", "", str(in_tree)),
             [(shape, dtype, weak, repr(sharding), sorted(d.id for d in sharding.device_set) if sharding else None)
              for shape, dtype, weak, sharding in described]]
    path = programs_dir() / f"{hashlib.sha256(repr(facts).encode()).hexdigest()}.jaxprogram"
    started = time.perf_counter()
    try:
      entry = pickle.loads(path.read_bytes())
      if entry.get("format") == FORMAT:
        jax.monitoring.record_event_duration_secs(LOAD_EVENT, time.perf_counter() - started)
        jax.monitoring.record_event(HIT_EVENT)
        return entry
    except Exception:  # noqa: BLE001 -- absent, unreadable or from another format: trace it again
      pass
    entry = self._export(leaves, in_tree)
    try:
      path.parent.mkdir(parents=True, exist_ok=True)
      partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
      partial.write_bytes(pickle.dumps(entry))
      os.replace(partial, path)
    except OSError:  # a read-only cache: this process still runs the program it exported
      pass
    return entry

  def _export(self, leaves: list, in_tree: Any) -> dict:
    out_tree = []

    def flat(*xs):
      out_leaves, tree = jax.tree_util.tree_flatten(self.jitted(*jax.tree_util.tree_unflatten(in_tree, xs)))
      out_tree.append(tree)
      return out_leaves

    flat_jit = jax.jit(flat)
    exported = jax.export.export(flat_jit)(*leaves)
    flops = matmul_flops(flat_jit.trace(*leaves).jaxpr.jaxpr)  # export's trace, from JAX's cache
    return {"format": FORMAT, "exported": bytes(exported.serialize()), "out_tree": _encode_tree(out_tree[0], in_tree),
            "flops": flops}

  def __call__(self, *args):
    program, leaves = self._program(args)
    if program is None:
      return self.jitted(*args)
    return jax.tree_util.tree_unflatten(program.out_tree, program.call(*leaves))

  def lower(self, *args) -> jax.stages.Lowered:
    """The program as a call with ``args`` runs it, lowered (arguments may be ``jax.ShapeDtypeStruct``)."""
    program, leaves = self._program(args)
    return self.jitted.lower(*args) if program is None else program.call.lower(*leaves)

  def cost(self, *args) -> tuple[float, jax.stages.Compiled]:
    """``(matmul FLOPs of the traced program, the compiled program a call with args runs)``."""
    program, leaves = self._program(args)
    if program is None:
      traced = self.jitted.trace(*args)
      return matmul_flops(traced.jaxpr.jaxpr), traced.lower().compile()
    return program.flops, program.call.lower(*leaves).compile()
