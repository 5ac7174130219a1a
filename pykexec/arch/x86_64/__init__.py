"""x86_64: image formats, crash rules and purgatory plugged into the load pipeline.

`plan_load(request, machine)` reads the kernel, asks each image format whether it is
its file (the kernel's kexec_file_ops probe/load split), and lets that format build the
plan. Formats are probed in kexec-tools' order, ELF before bzImage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Optional

from pykexec.arch.x86 import cmdline_for
from pykexec.errors import LoadError
from pykexec.machine import Machine
from pykexec.plan import Plan
from pykexec.request import Request

NAME = "x86_64"


@dataclass(frozen=True)
class LoadInputs:
    """Everything a format's loader needs, read once."""

    request: Request
    machine: Machine
    kernel_path: str
    kernel: bytes
    initrd_path: Optional[str]
    initrd: Optional[bytes]
    cmdline: str                       # the user's part: reused and/or appended
    random_bytes: Callable[[int], bytes]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise LoadError(f"{path}: cannot read the {what}: {err.strerror}") from None


def formats():
    from pykexec.arch.x86_64 import bzimage64, elf_x86_64
    return (elf_x86_64, bzimage64)


def plan_load(request: Request, machine: Machine,
              random_bytes: Callable[[int], bytes] = os.urandom) -> Plan:
    kernel = _read(request.kernel, "kernel")
    initrd = _read(request.initrd, "initrd") if request.initrd else None
    inputs = LoadInputs(request, machine, request.kernel, kernel, request.initrd, initrd,
                        cmdline_for(request, machine), random_bytes)
    candidates = formats()
    if request.file_type:
        chosen = [f for f in candidates if f.NAME == request.file_type]
        if not chosen:
            raise LoadError(f"unsupported kernel type {request.file_type} "
                            f"(x86_64 knows: {', '.join(f.NAME for f in candidates)})")
        candidates = chosen
    for fmt in candidates:
        reason = fmt.probe(kernel)
        if reason is None:
            plan = fmt.load(inputs)
            # --entry replaces the entry point just before the syscall, as in kexec-tools.
            return replace(plan, entry=request.entry) if request.entry else plan
    why = "; ".join(f"{f.NAME}: {f.probe(kernel)}" for f in candidates)
    raise LoadError(f"{request.kernel}: not an x86_64 kernel this loader knows ({why})")
