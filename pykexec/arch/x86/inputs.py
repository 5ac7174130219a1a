"""What an x86 format loader gets: the request, the machine, and the files read once.

Shared by the x86 architectures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

from pykexec.errors import LoadError
from pykexec.core.inputfiles import input_limit, read_input, read_kernel
from pykexec.core.uki import INITRD_SECTION, LINUX_SECTION, Uki, parse_uki, section_label


@dataclass(frozen=True)
class LoadInputs:
    """Everything a format's loader needs, read once."""

    request: object
    machine: object
    kernel_path: str
    kernel: bytes
    initrd_path: Optional[str]
    initrd: Optional[bytes]
    cmdline: str                       # the user's part: reused and/or appended
    arch: object                       # the Arch whose formats and load steps run
    random_bytes: Callable[[int], bytes] = os.urandom
    uki: Optional[Uki] = None          # the unified kernel image the kernel came from


def read_inputs(request, machine, arch, cmdline: str,
                random_bytes: Callable[[int], bytes] = os.urandom) -> LoadInputs:
    """The kernel (decompressed if it is a gzip or xz file, as kexec_load's reader does in
    kexec-tools) and the initrd, through the one input reader (pykexec.core.inputfiles)."""
    limit, limit_what = input_limit(request, machine)
    kernel = read_kernel(request.kernel, limit, limit_what)
    initrd, initrd_path = None, request.initrd
    if request.initrd is not None:   # `--initrd=` names a file too: '' (refused, as kexec)
        initrd = read_input(request.initrd, "initrd", limit, limit_what)
    kernel_path = request.kernel
    uki = parse_uki(kernel, request.kernel)
    if uki is not None:              # its sections are the defaults the user did not override
        kernel, kernel_path = uki.linux, section_label(request.kernel, LINUX_SECTION)
        embedded_cmdline, embedded_initrd = uki.cmdline_for(request), uki.initrd_for(request)
        if embedded_cmdline is not None:
            cmdline = embedded_cmdline
        if embedded_initrd is not None:
            initrd, initrd_path = embedded_initrd, section_label(request.kernel, INITRD_SECTION)
    return LoadInputs(request, machine, kernel_path, kernel, initrd_path, initrd,
                      cmdline, arch, random_bytes, uki)


def choose_format(inputs: LoadInputs, candidates, arch: str):
    """The first format whose probe accepts the kernel (or the one -t names)."""
    request, kernel = inputs.request, inputs.kernel
    if request.file_type:
        chosen = [f for f in candidates if f.NAME == request.file_type]
        if not chosen:
            raise LoadError(f"unsupported kernel type {request.file_type} "
                            f"({arch} knows: {', '.join(f.NAME for f in candidates)})")
        candidates = chosen
    for fmt in candidates:
        if fmt.probe(kernel) is None:
            return fmt
    why = "; ".join(f"{f.NAME}: {f.probe(kernel)}" for f in candidates)
    raise LoadError(f"{inputs.kernel_path}: not an {arch} kernel this loader knows ({why})")
