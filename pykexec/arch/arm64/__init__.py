"""arm64 (AArch64, little endian): image formats, crash rules, device tree and purgatory
plugged into the load pipeline as one `ARCH` (pykexec.arch.interfaces.Arch).

Formats in probe order, kexec-tools': an ELF vmlinux (loaded as the Image it holds), the
Image (also PE-signed, and Image.gz, gunzipped by the input reader), EFI zboot ("vmlinuz"). Only kexec_load lays a load out here; a running
arm64 kernel's kexec_file_load takes an Image only (and Debian 12's has no KEXEC_FILE).
"""

from __future__ import annotations

import importlib
import os
from typing import Callable, Optional

from pykexec.abi.machines import EM_AARCH64
from pykexec.arch.arm64.options import NAMES as ARM64_OPTION_NAMES, TABLE

NAME = "arm64"
KEXEC_ARCH_AARCH64 = EM_AARCH64 << 16
FORMAT_MODULES = ("pykexec.arch.arm64.vmlinuxload", "pykexec.arch.arm64.imageload",
                  "pykexec.arch.arm64.zbootload")


def with_entry_override(plan, request, machine):
    """--entry replaces the plan's entry (as in kexec-tools); a crash load's must lie in
    the crash region, or the kernel refuses the load (EADDRNOTAVAIL)."""
    entry = request.entry
    if not entry:
        return plan
    from dataclasses import replace

    from pykexec.errors import LoadError
    region = machine.crash_region if request.crash else None
    if region is not None and not region.start <= entry < region.end:
        raise LoadError(f"--entry={entry:#x} is outside the crash region {region}: the kernel "
                        "refuses a capture kernel's entry there (EADDRNOTAVAIL)")
    return replace(plan, entry=entry)


class Arm64Arch:
    name = NAME
    machine_names = ("aarch64",)
    kexec_arch = KEXEC_ARCH_AARCH64
    elf_machine = EM_AARCH64
    syscall_numbers = (104, 294)          # asm-generic: kexec_load, kexec_file_load
    compat_syscall_numbers = None         # no 32-bit kexec_load on arm64
    options = TABLE

    def __repr__(self) -> str:
        return f"<Arch {self.name}>"

    def formats(self):
        return tuple(importlib.import_module(m) for m in FORMAT_MODULES)

    def plan_load(self, request, machine, random_bytes: Callable[[int], bytes] = os.urandom):
        from pykexec.arch.arm64.load import read_inputs
        from pykexec.errors import LoadError
        inputs = read_inputs(request, machine, self, random_bytes)
        candidates = self.formats()
        if request.file_type:
            candidates = tuple(f for f in candidates if f.NAME == request.file_type)
            if not candidates:
                raise LoadError(f"unsupported kernel type {request.file_type} (arm64 knows: "
                                f"{', '.join(f.NAME for f in self.formats())})")
        for fmt in candidates:
            if fmt.probe(inputs.kernel) is None:
                plan = fmt.load(inputs)
                break
        else:
            why = "; ".join(f"{f.NAME}: {f.probe(inputs.kernel)}" for f in candidates)
            raise LoadError(f"{request.kernel}: not an arm64 kernel this loader knows ({why})")
        return with_entry_override(plan, request, machine)

    def crash_elf_info(self, machine, request):
        from pykexec.abi.elf import ELFCLASS64
        from pykexec.arch.arm64.crashmem import crash_elf_info
        return crash_elf_info(machine, ELFCLASS64, self.elf_machine)

    def user_cmdline(self, request, machine) -> str:
        from pykexec.core.cmdline import user_cmdline
        return user_cmdline(request, machine)

    def option_refusal(self, request) -> Optional[str]:
        from pykexec.request import ForeignOptionError
        for name, _ in request.arch_options:
            if name not in ARM64_OPTION_NAMES:
                raise ForeignOptionError(name, NAME)
        return None

    def file_load_refusal(self, kernel: bytes) -> Optional[str]:
        from pykexec.arch.arm64.imageload import probe
        why = probe(kernel)
        if why is None:
            return None
        return f"the kernel loads only an arm64 Image ({why})"

    # what views and vmcore ask of arm64 (pykexec.arch.interfaces)
    def plan_decoder(self):
        from pykexec.arch.arm64 import planfacts
        return planfacts

    def image_explainer(self):
        from pykexec.arch.arm64 import explain
        return explain

    def relocations(self):
        from pykexec.arch.arm64.relocations import ARM64_RELOCATIONS
        return ARM64_RELOCATIONS

    def dump_reader(self):
        from pykexec.arch.arm64.vmcore import Arm64DumpReader
        return Arm64DumpReader


ARCH = Arm64Arch()
