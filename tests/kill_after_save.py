"""Test helper: runs ``jaxdl ARGS`` and SIGKILLs itself right after checkpoint STEP is started.

    python tests/kill_after_save.py STEP run PRESET --workdir DIR ...

The kill comes from a wrapped ``Checkpointer.save``, so the library itself
holds no fault-injection hook. With async saves the checkpoint being written
may or may not land, which is what the kill-and-resume tests want to survive.
"""

import os
import signal
import sys

from jaxdl import checkpoint, cli


def main() -> int:
  kill_at, argv = int(sys.argv[1]), sys.argv[2:]
  save = checkpoint.Checkpointer.save

  def save_then_die(self, step, state, **kwargs):
    save(self, step, state, **kwargs)
    if step == kill_at:
      os.kill(os.getpid(), signal.SIGKILL)

  checkpoint.Checkpointer.save = save_then_die
  return cli.main(argv)


if __name__ == "__main__":
  sys.exit(main())
