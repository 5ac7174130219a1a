"""pykexec's errors: one root class, and the one line a user sees for each.

Each layer raises its own error type whose message already names the file and the
problem; all of them derive from `PykexecError` (as pyelftools' errors derive from
`ELFError`), so "is this a refusal meant for the user" is one `isinstance` check and this
module imports nothing from the layers above it. An OSError names its file and counts as
a refusal too. Python's own exception types (ValueError, KeyError, ...) raised anywhere
else are bugs in pykexec and are reported as an internal error (a traceback under --debug).
"""

from __future__ import annotations

from typing import Optional


class PykexecError(Exception):
    """The root of every error pykexec raises on purpose: its message is the line a user
    sees (naming the file or option and the problem)."""


class LoadError(PykexecError, ValueError):
    """A request that cannot be planned on this machine; the message says why.

    `exit_status` is what kexec-tools exits with for the same fault: 255 (a loader's -1,
    "Cannot load") unless a subclass or the raiser says otherwise."""

    exit_status = 255


class FatalLoadError(LoadError):
    """A fault kexec-tools meets in a die() (unreadable input, no hole, command line
    overflow): exit 1."""

    exit_status = 1


def is_user_error(err: BaseException) -> bool:
    """Whether `err` carries a message meant for the user (not a bug)."""
    return isinstance(err, (PykexecError, OSError))


# Control characters shown escaped, so that a message is one line whatever a file name or
# a value holds (a kernel path with a newline, an ESC sequence in a machine file).
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028",
                 0x2029: "\\u2029", 0x85: "\\x85"})


def one_line(text: str) -> str:
    """`text` as one line: outer blanks dropped, control characters escaped."""
    return text.strip().translate(_ESCAPES)


def describe(err: BaseException) -> Optional[str]:
    """One line for a user-facing error, or None for a bug."""
    if isinstance(err, MemoryError):
        return "out of memory (an input is larger than this machine can hold)"
    if not is_user_error(err):
        return None
    if isinstance(err, OSError):
        what = err.strerror or str(err) or err.__class__.__name__
        names = [n for n in (err.filename, err.filename2) if n is not None]
        names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
        names = [n if n else "'' (an empty name)" for n in names]
        return one_line(f"{' -> '.join(names)}: {what}" if names else what)
    # A KeyError subclass would quote its message; take the message itself.
    text = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
    return one_line(text) or err.__class__.__name__
