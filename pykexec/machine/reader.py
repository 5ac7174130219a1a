"""Reading machine files under one root: bounded reads, a per-file cache, `MachineError`.

`MachineReader` is the base of `pykexec.machine.Machine`: every fact module reads through
its `file_bytes`/`file_text`/`file_value` helpers, so each file is read at most once per
machine and a missing, unreadable or malformed file gives one `MachineError` naming it.
"""

from __future__ import annotations

import errno as errno_mod
import os
import re
from typing import Optional, Tuple

from pykexec.core.files import FileTooLarge, ReadPolicy, read_regular
from pykexec.errors import PykexecError

EXIT_CANNOT_PARSE = 1  # kexec-tools dies ("Cannot parse <file>") on a bad machine file
EXIT_LOAD_FAILED = 255  # kexec-tools' failed load (kcore, kernel text, no such root)


class MachineError(PykexecError):
    """A fact cannot be read from the machine: one line naming the file and the problem.

    `exit_status` is what kexec-tools exits with for the same fault: 1 for a machine file
    that is missing where required, unreadable, malformed or damaged (its die() on "Cannot
    parse", "Cannot open /proc/iomem"), 255 where its load fails instead (kcore, the kernel
    text mapping; pykexec's --sysroot follows a missing kernel file).
    """

    def __init__(self, message: str, path: Optional[str] = None, line: Optional[int] = None,
                 exit_status: int = EXIT_CANNOT_PARSE):
        super().__init__(message)
        self.path = path
        self.line = line
        self.exit_status = exit_status


# ---------------------------------------------------------------------------------------
# Bounded reads


MAX_MACHINE_FILE = 64 << 20  # far above any /proc or /sys file a loader reads (kallsyms ~15 MiB)


def read_machine_file(path: str, limit: Optional[int]) -> bytes:
    """Bytes of a regular file, at most `limit` (else at most MAX_MACHINE_FILE, or EFBIG).

    core.files' reader with the machine's policy: /proc and /sys files say size 0, so the
    size is not trusted; a FIFO or device planted in a snapshot is refused (OSError).
    """
    if limit is not None:
        return read_regular(path, ReadPolicy(limit, head_only=True, trust_size=False))
    try:
        return read_regular(path, ReadPolicy(MAX_MACHINE_FILE, trust_size=False))
    except FileTooLarge:
        raise OSError(errno_mod.EFBIG, f"larger than {MAX_MACHINE_FILE >> 20} MiB",
                      path) from None


class _Missing:
    """A file that could not be read: keeps the OSError for the message."""

    def __init__(self, error: OSError):
        self.error = error



class MachineReader:
    """The file access of a machine folder under `root`; facts are added by subclasses.

    Attributes are computed on first access and cached; reading the same file again is
    served from a per-machine cache, so the values are a consistent picture of one moment
    per file.
    """

    def __init__(self, root: str):
        object.__setattr__(self, "root", os.path.abspath(os.fspath(root)))
        object.__setattr__(self, "_files", {})
        object.__setattr__(self, "_derived", {})

    def __setattr__(self, name, value):
        raise AttributeError("Machine is read-only")

    @classmethod
    def read(cls, root: str = "/") -> "MachineReader":
        """The machine under `root` ("/" for the live one, or a snapshot folder)."""
        if os.fspath(root) == "":
            raise MachineError("--sysroot: the path is empty (give a machine folder, or / for "
                               "this machine)", "", exit_status=EXIT_LOAD_FAILED)
        if not os.path.isdir(root):
            why = "does not exist" if not os.path.lexists(root) else "is not a directory"
            raise MachineError(f"--sysroot {root}: {why} (a machine folder is expected)",
                               os.fspath(root), exit_status=EXIT_LOAD_FAILED)
        return cls(root)

    def __repr__(self) -> str:
        return f"Machine.read({self.root!r})"

    # -- file access -------------------------------------------------------------------

    def path(self, rel: str) -> str:
        """How a machine file is named in messages: the root prefix plus the real path."""
        return os.path.join(self.root, rel)

    def _read(self, rel: str, limit: Optional[int] = None):
        """Bytes of `rel` (at most `limit`), or a _Missing. Each file is read once."""
        key = (rel, limit)
        cache = self._files
        if key not in cache:
            try:
                cache[key] = read_machine_file(self.path(rel), limit)
            except OSError as e:
                cache[key] = _Missing(e)
        return cache[key]

    def file_bytes(self, rel: str, limit: Optional[int] = None) -> Optional[bytes]:
        """Bytes of `rel`, None when it does not exist, MachineError on other errors."""
        data = self._read(rel, limit)
        if isinstance(data, _Missing):
            if data.error.errno in (errno_mod.ENOENT, errno_mod.ENOTDIR):
                return None
            raise MachineError(f"Cannot read {self.path(rel)}: {data.error.strerror}",
                               self.path(rel))
        return data

    def file_text(self, rel: str) -> Optional[str]:
        data = self.file_bytes(rel)
        return None if data is None else data.decode("utf-8", "replace")

    def required_text(self, rel: str) -> str:
        text = self.file_text(rel)
        if text is None:
            raise MachineError(f"Cannot read {self.path(rel)}: No such file or directory",
                               self.path(rel))
        return text

    def first_line(self, rel: str) -> Optional[str]:
        text = self.file_text(rel)
        return None if text is None else (text.splitlines() or [""])[0]

    def file_value(self, rel: str, parse, what: str):
        """Parse the first line of `rel` with `parse`; None if the file is absent."""
        line = self.first_line(rel)
        if line is None:
            return None
        try:
            return parse(line)
        except ValueError:
            raise MachineError(f"{self.path(rel)}:1: expected {what}, got {line.strip()!r}",
                               self.path(rel), 1) from None

    def exists(self, rel: str) -> bool:
        """`rel` is there to open (a dangling symbolic link is not)."""
        return os.path.exists(self.path(rel))

    def is_dir(self, rel: str) -> bool:
        return os.path.isdir(self.path(rel))

    def list_dir(self, rel: str) -> Tuple[str, ...]:
        try:
            return tuple(n for n in os.listdir(self.path(rel)) if not n.startswith("."))
        except OSError:
            return ()

    def cached(self, key, compute):
        cache = self._derived
        if key not in cache:
            cache[key] = compute()
        return cache[key]


# ---------------------------------------------------------------------------------------
# Number formats of /proc and /sys files

def parse_c_integer(text: str) -> int:
    """strtoull(text, 0): 0x-hex, 0-octal or decimal, surrounding blanks allowed."""
    s = text.strip()
    if re.fullmatch(r"0[xX][0-9A-Fa-f]+", s):
        return int(s, 16)
    if re.fullmatch(r"0[0-7]*", s):
        return int(s, 8)
    if re.fullmatch(r"[1-9][0-9]*", s):
        return int(s)
    raise ValueError(f"not a number: {s!r}")


def parse_hex(text: str) -> int:
    """sscanf %llx: hex digits with an optional 0x prefix."""
    s = text.strip()
    if not re.fullmatch(r"(0[xX])?[0-9A-Fa-f]+", s):
        raise ValueError(f"not a hex number: {s!r}")
    return int(s, 16)



def parse_decimal(text: str) -> int:
    s = text.strip()
    if not s.isdigit():
        raise ValueError(s)
    return int(s)


def parse_flag(text: str) -> bool:
    value = parse_decimal(text)
    if value not in (0, 1):
        raise ValueError(text)
    return bool(value)
