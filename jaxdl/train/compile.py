"""Compile once: JAX's persistent compilation cache on by default, and the time spent compiling.

Every loop's run turns the cache on (``train.compile_cache``, default true)
in ``$JAXDL_CACHE_DIR/xla`` (default ``~/.cache/jaxdl/xla``), with thresholds
low enough that even small programs are kept: a second run of the same
config loads its executables instead of compiling them. A cached executable
is the program XLA would have built, so results are bit-identical. A cache
directory chosen already (``JAX_COMPILATION_CACHE_DIR``, or
``jax.config.update("jax_compilation_cache_dir", ...)``) is kept, as are
thresholds set through their environment variables.

:class:`CompileClock` adds up, while it is open, the three stages JAX reports
for each program it builds: tracing to a jaxpr, lowering to StableHLO, and the
XLA compile (or the cache read that replaces it), plus the reads of
traced programs kept by :mod:`jaxdl.train.programs`. That is a run's
``compile_seconds``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import threading
from collections.abc import Iterator

import jax
from jax.experimental.compilation_cache import compilation_cache

from jaxdl.data.builtin import cache_dir
from jaxdl.train import programs
from jaxdl.train.writers import console

# The durations jax.monitoring reports for each program compiled (jax._src.dispatch's event names).
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   programs.LOAD_EVENT,  # a traced program read back (jaxdl.train.programs)
                   "/jax/core/compile/backend_compile_duration")
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
# JAX's thresholds and the values a run sets unless their environment variable did.
_THRESHOLDS = {"jax_persistent_cache_min_compile_time_secs": 0.0,
               "jax_persistent_cache_min_entry_size_bytes": 0}


def default_cache_dir() -> pathlib.Path:
  """``$JAXDL_CACHE_DIR/xla``, by default ``~/.cache/jaxdl/xla``."""
  return cache_dir() / "xla"


def configure_cache(enabled: bool) -> str | None:
  """Turns the persistent compilation cache on or off for this process.

  Args:
    enabled: ``train.compile_cache``.

  Returns:
    The cache directory in use, or None when the cache is off.
  """
  current = jax.config.jax_compilation_cache_dir
  if not enabled:
    if jax.config.jax_enable_compilation_cache:
      jax.config.update("jax_enable_compilation_cache", False)
      compilation_cache.reset_cache()  # JAX decides once per process whether to use it
    return None
  wanted = current or str(default_cache_dir())
  changed = wanted != current or not jax.config.jax_enable_compilation_cache
  for name, value in _THRESHOLDS.items():
    if name.upper() not in os.environ and getattr(jax.config, name) != value:
      jax.config.update(name, value)
      changed = True
  if changed:
    try:
      pathlib.Path(wanted).mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only home: compile as if the cache were off
      console(f"jaxdl: warning: no compilation cache ({wanted}: {e.strerror}); "
              f"set JAXDL_CACHE_DIR to a writable directory")
      return configure_cache(False)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", wanted)
    compilation_cache.reset_cache()
  return wanted


class CompileClock:
  """Seconds spent tracing, lowering and compiling (or loading from the cache) while open.

  A context manager: ``with CompileClock() as clock: ...; clock.seconds``.
  It counts every program this process builds meanwhile, on any thread.
  """

  def __init__(self):
    self.seconds = 0.0
    self.programs = 0  # XLA executables built or loaded
    self.cache_hits = 0  # of them, loaded from the persistent cache
    self.program_hits = 0  # traced programs read back instead of traced (jaxdl.train.programs)
    self._lock = threading.Lock()

  def _listen(self, event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event in _COMPILE_EVENTS:
      with self._lock:
        self.seconds += duration
        self.programs += event == _COMPILE_EVENTS[-1]

  def _count(self, event: str, **kwargs) -> None:
    del kwargs
    if event in (_CACHE_HIT_EVENT, programs.HIT_EVENT):
      with self._lock:
        if event == _CACHE_HIT_EVENT:
          self.cache_hits += 1
        else:
          self.program_hits += 1

  def __enter__(self) -> CompileClock:
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    jax.monitoring.register_event_listener(self._count)
    return self

  def __exit__(self, *exc) -> None:
    jax.monitoring.unregister_event_duration_listener(self._listen)
    jax.monitoring.unregister_event_listener(self._count)

  def record(self) -> dict[str, float | int]:
    """The ``metrics.json`` keys: ``compile_seconds``, ``compiled_programs``, ``compile_cache_hits``, ``program_cache_hits``."""
    return {"compile_seconds": self.seconds, "compiled_programs": self.programs,
            "compile_cache_hits": self.cache_hits, "program_cache_hits": self.program_hits}


@contextlib.contextmanager
def compiling(cache: bool) -> Iterator[CompileClock]:
  """A run's compiles: the cache set as ``train.compile_cache`` says, and a :class:`CompileClock` over them."""
  configure_cache(cache)
  with CompileClock() as clock:
    yield clock
