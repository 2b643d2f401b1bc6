"""What the CLI tests share: running ``jaxdl`` in-process, and the bad-input contract."""

from jaxdl import cli


def run_cli(capsys, *argv):
  """``(exit code, stdout, stderr)`` of ``jaxdl *argv`` run in this process."""
  code = cli.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


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
  import pathlib

  assert cmd[1:3] == ["-m", "jaxdl"], cmd
  return [cmd[0], str(pathlib.Path(__file__).with_name("kill_after_save.py")), str(step), *cmd[3:]]
