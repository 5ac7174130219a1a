"""The i386 syscall: kexec_load 283 with KEXEC_ARCH_DEFAULT on an i686 kernel; from a
32-bit process on an x86_64 kernel, 283 through the compat table with KEXEC_ARCH_X86_64."""

from __future__ import annotations

import os

import pytest

from pykexec.arch.x86.abi import KEXEC_ARCH_X86_64
from pykexec.host import syscall
def test_native_i686(monkeypatch):
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "g", "6.1", "#1", "i686")))
    assert syscall.syscall_numbers() == (283, None)
    assert syscall.arch_flag() == syscall.KEXEC_ARCH_DEFAULT == 0


def test_32bit_process_on_x86_64(monkeypatch):
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6.1", "#1", "x86_64")))
    monkeypatch.setattr(syscall, "process_is_32bit", lambda: True)
    assert syscall.syscall_numbers() == (283, None)      # compat table, no kexec_file_load
    assert syscall.arch_flag() == KEXEC_ARCH_X86_64  # compat refuses DEFAULT
    with pytest.raises(syscall.KexecError, match="above 4 GiB"):
        syscall.kexec_load(0x1000, [(b"x", 0x1_0000_0000, 0x1000)], 0x3E0001)


def test_64bit_process_on_x86_64(monkeypatch):
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6.1", "#1", "x86_64")))
    monkeypatch.setattr(syscall, "process_is_32bit", lambda: False)
    assert syscall.syscall_numbers() == (246, 320)


def test_kexec_load_passes_each_segments_bytes_and_sizes(monkeypatch):
    """The segment array the kernel reads: buf holds exactly the segment's bytes (NULs
    included: a buffer, not a C string), bufsz/mem/memsz as given, an empty one as NULL."""
    import ctypes
    seen = {}

    class FakeLibc:
        class syscall:   # noqa: N801 - stands in for libc.syscall (restype set by the caller)
            restype = None

            def __new__(cls, nr, entry, count, array, flags):
                arr = ctypes.cast(array, ctypes.POINTER(syscall.KexecSegment))
                seen["segments"] = [(ctypes.string_at(s.buf, s.bufsz) if s.buf else None,
                                     s.bufsz, s.mem, s.memsz)
                                    for s in (arr[i] for i in range(count.value))]
                seen["entry"] = entry.value
                return 0

    monkeypatch.setattr(syscall, "_libc", FakeLibc)
    monkeypatch.setattr(syscall, "process_is_32bit", lambda: False)
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6.1", "#1", "x86_64")))
    big = bytes(range(256)) * 4096 + b"\0tail"
    syscall.kexec_load(0x2000, [(big, 0x100000, 0x200000), (b"a\0b", 0x300000, 0x1000),
                                (b"", 0x400000, 0x1000)], 0x3E0001)
    assert seen["entry"] == 0x2000
    assert seen["segments"] == [(big, len(big), 0x100000, 0x200000),
                                (b"a\0b", 3, 0x300000, 0x1000), (None, 0, 0x400000, 0x1000)]
