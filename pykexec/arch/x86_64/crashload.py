"""x86_64's crash load: the shared x86 steps (pykexec.arch.x86.crashload) with the 64-bit
purgatory anywhere in the crash region; the core header's facts (ELF64 with the kernel
text) come from pykexec.arch.x86_64.ARCH."""

from __future__ import annotations

from pykexec.arch.x86.crashload import X86CrashLoad
from pykexec.arch.x86.options import x86_options
from pykexec.arch.x86.purgatory_setup import X86_64

ELF32_ON_X86_64 = ("--elf32-core-headers: x86_64 kernel addresses do not fit ELF32, and "
                   "crash/gdb/makedumpfile expect ELF64 here; writing ELF64 core headers")


class CrashLoad(X86CrashLoad):
    purgatory_kind = X86_64

    def __init__(self, inputs, format_name: str):
        super().__init__(inputs, format_name)
        if x86_options(inputs.request).core_header_class == 32:
            self.warnings.append(ELF32_ON_X86_64)
