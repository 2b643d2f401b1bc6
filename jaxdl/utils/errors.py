"""Errors that reach the user as one line and exit code 2."""


class JaxdlError(Exception):
  """Bad input from the user: a config key, a file, a shape.

  The CLI prints ``jaxdl: error: <message>`` on one line and exits with code 2
  (a traceback only under ``--debug``). Messages name the offending thing.
  """

  exit_code = 2


class Preempted(JaxdlError):
  """SIGTERM or SIGINT arrived: training stopped after its chunk and saved a checkpoint there.

  The exit code is the shell's for that signal (143 for SIGTERM, 130 for
  SIGINT), so a cluster sees a preempted job, not a finished one.
  """

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum, self.exit_code = signum, 128 + signum
