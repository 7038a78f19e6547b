"""The package's exception types: every expected failure is an `IFCSRError` whose message names
the file or argument at fault and how to fix it. Imports nothing from the package.

The CLI prints any IFCSRError as one line (`ifcsr CMD: error: ...`, exit status 2) and shows a
traceback only for programming errors (or everything under `--debug`). Each type also derives
from the built-in exception a caller would have caught before (ValueError, FileNotFoundError,
OSError, ...), so existing `except ValueError:` code keeps working.
"""

from __future__ import annotations


class IFCSRError(Exception):
    """Base class of every error ifcsr raises on purpose (bad input, bad file, missing weights)."""


class InputError(IFCSRError, ValueError):
    """A bad argument: an image, a gamma, an option, a config value."""


class ConfigError(InputError):
    """A config (dict, JSON file or CLI options) with a missing, unknown or ill-typed key."""


class CheckpointError(IFCSRError, ValueError):
    """A checkpoint or trainer state that is incomplete, corrupt, unsafe or from another run."""


class WeightsUnavailable(IFCSRError, FileNotFoundError):
    """Weights that are neither on disk nor downloadable here (offline machine, missing folder)."""


class OutputError(IFCSRError, OSError):
    """A file or folder that cannot be written (read-only, disk full, bad name)."""


class RunLockedError(IFCSRError, RuntimeError):
    """Another live run writes into the same output folder."""


class NonFiniteError(IFCSRError, FloatingPointError):
    """NaN or infinity where numbers must be finite (a loss, an endpoint image)."""


def describe_os_error(err: OSError, what: str = "") -> str:
    """One line for an OSError: the file, the reason, and what usually fixes it."""
    import errno

    target = err.filename if getattr(err, "filename", None) else what
    hints = {
        errno.EACCES: "no permission: choose a folder you can write to (e.g. under your home)",
        errno.EPERM: "no permission: choose a folder you can write to (e.g. under your home)",
        errno.EROFS: "the file system is read-only: choose another output folder",
        errno.ENOSPC: "the disk is full: free some space or choose another output folder",
        errno.EDQUOT: "the disk quota is exceeded: free some space or choose another output folder",
        errno.ENAMETOOLONG: "the file name is too long: choose a shorter name",
        errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
        errno.ENOENT: "no such file or folder: check the path",
        errno.EISDIR: "that is a folder, not a file: name a file",
    }
    hint = hints.get(err.errno, "check the path and its permissions")
    reason = err.strerror or str(err)
    return f"{target}: {reason} ({hint})" if target else f"{reason} ({hint})"


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type (a string where a number belongs, ...)."""


class UnknownNameError(InputError, KeyError):
    """A name that is not in a registry (a sample photo, a metric, a preset)."""

    __str__ = Exception.__str__  # KeyError would quote the whole message


class MissingFileError(IFCSRError, FileNotFoundError):
    """A file or folder the user named does not exist or lacks what it must hold."""
