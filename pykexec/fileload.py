"""kexec_file_load's arguments: the kernel and initrd as open files, the command line, flags.

With kexec_file_load the running kernel reads, checks (signature) and places the image
itself, so a loader only opens the files. As kexec-tools does, a compressed kernel file
(gzip or xz, e.g. a vmlinuz.gz) is decompressed into a memfd first, the command line is
passed with its NUL (an empty line is one NUL byte), and a load without an initrd says so
with KEXEC_FILE_NO_INITRAMFS.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

from pykexec.errors import LoadError
from pykexec.inputfiles import read_file
from pykexec.plan import Plan, Segment
from pykexec.syscall import KEXEC_FILE_NO_INITRAMFS, KEXEC_FILE_ON_CRASH, KEXEC_FILE_UNLOAD

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class FileLoad:
    kernel_path: str
    initrd_path: Optional[str]
    cmdline: bytes            # with the terminating NUL
    flags: int

    @property
    def crash(self) -> bool:
        return bool(self.flags & KEXEC_FILE_ON_CRASH)

    def describe(self) -> str:
        text = self.cmdline[:-1].decode(errors="replace")
        return (f"kexec_file_load(kernel={self.kernel_path}, initrd={self.initrd_path or '-'}, "
                f"cmdline={text!r} ({len(self.cmdline)} bytes with the NUL), "
                f"flags={self.flags:#x})")

    @contextlib.contextmanager
    def open(self) -> Iterator[Tuple[int, int]]:
        """(kernel_fd, initrd_fd) for the call; initrd_fd is -1 without an initrd."""
        fds = []
        try:
            kernel_fd = _open(self.kernel_path, "kernel")
            fds.append(kernel_fd)
            kernel_fd = _decompressed(kernel_fd)
            fds.append(kernel_fd)
            initrd_fd = -1
            if self.initrd_path:
                initrd_fd = _open(self.initrd_path, "initrd")
                fds.append(initrd_fd)
            yield kernel_fd, initrd_fd
        finally:
            for fd in set(fds):
                os.close(fd)

    def plan(self) -> Plan:
        """The call as a plan (no addresses: the kernel chooses them), for --dry-run/--save-plan."""
        segs = [Segment(mem=None, memsz=os.path.getsize(self.kernel_path),
                        data=read_file(self.kernel_path, "kernel"), kind="kernel",
                        source=self.kernel_path)]
        if self.initrd_path:
            segs.append(Segment(mem=None, memsz=os.path.getsize(self.initrd_path),
                                data=read_file(self.initrd_path, "initrd"), kind="initrd",
                                source=self.initrd_path))
        return Plan(arch=os.uname().machine, syscall="kexec_file_load", flags=self.flags,
                    entry=None, cmdline=self.cmdline[:-1].decode(errors="replace"),
                    segments=segs, notes={"cmdline_len": len(self.cmdline)})


def _open(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise LoadError(f"{path}: cannot open the {what}: {err.strerror}") from None


def _decompressed(fd: int) -> int:
    head = os.pread(fd, 6, 0)
    if head[:2] == GZIP_MAGIC:
        import gzip
        opener = gzip.open
    elif head == XZ_MAGIC:
        import lzma
        opener = lzma.open
    else:
        return fd
    with opener(os.fdopen(os.dup(fd), "rb")) as src:
        data = src.read()
    out = os.memfd_create("kernel", os.MFD_CLOEXEC | getattr(os, "MFD_ALLOW_SEALING", 2))
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
    return out


def file_load(request, user_cmdline: str) -> FileLoad:
    """The kexec_file_load call for a load request; `user_cmdline` from --reuse-cmdline/--append."""
    if request.kernel is None:
        raise LoadError("No kernel specified")
    flags = request.kexec_file_flags & ~KEXEC_FILE_UNLOAD
    if not request.initrd:
        flags |= KEXEC_FILE_NO_INITRAMFS
    for path, what in ((request.kernel, "kernel"), (request.initrd, "initrd")):
        if path and not os.access(path, os.R_OK):
            _open(path, what)   # raises the one-line reason
    return FileLoad(request.kernel, request.initrd, user_cmdline.encode() + b"\0", flags)
