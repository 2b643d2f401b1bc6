"""Errors that reach the user as one line and exit code 2."""


class JaxdlError(Exception):
  """Bad input from the user: a config key, a file, a shape.

  The CLI prints ``jaxdl: error: <message>`` on one line and exits with code 2
  (a traceback only under ``--debug``). Messages name the offending thing.
  """

  exit_code = 2
