"""i386's crash load: the shared x86 steps (pykexec.arch.x86.crashload) with the i386
rules, which live here:

* the ELF core header class: ELF32 when every crash memory range ends at or below
  4 GiB (the last one, in /proc/iomem order, decides, as in kexec-tools), else ELF64;
  `--elf32-core-headers` / `--elf64-core-headers` force it, and ELF32 with memory above
  4 GiB is refused (an ELF32 header cannot hold those addresses);
* EM_386, no kernel-text PT_LOAD, page offset 0xc0000000, ranges split at the
  0x38000000 direct-map limit and highmem without a virtual address;
* every segment and the entry below 4 GiB (purgatory runs with paging off);
* flags: the crash bit with KEXEC_ARCH_DEFAULT, which is what Debian's i386 kexec sends
  on an i686 kernel (the kernel takes DEFAULT as its own arch).
"""

from __future__ import annotations

from typing import Optional

from pykexec.arch.x86.crashfacts import crash_memory_ranges
from pykexec.arch.x86.crashload import X86CrashLoad
from pykexec.arch.x86.crashmem import core_class_for
from pykexec.arch.x86.options import x86_options
from pykexec.arch.x86.purgatory_setup import I386
from pykexec.errors import LoadError
from pykexec.core.plan import Plan
from pykexec.core.ranges import MemType, Range
from pykexec.abi.elf import ELFCLASS32, ELFCLASS64

ARCH = "i386"   # the name pykexec.machine's crash rules take (until they move under arch/)
FOUR_GIB = 1 << 32
PURGATORY_MAX_ADDR = 0x7FFFFFFF  # kexec-tools' bound for a protected-mode bzImage (inclusive)


def core_header_class(machine, forced: Optional[int]) -> int:
    """ELFCLASS32 or ELFCLASS64 for this machine's crash memory (see the module doc).

    Only RAM gets a PT_LOAD, so only RAM above 4 GiB needs ELF64. (kexec-tools looks at
    the last crash range of any type: a firmware "reserved" range above 4 GiB alone makes
    it choose ELF64; pykexec does not, and says so in the plan's warnings.)
    """
    ranges = crash_memory_ranges(machine, ARCH)
    above = [r for r in ranges if r.type is MemType.RAM and r.range.last >= FOUR_GIB]
    if forced == 32 and above:
        raise LoadError(
            f"--elf32-core-headers: RAM {above[0].range} lies above 4 GiB, which an ELF32 core "
            "header cannot describe; use --elf64-core-headers (or leave the choice to pykexec)")
    if forced in (32, 64):
        return ELFCLASS32 if forced == 32 else ELFCLASS64
    return ELFCLASS64 if above else ELFCLASS32


def kexec_tools_class_differs(machine, forced: Optional[int]) -> bool:
    """True when kexec-tools' rule (the last range of any type) would choose otherwise."""
    if forced in (32, 64):
        return False
    ranges = crash_memory_ranges(machine, ARCH)
    return core_class_for(ARCH, ranges, None) != core_header_class(machine, None)


class CrashLoad(X86CrashLoad):
    purgatory_kind = I386
    purgatory_high = PURGATORY_MAX_ADDR + 1

    def __init__(self, inputs, format_name: str):
        super().__init__(inputs, format_name)
        request = inputs.request
        forced = x86_options(request).core_header_class
        self.elfclass = core_header_class(inputs.machine, forced)
        if kexec_tools_class_differs(inputs.machine, forced):
            self.warnings.append(
                "all RAM lies below 4 GiB, so the core header is ELF32; kexec-tools would write "
                "ELF64 here because a non-RAM range above 4 GiB comes last in /proc/iomem")

    def crash_window(self) -> Range:
        window = super().crash_window()
        if window.start >= FOUR_GIB:
            raise LoadError(f"the crash region {window} lies above 4 GiB, where a 32-bit kernel "
                            "cannot be entered (reserve it with crashkernel=Y@X below 4 GiB)")
        return Range(window.start, min(window.end, FOUR_GIB))

    def check_segments(self, segments) -> None:
        high = [s for s in segments if s.mem + s.memsz > FOUR_GIB]
        if high:
            raise LoadError(f"the {high[0].kind} segment at {high[0].mem:#x} ends above 4 GiB")

    def plan(self, segments, entry: int, symbols=None, **notes) -> Plan:
        return super().plan(segments, entry, symbols,
                            core_header_class=32 if self.elfclass == ELFCLASS32 else 64, **notes)
