"""The placement memory map: sys/firmware/memmap (else /proc/iomem), with kexec-tools'
fix-ups and the real-mode IVT kept out."""

from __future__ import annotations

from functools import cached_property
from typing import Tuple

from pykexec.core.ranges import MemoryRegion, MemType, Range
from pykexec.machine.iomem import Iomem
from pykexec.machine.reader import MachineError, parse_c_integer

REALMODE_IVT_END = 0x400  # the real-mode interrupt table is never given out
MAX_MEMORY_RANGES = 2048  # kexec-tools' memory map capacity

_MEMMAP_TYPES = {
    "System RAM": MemType.RAM,
    "ACPI Tables": MemType.ACPI,
    "ACPI Non-volatile Storage": MemType.NVS,
    "reserved": MemType.RESERVED,
    "Reserved": MemType.RESERVED,
    "Unusable memory": MemType.RESERVED,
    "Unknown E820 type": MemType.RESERVED,
    "Uncached RAM": MemType.UNCACHED,
    "Persistent Memory (legacy)": MemType.PRAM,
    "Persistent Memory": MemType.PMEM,
}

_IOMEM_MAP_TYPES = {
    "System RAM": MemType.RAM,
    "ACPI Tables": MemType.ACPI,
    "ACPI Non-volatile Storage": MemType.NVS,
    "Persistent Memory (legacy)": MemType.PRAM,
    "Persistent Memory": MemType.PMEM,
}


def memory_map_from_iomem(iomem: Iomem) -> Tuple[MemoryRegion, ...]:
    """kexec-tools' /proc/iomem fallback map: lines at any depth, in file order.

    Names: exactly "System RAM", "reserved" in any case, "ACPI Tables",
    "ACPI Non-volatile Storage", "Persistent Memory (legacy)", "Persistent Memory".
    Like kexec-tools, at most 2048 entries are kept.
    """
    out = []
    for node in iomem.walk():
        if len(out) >= MAX_MEMORY_RANGES:
            break
        kind = _IOMEM_MAP_TYPES.get(node.name)
        if kind is None and node.name.lower() == "reserved":
            kind = MemType.RESERVED
        if kind is not None:
            out.append(MemoryRegion(node.range, kind))
    return tuple(out)


def fixup_memory_map(regions) -> Tuple[MemoryRegion, ...]:
    """kexec-tools' fix-ups of a start-sorted firmware map, repeated until stable.

    Only neighbours of the same type are touched: of two with equal starts the longer
    stays, a contained one is removed, and an overlapping one is trimmed to start at the
    previous entry's *inclusive* end (sic: the two then share one byte). The passes and
    their order are kexec-tools', so the result is the same.
    """
    items = [[r.start, r.range.last, r.type] for r in regions if not r.range.empty]
    changed = True
    while changed:
        changed = False
        i = 0
        while i < len(items) - 1:
            a, b = items[i], items[i + 1]
            if a[2] is b[2]:
                if a[0] == b[0]:
                    del items[i + 1 if a[1] >= b[1] else i]
                    changed = True
                elif a[1] > b[0]:
                    if a[1] < b[1]:
                        b[0] = a[1]
                    else:
                        del items[i + 1]
                    changed = True
            i += 1
    return tuple(MemoryRegion(Range.from_inclusive(s, e), t) for s, e, t in items)


def skip_realmode_ivt(regions) -> Tuple[MemoryRegion, ...]:
    """Raise the first RAM entry starting below 0x400 to start at 0x400.

    kexec-tools never gives out the real-mode interrupt vector table, so placement sees
    RAM from 0x400. An entry left empty by this is dropped.
    """
    out = list(regions)
    for i, r in enumerate(out):
        if r.type is MemType.RAM and r.start < REALMODE_IVT_END:
            if r.end > REALMODE_IVT_END:
                out[i] = MemoryRegion(Range(REALMODE_IVT_END, r.end), r.type)
            else:
                del out[i]
            break
    return tuple(out)



class MemoryMapFacts:
    """Machine facts: the placement map and its RAM."""

    @cached_property
    def _memory_map_result(self):
        warnings = []
        memmap_dir = "sys/firmware/memmap"
        # kexec-tools looks at the first 511 bytes of the command line, if readable
        try:
            cmdline = self.file_text("proc/cmdline") or ""
        except MachineError:
            cmdline = ""
        if "add_efi_memmap" not in cmdline[:511] and self.is_dir(memmap_dir):
            try:
                regions = self._read_firmware_memmap(memmap_dir, warnings)
                source = memmap_dir
                regions = fixup_memory_map(regions)
            except ValueError as e:
                warnings.append(f"{e}; falling back to /proc/iomem")
                regions, source = memory_map_from_iomem(self.iomem), "proc/iomem"
        else:
            regions, source = memory_map_from_iomem(self.iomem), "proc/iomem"
        return skip_realmode_ivt(regions), source, tuple(warnings)

    def _read_firmware_memmap(self, memmap_dir: str, warnings) -> Tuple[MemoryRegion, ...]:
        entries = []
        names = self.list_dir(memmap_dir)
        if len(names) > MAX_MEMORY_RANGES:
            raise ValueError(f"{self.path(memmap_dir)}: {len(names)} entries, more than "
                             f"{MAX_MEMORY_RANGES}")
        for name in names:
            rel = f"{memmap_dir}/{name}"
            try:
                start = parse_c_integer(self.required_text(f"{rel}/start"))
                last = parse_c_integer(self.required_text(f"{rel}/end"))
                type_name = self.required_text(f"{rel}/type").rstrip("\n")
            except (ValueError, MachineError) as e:
                raise ValueError(f"{self.path(rel)}: {e}") from None
            kind = _MEMMAP_TYPES.get(type_name)
            if kind is None:
                warnings.append(f"{self.path(rel)}/type: unknown type {type_name!r}, "
                                f"using reserved")
                kind = MemType.RESERVED
            if last < start:
                raise ValueError(f"{self.path(rel)}: end {last:#x} below start {start:#x}")
            entries.append((start, MemoryRegion(Range.from_inclusive(start, last), kind)))
        # A stable sort by start over directory (readdir) order: entries with equal starts
        # come out as kexec-tools' qsort (glibc's merge sort) leaves them on the same folder.
        entries.sort(key=lambda e: e[0])
        return tuple(e[1] for e in entries)

    @property
    def memory_map(self) -> Tuple[MemoryRegion, ...]:
        """The placement map: typed regions sorted by start (see kexec-tools 3.2).

        From sys/firmware/memmap (the firmware e820, sorted by start, ties in directory
        order; same-type overlaps fixed up) unless the command line has add_efi_memmap,
        the directory is absent, or an entry fails to parse (then /proc/iomem lines at
        any depth, as kexec-tools does). The first RAM range starting below 0x400 is
        raised to start at 0x400: the real-mode IVT is never given out.
        """
        return self._memory_map_result[0]

    @property
    def memory_map_source(self) -> str:
        """"sys/firmware/memmap" or "proc/iomem"."""
        return self._memory_map_result[1]

    @property
    def memory_map_warnings(self) -> Tuple[str, ...]:
        """Messages kexec-tools would print while reading the map (unknown types, fallback)."""
        return self._memory_map_result[2]

    @property
    def ram(self) -> Tuple[Range, ...]:
        """The RAM ranges of `memory_map`, in order: what placement may use."""
        return tuple(r.range for r in self.memory_map if r.type is MemType.RAM)
