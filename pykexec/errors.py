"""Turning an error into the one line a user sees.

Each layer raises its own error type whose message already names the file and the
problem; this module only knows which types carry such a message. Anything else is a bug
in pykexec and is reported as an internal error (with a traceback under --debug).
"""

from __future__ import annotations

from typing import Optional


def _user_error_types():
    from pykexec.arch.x86.bzimage import ImageError
    from pykexec.crashmem import CrashMemoryError
    from pykexec.elfcore import ElfCoreError
    from pykexec.elfrel import ElfRelError
    from pykexec.layout import LayoutError
    from pykexec.machine import MachineError
    from pykexec.plan import PlanFormatError
    from pykexec.ranges import NoHoleError
    return (ImageError, CrashMemoryError, ElfCoreError, ElfRelError, LayoutError, MachineError,
            PlanFormatError, NoHoleError, LoadError)


class LoadError(ValueError):
    """A request that cannot be planned on this machine; the message says why.

    `exit_status` is what kexec-tools exits with for the same fault: 255 (a loader's -1,
    "Cannot load") unless a subclass or the raiser says otherwise."""

    exit_status = 255


class FatalLoadError(LoadError):
    """A fault kexec-tools meets in a die() (unreadable input, no hole, command line
    overflow): exit 1."""

    exit_status = 1


def describe(err: BaseException) -> Optional[str]:
    """One line for a user-facing error, or None for a bug."""
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    if isinstance(err, _user_error_types()):
        return str(err)
    return None
