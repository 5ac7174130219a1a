"""x86_64's crash load: the shared x86 steps (pykexec.arch.x86.crashload) with an ELF64
core header that maps the kernel text, the 64-bit purgatory, and the x86_64 arch flag."""

from __future__ import annotations

from pykexec.arch.x86.crashload import X86CrashLoad
from pykexec.arch.x86.purgatory_setup import X86_64, place_purgatory
from pykexec.core.plan import Plan
from pykexec.abi.elf import ELFCLASS64, EM_X86_64
from pykexec.arch.x86.abi import KEXEC_ARCH_X86_64

ELF32_ON_X86_64 = ("--elf32-core-headers: x86_64 kernel addresses do not fit ELF32, and "
                   "crash/gdb/makedumpfile expect ELF64 here; writing ELF64 core headers")


class CrashLoad(X86CrashLoad):
    arch = "x86_64"
    purgatory_kind = X86_64
    kexec_arch = KEXEC_ARCH_X86_64

    def __init__(self, inputs, format_name: str):
        super().__init__(inputs, format_name)
        if inputs.request.core_header_class == 32:
            self.warnings.append(ELF32_ON_X86_64)

    def place_crash_segments_and_purgatory(self) -> str:
        """Backup, elfcorehdr and purgatory, top-down; returns the capture command line."""
        kt = self.inputs.machine.kernel_text
        cmdline = self.place_crash(ELFCLASS64, EM_X86_64, (kt.paddr, kt.vaddr, kt.size))
        self.purgatory = place_purgatory(self.layout, X86_64)
        return cmdline

    # The step's name shared with NormalLoad (pykexec.arch.x86_64.normalload).
    place_leading_segments = place_crash_segments_and_purgatory

    def finish(self, rip: int, boot_params_addr: int, cmdline_addr: int, **notes) -> Plan:
        segments, symbols = self.finish_segments(rip, boot_params_addr, cmdline_addr)
        return self.plan(segments, self.purgatory.entry, symbols, **notes)
