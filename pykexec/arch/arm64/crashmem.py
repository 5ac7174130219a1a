"""arm64 crash-memory rules: what the dump describes, what the capture kernel may use.

As kexec-tools' arm64 crash path has it (read for facts, crashdump-arm64.c): every
/proc/iomem line whose name starts with "System RAM" is dumped, minus every "Crash kernel"
region (the capture kernel's own memory), in address order; the capture kernel gets the
crash regions as `linux,usable-memory-range` (low region last) and the core header's
address in `linux,elfcorehdr`, both in the device tree, not on the command line. There is
no backup of low memory: arm64 kernels do not need the first 640 KiB.
"""

from __future__ import annotations

from typing import List, Tuple

from pykexec.arch.arm64.kernelmap import kernel_map
from pykexec.arch.interfaces import CrashElfInfo
from pykexec.core.ranges import MemoryRegion, MemType, Range
from pykexec.machine import Machine

SYSTEM_RAM = "System RAM"


def system_ram(machine: Machine) -> Tuple[Range, ...]:
    """Every iomem range named "System RAM..." (any depth), in address order."""
    return tuple(sorted((n.range for n in machine.iomem.walk()
                         if n.name.startswith(SYSTEM_RAM) and not n.range.empty),
                        key=lambda r: r.start))


def subtract(ranges, holes) -> Tuple[Range, ...]:
    """`ranges` without `holes`, split where a hole falls inside one, in order."""
    out: List[Range] = list(ranges)
    for hole in holes:
        cut: List[Range] = []
        for r in out:
            if hole.end <= r.start or hole.start >= r.end:
                cut.append(r)
                continue
            if r.start < hole.start:
                cut.append(Range(r.start, hole.start))
            if hole.end < r.end:
                cut.append(Range(hole.end, r.end))
        out = cut
    return tuple(sorted(out, key=lambda r: r.start))


def crash_memory_ranges(machine: Machine) -> Tuple[MemoryRegion, ...]:
    """The RAM the dump describes: System RAM minus the crash regions."""
    return machine.cached("arm64 crash ranges", lambda: tuple(
        MemoryRegion(r, MemType.RAM) for r in subtract(system_ram(machine),
                                                       machine.crash_regions)))


def usable_memory(machine: Machine) -> Tuple[Tuple[int, int], ...]:
    """`linux,usable-memory-range` as (address, size): the crash regions, the highest
    first (the capture kernel takes the last one for its low memory)."""
    return tuple((r.start, r.size) for r in reversed(machine.crash_regions))


def crash_elf_info(machine: Machine, elf_class: int, elf_machine: int) -> CrashElfInfo:
    """The core header's facts: linear-map vaddrs and the kernel image from VMCOREINFO."""
    kmap = kernel_map(machine)
    vmcoreinfo = machine.vmcoreinfo
    return CrashElfInfo(
        elf_class=elf_class, elf_machine=elf_machine, page_offset=kmap.linear_delta,
        kernel_text=kmap.text, lowmem_limit=None, nr_cpus=machine.nr_cpus_conf,
        cpu_notes=tuple((n.cpu, n.paddr, n.size) for n in machine.cpus),
        vmcoreinfo=(vmcoreinfo.paddr, vmcoreinfo.size) if vmcoreinfo else None,
        crash_ranges=crash_memory_ranges(machine), backup=None)
