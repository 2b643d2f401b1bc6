"""What the CLI tests share: running ``jaxdl`` in-process or in a subprocess, the bad-input contract, and
reading back what a run wrote."""

import pathlib
import subprocess
import sys

from jaxdl import cli


def run_cli(capsys, *argv):
  """``(exit code, stdout, stderr)`` of ``jaxdl *argv`` run in this process."""
  code = cli.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def run_jaxdl(*argv, cwd=None, timeout=300):
  """``python -m jaxdl *argv`` in a subprocess (this environment: the 8 CPU devices, the XLA cache)."""
  return subprocess.run([sys.executable, "-m", "jaxdl", *argv], cwd=cwd, capture_output=True, text=True,
                        timeout=timeout)


def files_of(workdir):
  """{path: bytes} of every file a run left in ``workdir`` (the lock file of a live run aside)."""
  workdir = pathlib.Path(workdir)
  return {p.relative_to(workdir).as_posix(): p.read_bytes()
          for p in sorted(workdir.rglob("*")) if p.is_file() and p.name != ".lock"}


def assert_one_line_error(code, err, *words):
  """Bad input: exit code 2 and one ``jaxdl: error:`` line, no traceback, naming each of ``words``."""
  assert code == 2, err
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith("jaxdl: error: "), err
  assert "Traceback" not in err
  for word in words:
    assert word in lines[0], (word, lines[0])


def killed_after_save(cmd, step):
  """``cmd`` (``[python, -m, jaxdl, ...]``) run so that it SIGKILLs itself after checkpoint ``step``."""
  assert cmd[1:3] == ["-m", "jaxdl"], cmd
  return [cmd[0], str(pathlib.Path(__file__).with_name("kill_after_save.py")), str(step), *cmd[3:]]


def tensorboard_steps(tb_dir):
  """{tag: [step, ...]} of the scalars in the TensorBoard event files under ``tb_dir``."""
  import struct

  from tensorboardX.proto import event_pb2

  steps = {}
  for path in sorted(tb_dir.glob("events.out.tfevents.*")):
    data, at = path.read_bytes(), 0
    while at < len(data):  # TFRecord: length (u64), its CRC (u32), the event, its CRC (u32)
      (length,) = struct.unpack("<Q", data[at:at + 8])
      event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
      at += 12 + length + 4
      for value in event.summary.value:
        steps.setdefault(value.tag, []).append(event.step)
  return steps

