"""The machine's crash facts under x86's rules (pykexec.arch.x86.crashmem): the memory the
dump describes, the low RAM purgatory backs up, and the CPU notes, for x86_64 (`arch`
"x86_64") and i386 (i386..i686: lowmem split, legacy sys/kernel/crash_notes).

Functions of a `Machine`; the crash ranges are kept in its cache per lowmem limit.
"""

from __future__ import annotations

from typing import Tuple

from pykexec.arch.x86 import crashmem
from pykexec.arch.x86.crashmem import I386_PAGE_OFFSET, BackupArea
from pykexec.core.ranges import MemoryRegion
from pykexec.machine import Machine
from pykexec.machine.cpus import MAX_NOTE_BYTES, CpuNote


def crash_memory_ranges(machine: Machine, arch: str = "x86_64") -> Tuple[MemoryRegion, ...]:
    """Ranges the dump describes and passes on (crashmem.crash_memory_ranges).

    `arch` "i386" (or i486..i686) splits ranges at the 0x38000000 lowmem limit.
    """
    limit = crashmem.lowmem_limit_for(arch)
    return machine.cached(("crash_memory_ranges", limit), lambda: crashmem.crash_memory_ranges(
        ((n.range, n.name) for n in machine.iomem.walk()), machine.crash_regions, limit))


def backup_area(machine: Machine, arch: str = "x86_64") -> BackupArea:
    """The low RAM that purgatory copies away: (start, size); default (0, 0xa0000)."""
    return crashmem.backup_area(crash_memory_ranges(machine, arch))


def cpu_notes(machine: Machine, arch: str = "x86_64") -> Tuple[CpuNote, ...]:
    """The CPU PT_NOTEs kexec-tools would write for `arch`.

    x86_64: `machine.cpus`. i386 with the legacy sys/kernel/crash_notes: every CPU number
    below nr_cpus_conf at `vaddr + cpu * 1024 - 0xc0000000`, 1024 bytes each.
    """
    legacy = machine.legacy_crash_notes if crashmem.lowmem_limit_for(arch) else None
    if legacy is None:
        return machine.cpus
    return tuple(CpuNote(cpu, legacy + cpu * MAX_NOTE_BYTES - I386_PAGE_OFFSET, MAX_NOTE_BYTES)
                 for cpu in range(machine.nr_cpus_conf))
