"""Errors that reach the user as one line: what is wrong and what to do next.

The command line turns a :class:`GpunnError` into ``Error: <message>`` on stderr
and exit status 1, with no traceback.  Raise one wherever the cause is the user's
input or environment, never for a bug in gpunn itself.
"""


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
