"""One exception type for every user-facing error.

The CLI catches :class:`NasflowError`, prints its message once (no traceback) and exits with
status 2, so that Snakemake / DVC show the reason and nothing half-written is left behind.
"""

from __future__ import annotations


class NasflowError(Exception):
    """A user-facing error: bad params, missing data, corrupt file, diverged training."""


class ParamsError(NasflowError):
    """A params file is invalid. The message names the file and the offending key."""

    def __init__(self, file: str | None, key: str, message: str):
        self.file, self.key = file, key
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{key}: {message}")


class DataError(NasflowError):
    """A dataset is missing, corrupt or unsafe; the message says how to supply it."""


class CheckpointError(NasflowError):
    """A checkpoint is truncated, corrupt or does not match the run."""


class DivergenceError(NasflowError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
