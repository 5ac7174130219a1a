"""The kexec syscalls through ctypes, and what their errors mean.

glibc has no wrappers for kexec_load or kexec_file_load, so they go through syscall(2).
Every errno is turned into one sentence a kdump maintainer can act on.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from dataclasses import dataclass
from typing import Optional, Sequence

from pykexec.plan import Plan

KEXEC_ARCH_DEFAULT = 0
KEXEC_ARCH_386 = 3 << 16
KEXEC_ARCH_X86_64 = 62 << 16
KEXEC_ARCH_MASK = 0xFFFF0000
KEXEC_ON_CRASH = 0x1

KEXEC_FILE_UNLOAD = 0x1
KEXEC_FILE_ON_CRASH = 0x2
KEXEC_FILE_NO_INITRAMFS = 0x4

# (kexec_load, kexec_file_load) per `uname -m` of the running kernel's userspace ABI.
SYSCALL_NUMBERS = {
    "x86_64": (246, 320),
    "i386": (283, None), "i486": (283, None), "i586": (283, None), "i686": (283, None),
    "aarch64": (104, 294),
}


class KexecSegment(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("bufsz", ctypes.c_size_t),
                ("mem", ctypes.c_void_p), ("memsz", ctypes.c_size_t)]


class KexecError(Exception):
    """A syscall failed; `str()` is one line that explains it."""

    def __init__(self, message: str, err: int):
        super().__init__(message)
        self.errno = err


def _proc_flag(sysroot: str, rel: str) -> Optional[str]:
    try:
        with open(os.path.join(sysroot, rel)) as f:
            return f.read().strip()
    except OSError:
        return None


def explain_errno(err: int, call: str, sysroot: str = "/") -> str:
    """One line: what `err` from `call` means on this machine, and what to do."""
    if err == errno.EPERM:
        lockdown = _proc_flag(sysroot, "sys/kernel/security/lockdown") or ""
        if "[integrity]" in lockdown or "[confidentiality]" in lockdown:
            mode = lockdown.split("[", 1)[1].split("]", 1)[0]
            return (f"{call} failed: the kernel is locked down ({mode}); kexec_load is refused, "
                    "use a signed kernel with kexec_file_load (-s)")
        if _proc_flag(sysroot, "proc/sys/kernel/kexec_load_disabled") == "1":
            return (f"{call} failed: kexec is disabled until reboot "
                    "(/proc/sys/kernel/kexec_load_disabled is 1)")
        for limit in ("kexec_load_limit_panic", "kexec_load_limit_reboot"):
            if _proc_flag(sysroot, f"proc/sys/kernel/{limit}") == "0":
                return f"{call} failed: no loads left (/proc/sys/kernel/{limit} is 0)"
        if os.geteuid() != 0:
            return f"{call} failed: Operation not permitted (needs root: CAP_SYS_BOOT)"
        return (f"{call} failed: Operation not permitted (CAP_SYS_BOOT missing, or a security "
                "policy refused it; under Secure Boot use -s)")
    reasons = {
        errno.ENOSYS: "this kernel has no kexec support (CONFIG_KEXEC / CONFIG_KEXEC_FILE off)",
        errno.EBUSY: "another kexec load or unload is in progress",
        errno.EADDRNOTAVAIL: "a segment or the entry lies outside the allowed memory "
                             "(for -p: outside the crashkernel region)",
        errno.EINVAL: "the kernel refused the request (flags, segment overlap or count, or size)",
        errno.ENOMEM: "the kernel could not allocate memory for the image (crash region full?)",
        errno.EKEYREJECTED: "the kernel's signature was rejected (unsigned kernel while "
                            "signature checks are enforced)",
        errno.ENOKEY: "no key to verify the kernel's signature",
        errno.EBADMSG: "the kernel's signature is malformed",
        errno.ENOEXEC: "the kernel does not recognise this image format",
        errno.EFBIG: "the image is too large",
        errno.EACCES: "a security policy (IMA/LSM) refused the image",
    }
    text = reasons.get(err, os.strerror(err))
    return f"{call} failed: {text} ({errno.errorcode.get(err, err)})"


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _numbers():
    machine = platform.machine()
    if machine not in SYSCALL_NUMBERS:
        raise KexecError(f"unsupported machine type {machine}", errno.ENOSYS)
    return SYSCALL_NUMBERS[machine]


def kexec_load(entry: int, segments: Sequence, flags: int) -> None:
    """Call kexec_load; `segments` are (data bytes, mem, memsz) triples in address order."""
    nr_load, _ = _numbers()
    arr = (KexecSegment * max(1, len(segments)))()
    keep = []
    for i, (data, mem, memsz) in enumerate(segments):
        buf = ctypes.create_string_buffer(bytes(data), len(data)) if data else None
        keep.append(buf)
        arr[i] = KexecSegment(ctypes.cast(buf, ctypes.c_void_p) if buf is not None else None,
                              len(data), mem, memsz)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(nr_load), ctypes.c_ulong(entry or 0),
                       ctypes.c_ulong(len(segments)),
                       ctypes.cast(arr, ctypes.c_void_p) if segments else None,
                       ctypes.c_ulong(flags))
    if ret != 0:
        err = ctypes.get_errno()
        raise KexecError(explain_errno(err, "kexec_load"), err)


def load_plan(plan: Plan) -> None:
    """Hand a kexec_load plan to the kernel."""
    if plan.syscall != "kexec_load":
        raise ValueError("load_plan takes a kexec_load plan")
    kexec_load(plan.entry, [(s.data, s.mem, s.memsz) for s in plan.segments], plan.flags)


def unload(flags: int) -> None:
    """kexec_load(0, 0, NULL, flags): drop the (crash) image."""
    kexec_load(0, [], flags)


def arch_flag() -> int:
    """The arch bits kexec-tools sends: from uname, the running kernel's architecture."""
    machine = os.uname().machine
    if machine == "x86_64":
        return KEXEC_ARCH_X86_64
    if machine in ("i386", "i486", "i586", "i686"):
        return KEXEC_ARCH_DEFAULT
    raise KexecError(f"Unsupported machine type: {machine}", errno.ENOSYS)
