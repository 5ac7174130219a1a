"""The crash-specific part of an x86 load (x86_64 and i386 alike).

Before the capture kernel's own segments, a crash load places two buffers at the top of
the crash region: the backup copy of low RAM (purgatory fills it at crash time, because
the capture kernel will reuse that memory) and the ELF core header that tells the capture
kernel where the old kernel's memory is. Then it works out the memory map the capture
kernel may use (the crash region minus those two, low RAM, and the firmware's ACPI and
reserved ranges) and the command-line parameters that point at the header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from pykexec.arch.interfaces import CrashElfInfo
from pykexec.arch.x86 import crashmem
from pykexec.core.cmdline import with_crash_parameters
from pykexec.core.elfcore import ElfCoreHeader, core_header_for
from pykexec.errors import LoadError
from pykexec.core.layout import Layout
from pykexec.machine import Machine
from pykexec.core.ranges import Range

ELFCOREHDR_ALIGN = 1024  # elfcorehdr= is given in KiB


@dataclass(frozen=True)
class CrashSetup:
    backup_src: crashmem.BackupArea
    backup_start: Optional[int]
    elfcorehdr_addr: int
    core_header: ElfCoreHeader
    capture_map: crashmem.CaptureMemoryMap
    cmdline: str

    @property
    def e820(self) -> Tuple[Tuple[int, int, int], ...]:
        return tuple(tuple(e) for e in self.capture_map.entries)


def crash_window(machine: Machine, mem_min: int = 0, mem_max: Optional[int] = None) -> Range:
    """The highest crash region (the only legal destination), clamped to --mem-min/max."""
    region = machine.crash_region
    if region is None:
        raise LoadError(
            f"{machine.path('proc/iomem')}: no 'Crash kernel' region: memory for a crash "
            "kernel is not reserved (boot with crashkernel=Y or crashkernel=Y@X)")
    start = max(region.start, mem_min)
    end = region.end if mem_max is None else min(region.end, mem_max + 1)
    if start >= end:
        raise LoadError(f"--mem-min/--mem-max leave nothing of the crash region {region}")
    return Range(start, end)


def place_crash_segments(layout: Layout, machine: Machine, info: CrashElfInfo,
                         user_cmdline: str, acpi_rsdp: Optional[int],
                         hotplug: bool = False) -> CrashSetup:
    """Place the backup and elfcorehdr segments top-down and derive the capture memory map;
    `info` is the architecture's facts for the core header (Arch.crash_elf_info).

    With `hotplug` the elfcorehdr's memsz is the kernel's crash_elfcorehdr_size: the most
    the kernel will write there when it rebuilds the header after a CPU or memory change."""
    hotplug_size = None
    if hotplug:
        hotplug_size = machine.crash_elfcorehdr_size
        if not hotplug_size:
            raise LoadError("/sys/kernel/crash_elfcorehdr_size does not "
                            "exist: --hotplug needs a kernel with CONFIG_CRASH_HOTPLUG")
    backup_src = info.backup
    backup_size = crashmem.backup_segment_size(backup_src)
    backup_start = layout.add(bytes(backup_size), "backup",
                              f"zeros; purgatory copies {backup_src.range} here at crash time",
                              align=1024)
    header = core_header_for(info, backup_start)
    memsz = crashmem.elfcorehdr_memsz(header.size, hotplug_size)
    where = f"ELF{32 if info.elf_class == 1 else 64} core header: " + \
        f"{sum(1 for p in header.phdrs if p.p_type == 4)} PT_NOTE, " + \
        f"{sum(1 for p in header.phdrs if p.p_type == 1)} PT_LOAD"
    elfcorehdr = layout.add(header.data, "elfcorehdr", where, memsz=memsz, align=ELFCOREHDR_ALIGN)
    capture = crashmem.capture_memory_map(backup_src, machine.crash_regions, info.crash_ranges,
                                          backup_start, Range.from_size(elfcorehdr, memsz))
    cmdline = with_crash_parameters(user_cmdline, elfcorehdr, acpi_rsdp)
    return CrashSetup(backup_src, backup_start, elfcorehdr, header, capture, cmdline)
