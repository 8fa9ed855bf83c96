"""One exception type for every user-facing error.

The CLI catches :class:`NasflowError`, prints its message once (no traceback) and exits with
status 2, so that Snakemake / DVC show the reason and nothing half-written is left behind.
"""

from __future__ import annotations


class NasflowError(Exception):
    """A user-facing error: bad params, missing data, corrupt file, diverged training."""


class InputError(NasflowError):
    """A file or value handed to nasflow is unreadable, malformed, or made for another
    configuration. The message is ``<file>: <key>: <what is wrong>`` (key optional)."""

    def __init__(self, file: object, message: str, key: str | None = None):
        self.file, self.key, self.reason = (str(file) if file is not None else None), key, message
        parts = [p for p in (self.file, key) if p]
        super().__init__(": ".join([*parts, message]))


class ParamsError(InputError):
    """A params file is invalid. The message names the file and the offending key."""

    def __init__(self, file: str | None, key: str, message: str):
        super().__init__(file, message, key=key)


class DataError(NasflowError):
    """A dataset is missing, corrupt or unsafe; the message says how to supply it."""


class CheckpointError(NasflowError):
    """A checkpoint is truncated, corrupt or does not match the run."""


class DivergenceError(NasflowError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
