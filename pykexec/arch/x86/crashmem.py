"""x86 crash-memory rules: which memory the dump describes, and what the capture kernel may use.

Pure functions over values the `Machine` reads; they follow kexec-tools' x86 crash path
(crashdump-x86.c) so that pykexec's elfcorehdr and capture e820 match byte for byte:

* `crash_memory_ranges`: every /proc/iomem line (any depth) that is RAM, ACPI, NVS,
  reserved, PMEM or PRAM, in file order, split at the i386 lowmem limit, minus every
  crash region and the GART aperture (kexec-tools' exclude_region, quirks included);
* `backup_area`: the low RAM that purgatory copies away before the capture kernel runs;
* `capture_memory_map`: the capture kernel's memory map (boot_params e820), built with
  kexec-tools' add_memmap/delete_memmap arithmetic, including its 1 KiB fragment.

kexec-tools works with inclusive ends; these functions do too internally (that is where
the quirks live) and give half-open `Range`s and `MemoryRegion`s out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple

from pykexec.abi.elf import ELFCLASS32, ELFCLASS64
from pykexec.errors import PykexecError
from pykexec.arch.x86.bootparams import e820_type  # (this module moves to arch/x86/)
from pykexec.core.ranges import MemoryRegion, MemType, Range, align_down, align_up

LOWMEM_LIMIT_I386 = 0x38000000  # X86_MAXMEM: end of the i386 kernel's direct map
I386_PAGE_OFFSET = 0xC0000000  # the i386 direct map starts at 3 GiB
BACKUP_SRC_DEFAULT = Range(0, 0xA0000)  # the 640 KiB assumed when no low RAM range exists
BACKUP_SRC_MAX_LAST = 0xA0000  # a backup source range must end (inclusive) at or below this
MEMMAP_GRANULE = 1024  # memmap=/e820 edits work in KiB
CAPTURE_MAP_MAX = 1024  # capacity of kexec-tools' capture map
ELFCOREHDR_MIN_MEMSZ = 16 * 1024  # old "vmlinux bss gap" workaround, kept for equal layouts


class CrashMemoryError(PykexecError, ValueError):
    """The crash memory rules cannot be applied to this machine (kexec-tools would fail)."""


def lowmem_limit_for(arch: str) -> Optional[int]:
    """The direct-map limit that splits crash ranges: i386 only."""
    return LOWMEM_LIMIT_I386 if arch in ("i386", "i486", "i586", "i686") else None


def core_class_for(arch: str, crash_ranges: Sequence[MemoryRegion],
                   forced: Optional[int] = None) -> int:
    """The ELF class kexec-tools picks: x86_64 (no lowmem split) always ELF64; i386 the
    forced class, else ELF64 when there are no ranges or the last one ends above 4 GiB,
    else ELF32. (pykexec's own i386 rule is pykexec.arch.i386.crashload's.)"""
    if lowmem_limit_for(arch) is None:
        return ELFCLASS64
    if forced is not None:
        return forced
    if not crash_ranges or crash_ranges[-1].range.last > 0xFFFFFFFF:
        return ELFCLASS64
    return ELFCLASS32


def crash_iomem_type(name: str) -> Optional[MemType]:
    """The crash-range type of an iomem resource name, or None if it is not dumped/passed.

    Any name containing "System RAM" is RAM (also "System RAM (kmem)" under persistent
    memory and "System RAM (virtio_mem)"); the others must match exactly. "GART" is
    handled by the caller (it is excluded, not included).
    """
    if "System RAM" in name:
        return MemType.RAM
    return _CRASH_EXACT_NAMES.get(name)


_CRASH_EXACT_NAMES = {
    "ACPI Tables": MemType.ACPI,
    "ACPI Non-volatile Storage": MemType.NVS,
    "Persistent Memory (legacy)": MemType.PRAM,
    "Persistent Memory": MemType.PMEM,
    "reserved": MemType.RESERVED,  # exactly these two spellings, unlike the memory map
    "Reserved": MemType.RESERVED,
}


def crash_memory_ranges(iomem: Iterable[Tuple[Range, str]], crash_regions: Sequence[Range],
                        lowmem_limit: Optional[int] = None) -> Tuple[MemoryRegion, ...]:
    """kexec-tools' crash memory ranges from iomem `(range, name)` lines in file order.

    Steps (get_crash_memory_ranges): classify each line (`crash_iomem_type`), split a
    range that straddles `lowmem_limit` (i386: a range with start < limit < inclusive
    end becomes `[start, limit)` and `[limit, end)`, same type); then remove each crash
    region, then the last GART line, with `exclude_region`.

    kexec-tools keeps ranges it has emptied (an inverted start/end pair); those produce
    no header and are dropped here. The ELF header's buffer size counts ranges, so the
    count may differ from kexec-tools only in that degenerate case (a crash region
    covering a whole iomem range).
    """
    ranges: List[list] = []  # [first, last, type], inclusive like kexec-tools
    gart = None
    for rng, name in iomem:
        if rng.empty:
            continue
        if name == "GART":
            gart = (rng.start, rng.last)
            continue
        kind = crash_iomem_type(name)
        if kind is None:
            continue
        first, last = rng.start, rng.last
        if lowmem_limit and first < lowmem_limit < last:
            ranges.append([first, lowmem_limit - 1, kind])
            ranges.append([lowmem_limit, last, kind])
        else:
            ranges.append([first, last, kind])
    for region in crash_regions:
        _exclude_region(ranges, region.start, region.last)
    if gart is not None:
        _exclude_region(ranges, *gart)
    return tuple(MemoryRegion(Range(first, last + 1), kind)
                 for first, last, kind in ranges if first <= last)


def _exclude_region(ranges: List[list], first: int, last: int) -> None:
    """kexec-tools' exclude_region, on inclusive [first, last], in place.

    Its overlap test is strict on both sides (a one-byte overlap at a range's last byte
    is missed), a split's upper part is always typed RAM, and only the last split of a
    call is inserted. All of this is kept so the result matches kexec-tools.
    """
    insert_at, upper = None, None
    for i, (mfirst, mlast, _kind) in enumerate(ranges):
        if not (first < mlast and last > mfirst):
            continue
        if first != mfirst and last != mlast:
            ranges[i][1] = first - 1
            upper = [last + 1, mlast, MemType.RAM]
            insert_at = i + 1
        elif first != mfirst:
            ranges[i][1] = first - 1
        else:
            ranges[i][0] = last + 1
    if insert_at is not None:
        ranges.insert(insert_at, upper)


class BackupArea(NamedTuple):
    """Low memory purgatory copies away at crash time: `(start, size)`."""

    start: int
    size: int

    @property
    def range(self) -> Range:
        return Range.from_size(self.start, self.size)


def backup_area(crash_ranges: Iterable[MemoryRegion]) -> BackupArea:
    """The first RAM crash range whose inclusive end is <= 0xa0000, else (0, 0xa0000).

    On QEMU/SeaBIOS that is `00001000-0009fbff : System RAM`, so (0x1000, 0x9ec00).
    """
    for region in crash_ranges:
        if region.type is MemType.RAM and region.range.last <= BACKUP_SRC_MAX_LAST:
            return BackupArea(region.start, region.size)
    return BackupArea(BACKUP_SRC_DEFAULT.start, BACKUP_SRC_DEFAULT.size)


def backup_segment_size(backup: BackupArea) -> int:
    """Bytes of the backup buffer (and of what is deleted from the capture map): KiB-rounded."""
    return align_up(backup.size, MEMMAP_GRANULE)


def elfcorehdr_memsz(header_size: int, hotplug_size: Optional[int] = None) -> int:
    """memsz asked for the elfcorehdr segment, also what is deleted from the capture map.

    At least 16 KiB; with crash hotplug, the kernel's crash_elfcorehdr_size KiB-rounded.
    (The segment itself is page-rounded by the placement; the capture map is not.)
    """
    if hotplug_size is not None:
        return align_up(hotplug_size, MEMMAP_GRANULE)
    return max(ELFCOREHDR_MIN_MEMSZ, header_size)


class E820Entry(NamedTuple):
    """One boot_params e820 entry: half-open [addr, addr + size), boot-protocol type."""

    addr: int
    size: int
    type: int


@dataclass(frozen=True)
class CaptureMemoryMap:
    """The capture kernel's memory map (kexec-tools' memmap_p), sorted by address.

    `regions` keeps kexec-tools' own types (RAM, ACPI, NVS, reserved, PMEM, PRAM) for the
    `memmap=` command-line form; `entries` is the same map as e820 `(addr, size, type)`;
    `messages` are the lines kexec-tools prints on stdout while building it.
    """

    regions: Tuple[MemoryRegion, ...]
    messages: Tuple[str, ...] = ()

    @property
    def entries(self) -> Tuple[E820Entry, ...]:
        return tuple(E820Entry(r.start, r.size, e820_type(r.type)) for r in self.regions)

    def describe(self) -> str:
        """One line per entry, for humans: inclusive range, size, kexec-tools type, e820 type."""
        return "\n".join(f"{r.range.to_iomem()} {r.size:#12x} {r.type.value} (e820 {e820_type(r.type)})"
                         for r in self.regions)


def capture_memory_map(backup_src: BackupArea, crash_regions: Sequence[Range],
                       crash_ranges: Iterable[MemoryRegion], backup_start: Optional[int],
                       elfcorehdr: Range) -> CaptureMemoryMap:
    """What the capture kernel may use, built the way load_crashdump_segments builds it.

    1. the backup source as RAM (failure ignored, as in kexec-tools);
    2. every crash region as RAM (an overlap is an error: no usable crash kernel memory);
    3. minus the backup buffer `[backup_start, + backup_segment_size)` (None: no backup
       segment, as with KEXEC_PRESERVE_CONTEXT);
    4. minus `elfcorehdr`, which must be `[addr, addr + elfcorehdr_memsz(len(header)))`;
    5. plus every ACPI, NVS, reserved, PMEM and PRAM crash range with its type (failures,
       e.g. overlaps with RAM already in the map, ignored).

    RAM added is first shrunk to KiB boundaries; deletions use the unrounded sizes, so
    the page-rounded backup segment leaves a 1 KiB RAM fragment above it when its size
    is not a page multiple (QEMU: 0x3dfffc00-0x3dffffff). Those quirks are kexec-tools'
    and are kept so that the capture kernel sees the same map.
    """
    cmap = _CaptureMap()
    cmap.add(backup_src.start, backup_src.size, MemType.RAM)
    for region in crash_regions:
        if not cmap.add(region.start, region.size, MemType.RAM):
            raise CrashMemoryError(
                f"crash region {region.start:#x}-{region.last:#x} cannot be added to the "
                f"capture memory map (overlap, misalignment or map full)")
    if backup_start is not None:
        size = backup_segment_size(backup_src)
        if not cmap.delete(backup_start, size):
            raise CrashMemoryError(
                f"backup segment {backup_start:#x}+{size:#x} is not inside one KiB-aligned "
                f"entry of the capture memory map")
    if not cmap.delete(elfcorehdr.start, elfcorehdr.size):
        raise CrashMemoryError(
            f"elfcorehdr {elfcorehdr.start:#x}+{elfcorehdr.size:#x} is not inside one "
            f"KiB-aligned entry of the capture memory map")
    for region in crash_ranges:
        if region.type in (MemType.ACPI, MemType.NVS, MemType.RESERVED,
                           MemType.PMEM, MemType.PRAM):
            cmap.add(region.start, region.size, region.type)
    return CaptureMemoryMap(
        regions=tuple(MemoryRegion(Range(first, last + 1), kind)
                      for first, last, kind in cmap.entries),
        messages=tuple(cmap.messages))


class _CaptureMap:
    """kexec-tools' memmap_p: a sorted list of inclusive [first, last, type] entries.

    In kexec-tools an all-zero entry ends the list; no real entry is all zero (sizes are
    at least 1 KiB for RAM), so a plain list is equivalent.
    """

    def __init__(self):
        self.entries: List[list] = []
        self.messages: List[str] = []

    def add(self, addr: int, size: int, kind: MemType) -> bool:
        if kind is MemType.RAM and (addr % MEMMAP_GRANULE or size % MEMMAP_GRANULE):
            end = addr + size
            self.messages.append(f"add_memmap: RAM chunk {addr:#x} - {end:#x} unaligned")
            addr, end = align_up(addr, MEMMAP_GRANULE), align_down(end, MEMMAP_GRANULE)
            if addr >= end:
                return False
            size = end - addr
            self.messages.append(f"add_memmap: RAM chunk shrunk to {addr:#x} - {end:#x}")
        if size <= 0 or len(self.entries) >= CAPTURE_MAP_MAX:
            return False
        last = addr + size - 1
        at = 0
        for i, (mfirst, mlast, _kind) in enumerate(self.entries):
            if mfirst <= last and mlast >= addr:
                return False
            if addr > mlast:
                at = i + 1
        self.entries.insert(at, [addr, last, kind])
        return True

    def delete(self, addr: int, size: int) -> bool:
        if addr % MEMMAP_GRANULE or size % MEMMAP_GRANULE or size <= 0:
            return False
        if len(self.entries) >= CAPTURE_MAP_MAX:
            return False
        last = addr + size - 1
        for i, (mfirst, mlast, kind) in enumerate(self.entries):
            if not (mfirst <= addr and mlast >= last):
                continue
            if mfirst == addr and mlast == last:
                del self.entries[i]
            elif mfirst != addr and mlast != last:
                self.entries[i][1] = addr - 1
                self.entries.insert(i + 1, [last + 1, mlast, kind])
            elif mfirst != addr:
                self.entries[i][1] = addr - 1
            else:
                self.entries[i][0] = last + 1
            return True
        return False
