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

from pykexec.core.cmdline import as_bytes, from_bytes, printable
from pykexec.errors import LoadError
from pykexec.core.inputfiles import (compression_of, decompress_bounded, input_limit,
                                     open_input, read_fd, read_input, read_kernel)
from pykexec.core.plan import Plan, Segment
from pykexec.core.uki import HEAD_SIZE, INITRD_SECTION, is_uki_head, parse_uki, section_label
from pykexec.host.syscall import KEXEC_FILE_NO_INITRAMFS, KEXEC_FILE_ON_CRASH, KEXEC_FILE_UNLOAD

NO_LIMIT = (1 << 62, "memory")


@dataclass(frozen=True)
class FileLoad:
    kernel_path: str
    initrd_path: Optional[str]
    cmdline: bytes            # with the terminating NUL
    flags: int
    limit: Tuple[int, str] = NO_LIMIT   # bytes an input may have, and what bounds it
    machine_name: str = ""              # the planned machine's `uname -m` ("": this one's)
    # from a unified kernel image: its .linux (passed instead of the file) and the .initrd
    # the load takes (None: the initrd_path, if any)
    uki_kernel: Optional[bytes] = None
    uki_initrd: Optional[bytes] = None

    @property
    def arch_name(self) -> str:
        return self.machine_name or os.uname().machine

    @property
    def crash(self) -> bool:
        return bool(self.flags & KEXEC_FILE_ON_CRASH)

    def describe(self) -> str:
        text = printable(from_bytes(self.cmdline[:-1]))
        return (f"kexec_file_load(kernel={self.kernel_path}, initrd={self.initrd_path or '-'}, "
                f"cmdline={text!r} ({len(self.cmdline)} bytes with the NUL), "
                f"flags={self.flags:#x})")

    def kernel_refusal(self) -> Optional[str]:
        """Why the running kernel's kexec_file_load would refuse this kernel file (ENOEXEC),
        or None: its architecture says which formats it takes (None also when pykexec does
        not know the architecture: the kernel will say)."""
        from pykexec.arch import find_machine
        arch = find_machine(self.arch_name)
        if arch is None:
            return None
        kernel = self.uki_kernel
        if kernel is None:
            kernel = read_kernel(self.kernel_path, *self.limit)
        why = arch.file_load_refusal(kernel)
        if why is None:
            return None
        return f"{self.kernel_path}: kexec_file_load would refuse it with ENOEXEC: {why}"

    @contextlib.contextmanager
    def open(self) -> Iterator[Tuple[int, int]]:
        """(kernel_fd, initrd_fd) for the call; initrd_fd is -1 without an initrd."""
        fds = []
        try:
            if self.uki_kernel is not None:
                kernel_fd = _memfd("kernel", self.uki_kernel)
            else:
                kernel_fd = open_input(self.kernel_path, "kernel", open_status=255)
                fds.append(kernel_fd)
                kernel_fd = _decompressed(kernel_fd, self.kernel_path, self.limit)
            fds.append(kernel_fd)
            initrd_fd = -1
            if self.uki_initrd is not None:
                initrd_fd = _memfd("initrd", self.uki_initrd)
                fds.append(initrd_fd)
            elif self.initrd_path is not None:
                initrd_fd = open_input(self.initrd_path, "initrd", open_status=255)
                fds.append(initrd_fd)
            yield kernel_fd, initrd_fd
        finally:
            for fd in set(fds):
                os.close(fd)

    def plan(self) -> Plan:
        """The call as a plan (no addresses: the kernel chooses them), for --dry-run/--save-plan."""
        segs = []
        for path, what, given in ((self.kernel_path, "kernel", self.uki_kernel),
                                  (self.initrd_path, "initrd", self.uki_initrd)):
            if path is None:
                continue
            if given is not None:
                data = given
            else:
                fd = open_input(path, what, open_status=255)
                try:
                    data = read_fd(fd, path, what, *self.limit)
                finally:
                    os.close(fd)
            segs.append(Segment(mem=None, memsz=len(data), data=data, kind=what, source=path))
        return Plan(arch=self.arch_name, syscall="kexec_file_load", flags=self.flags,
                    entry=None, cmdline=from_bytes(self.cmdline[:-1]),
                    segments=segs, notes={"cmdline_len": len(self.cmdline)})


def _decompressed(fd: int, path: str, limit: Tuple[int, str]) -> int:
    """`fd`, or a memfd with its decompressed bytes for a gzip or xz kernel (as kexec-tools
    passes a compressed kernel to kexec_file_load), bounded by `limit`."""
    kind = compression_of(os.pread(fd, 6, 0))
    if kind is None:
        return fd
    data = decompress_bounded(read_fd(fd, path, "kernel", *limit), kind, path, "kernel", *limit)
    return _memfd("kernel", data)


def _memfd(name: str, data: bytes) -> int:
    """A memory file holding `data`, at offset 0 (the kernel reads from the start)."""
    out = os.memfd_create(name, os.MFD_CLOEXEC | getattr(os, "MFD_ALLOW_SEALING", 2))
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
    os.lseek(out, 0, os.SEEK_SET)
    return out


def file_load(request, user_cmdline: str, machine=None) -> FileLoad:
    """The kexec_file_load call for a load request; `user_cmdline` from --reuse-cmdline/--append.

    The files are checked now through the one input reader (regular, non-empty files), so
    a FIFO or a device never reaches the open that the call needs."""
    if request.kernel is None:
        raise LoadError("No kernel specified")
    flags = request.kexec_file_flags & ~KEXEC_FILE_UNLOAD
    if request.initrd is None:
        flags |= KEXEC_FILE_NO_INITRAMFS
    for path, what in ((request.kernel, "kernel"), (request.initrd, "initrd")):
        if path is not None:
            os.close(open_input(path, what, open_status=255))
    limit, machine_name = NO_LIMIT, ""
    if machine is not None:
        limit = input_limit(request, machine)
        machine_name = machine.machine_arch or ""
    uki_kernel = uki_initrd = None
    initrd_path = request.initrd
    uki = _uki_of(request.kernel, limit)
    if uki is not None:
        uki_kernel = uki.linux
        embedded_cmdline, embedded_initrd = uki.cmdline_for(request), uki.initrd_for(request)
        if embedded_cmdline is not None:
            user_cmdline = embedded_cmdline
        if embedded_initrd is not None:
            uki_initrd, initrd_path = embedded_initrd, section_label(request.kernel, INITRD_SECTION)
            flags &= ~KEXEC_FILE_NO_INITRAMFS
    return FileLoad(request.kernel, initrd_path, as_bytes(user_cmdline) + b"\0", flags, limit,
                    machine_name, uki_kernel, uki_initrd)


def _uki_of(path: str, limit: Tuple[int, str]):
    """The unified kernel image at `path`, or None: kexec_file_load takes no UKI itself, so
    its sections are unwrapped here (as kexec-tools 2.0.30 does)."""
    fd = open_input(path, "kernel", open_status=255)
    try:
        if not is_uki_head(os.pread(fd, HEAD_SIZE, 0)):
            return None
    finally:
        os.close(fd)
    return parse_uki(read_input(path, "kernel", *limit), path)
