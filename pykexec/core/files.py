"""The one reader of regular files: machine files under a root, the user's kernel and
initrd, plan folders, files given to `inspect`.

Every read opens without blocking (a FIFO with no writer would otherwise hang the open)
and without becoming a controlling terminal, checks with fstat that the file is regular
before a byte is read (a FIFO, device or socket planted where a file is expected is
refused, not read forever), and reads in bounded steps up to a limit. What differs between
callers is a `ReadPolicy`; what a refusal says is each caller's (it catches the `OSError`s
below and words them for its own users and exit statuses; the two raised here are also
`PykexecError`s, but no caller lets them through unworded).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import List, Optional, Tuple

from pykexec.errors import PykexecError

STEP = 1 << 16   # /proc/sys files answer ENOMEM to a read of 4 MiB or more (the kernel
                 # allocates a buffer of the size asked), so machine files go in small steps


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a refusal's message."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


class NotRegularFile(PykexecError, OSError):
    """The path opened but is no regular file: EISDIR for a directory, else EINVAL.
    `kind` says what it is (`file_kind`)."""

    def __init__(self, path: str, mode: int):
        code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
        super().__init__(code, os.strerror(code) if code == errno.EISDIR
                         else "not a regular file", path)
        self.kind = file_kind(mode)


class FileTooLarge(PykexecError, OSError):
    """The file holds more than the policy's limit (EFBIG). `size` is its length when
    fstat told it before reading, else None (it was found longer while reading)."""

    def __init__(self, path: str, size: Optional[int], limit: int):
        super().__init__(errno.EFBIG, f"more than {limit} bytes", path)
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class ReadPolicy:
    """How one kind of file is read.

    `limit`: bytes at most. `head_only`: the first `limit` bytes are all that is wanted;
    otherwise a longer file is refused (FileTooLarge). `trust_size`: fstat's size is the
    file's length, so a file over the limit is refused before it is read and no more than
    that size is read (False for /proc and /sys, whose files say 0). `step`: bytes per
    read(2). `follow_symlinks`: False refuses a symbolic link as the last component (ELOOP).
    """

    limit: int
    head_only: bool = False
    trust_size: bool = True
    step: int = STEP
    follow_symlinks: bool = True


def open_regular(path: str, follow_symlinks: bool = True) -> Tuple[int, os.stat_result]:
    """(descriptor, fstat) of the regular file `path`; OSError, or NotRegularFile (the
    descriptor closed) for anything else. The descriptor is non-blocking."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    fd = os.open(path, flags if follow_symlinks else flags | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path, info.st_mode)
        return fd, info
    except BaseException:
        os.close(fd)
        raise


def read_upto(fd: int, want: int, step: int = STEP, offset: Optional[int] = None) -> bytes:
    """Up to `want` bytes from `fd` in reads of at most `step`, fewer only at end of file.
    With `offset`, positional reads from there (the descriptor's position is left alone)."""
    chunks: List[bytes] = []
    got = 0
    while got < want:
        n = min(want - got, step)
        chunk = os.read(fd, n) if offset is None else os.pread(fd, n, offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_regular(path: str, policy: ReadPolicy) -> bytes:
    """The bytes of the regular file `path` as `policy` says (see the module doc)."""
    fd, info = open_regular(path, policy.follow_symlinks)
    try:
        want = policy.limit if policy.head_only else policy.limit + 1
        if policy.trust_size:
            if not policy.head_only and info.st_size > policy.limit:
                raise FileTooLarge(path, info.st_size, policy.limit)
            want = min(want, info.st_size)
        data = read_upto(fd, want, policy.step)
    finally:
        os.close(fd)
    if len(data) > policy.limit:
        raise FileTooLarge(path, None, policy.limit)
    return data
