"""Errors that reach the user as one line: what is wrong and what to do next.

The command line turns a :class:`GpunnError` into ``Error: <message>`` on stderr
and exit status 1, with no traceback.  Raise one wherever the cause is the user's
input or environment, never for a bug in gpunn itself.
"""

from contextlib import contextmanager
from contextvars import ContextVar


class GpunnError(Exception):
    """A problem the user can fix; the message says how."""


class DataError(GpunnError, ValueError):
    """A data set that cannot be used as given (bad file, bad values, wrong shape)."""


class ModelFileError(GpunnError, ValueError):
    """A model file that cannot be loaded (truncated, foreign, newer format, inconsistent)."""


class TrainingDiverged(GpunnError, FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch."""


class InsufficientMemory(GpunnError, MemoryError):
    """Work refused before allocating because it needs more memory than is available; the message says how much."""


# -- naming what to change, in the caller's own vocabulary ------------------------------------------
_interface: ContextVar[str] = ContextVar("gpunn_interface", default="python")


def option_name(python: str, cli: str) -> str:
    """``python`` (an argument's name) when gpunn is used from Python, ``cli`` (an option) from the command line.

    Error messages say what to change; a Python user changes arguments, a command-line
    user options.  The command line sets the interface for the duration of a command
    (:func:`command_line_interface`).
    """
    return cli if _interface.get() == "cli" else python


@contextmanager
def command_line_interface():
    """Within this block, errors name command-line options (see :func:`option_name`)."""
    token = _interface.set("cli")
    try:
        yield
    finally:
        _interface.reset(token)
