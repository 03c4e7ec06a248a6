"""Error types raised by ephw.

Every error a user can cause (bad input, missing files, unknown names) is an
:class:`EphwError`; the command line prints its message on one line and exits
with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class EphwError(Exception):
    """Base class of all user-facing ephw errors."""


class InputError(EphwError, ValueError):
    """Images or states of the wrong shape, dtype or with non-finite values."""


class BackendError(EphwError, KeyError):
    """Unknown backend name or invalid backend options."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(EphwError, ValueError):
    """Invalid model or training configuration."""


class DataError(EphwError, FileNotFoundError):
    """A dataset is missing or unreadable."""


class CheckpointError(EphwError, ValueError):
    """A checkpoint file is missing, truncated, corrupt or not an ephw checkpoint."""


class OutputError(EphwError, OSError):
    """An output cannot be written: full or read-only disk, a file in the way, or a run already writing it."""
