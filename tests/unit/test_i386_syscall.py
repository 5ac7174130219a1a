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
