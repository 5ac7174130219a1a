"""The machine a loader runs on, as /proc and /sys describe it, read under one root path.

`Machine.read("/")` reads the live machine; `Machine.read(DIR)` reads a snapshot folder
(docs/snapshot-format.md) through the same code. Loaders get every /proc and /sys fact
from here; nothing else in pykexec parses those files (pykexec.machine.snapshot only copies them).

Every fact is an attribute that is read and parsed on first access and then kept: each
file is read at most once, and each value is immutable (tuples, frozen dataclasses,
named tuples). A fact the machine cannot give raises `MachineError`, whose message
names the file as seen under the root (for a snapshot, `DIR/proc/iomem`) and the
problem; parse errors in line-oriented files also give the line number.

What is read, and which kexec-tools rule it follows (see docs and crashmem.py):

=========================  ==========================================================
`iomem`                    proc/iomem as a tree (indentation = nesting), half-open
`memory_map`               sys/firmware/memmap (else proc/iomem), fixed up, IVT skipped
`crash_regions`            every "Crash kernel" line; `crash_region` = the highest
`crash_memory_ranges()`    dumped/passed ranges minus crash regions (crashmem.py)
`backup_area()`            the low RAM purgatory copies away
`cpus`, `nr_cpus_conf`     per-CPU crash_notes address/size; configured CPU count
`vmcoreinfo`               sys/kernel/vmcoreinfo
`kernel_text`              x86_64 kernel text mapping from iomem + kcore + kallsyms
`acpi_rsdp`, `efi`         RSDP, EFI facts; `boot_params` the running zero page
`cmdline`, `lockdown` ...  small sysfs/procfs flags
=========================  ==========================================================
"""

from __future__ import annotations

import bisect
import errno as errno_mod
import os
import re
import stat
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, Iterator, NamedTuple, Optional, Sequence, Tuple

from pykexec.errors import PykexecError
from pykexec.core import crashmem
from pykexec.core.crashmem import I386_PAGE_OFFSET, BackupArea
from pykexec.core.ranges import MemoryRegion, MemType, Range, align_down, align_up
from pykexec.abi import bootparams as bp
from pykexec.abi.elf import ELF_MAGIC, ET_CORE, PT_LOAD, elf_structs

KCORE_HEADERS_SIZE = 64 * 1024  # kexec-tools parses only this much of /proc/kcore
MAX_NOTE_BYTES = 1024  # crash_notes size assumed when crash_notes_size is missing
MAX_NOTE_SIZE = 1 << 20  # no crash_notes or vmcoreinfo buffer comes near 1 MiB
REALMODE_IVT_END = 0x400  # the real-mode interrupt table is never given out
MAX_MEMORY_RANGES = 2048  # kexec-tools' memory map capacity
X86_64_PAGE_OFFSET = 0xFFFF888000000000  # direct map base without KASLR
X86_64_START_KERNEL_MAP = 0xFFFFFFFF80000000
X86_64_KERNEL_TEXT_SIZE = 512 << 20
KERNEL_VADDR_ALIGN = 1 << 20
PAGE_OFFSET_ALIGN = 1 << 30  # KASLR moves the direct map in PUD (1 GiB) steps


EXIT_CANNOT_PARSE = 1  # kexec-tools dies ("Cannot parse <file>") on a bad machine file
EXIT_LOAD_FAILED = 255  # kexec-tools' failed load (kcore, kernel text, no such root)


class MachineError(PykexecError):
    """A fact cannot be read from the machine: one line naming the file and the problem.

    `exit_status` is what kexec-tools exits with for the same fault: 1 for a machine file
    that is missing where required, unreadable, malformed or damaged (its die() on "Cannot
    parse", "Cannot open /proc/iomem"), 255 where its load fails instead (kcore, the kernel
    text mapping; pykexec's --sysroot follows a missing kernel file).
    """

    def __init__(self, message: str, path: Optional[str] = None, line: Optional[int] = None,
                 exit_status: int = EXIT_CANNOT_PARSE):
        super().__init__(message)
        self.path = path
        self.line = line
        self.exit_status = exit_status


# ---------------------------------------------------------------------------------------
# /proc/iomem


@dataclass(frozen=True)
class IomemNode:
    """One /proc/iomem line: its half-open range, name, nesting depth and line number."""

    range: Range
    name: str
    depth: int
    line: int
    children: Tuple["IomemNode", ...] = ()

    def walk(self) -> Iterator["IomemNode"]:
        """This node, then its descendants, in file order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class Iomem:
    """The /proc/iomem resource tree; `top` holds the unindented lines in file order."""

    top: Tuple[IomemNode, ...]

    def walk(self) -> Iterator[IomemNode]:
        """Every line at any depth, in file order (what kexec-tools' sscanf loops see)."""
        for node in self.top:
            yield from node.walk()

    def find(self, name: str) -> Tuple[IomemNode, ...]:
        """Every line, at any depth, whose name is exactly `name`."""
        return tuple(n for n in self.walk() if n.name == name)


_IOMEM_LINE = re.compile(r"^( *)([0-9A-Fa-f]+)-([0-9A-Fa-f]+) : (.*)$")


def parse_iomem(text: str, path: str = "/proc/iomem") -> Iomem:
    """Parse /proc/iomem text; malformed lines raise MachineError naming `path:line`.

    Each nesting level is two more spaces of indentation. Ends are inclusive in the
    file and become half-open ranges here. The kernel's resource tree guarantees that
    siblings are sorted and disjoint and that a child lies inside its parent
    (`check_iomem_nesting`); a file that breaks this is damaged and refused.
    """
    stack = []  # [(depth, name, range, line, children-list)]
    top = []

    def close_to(depth):
        while stack and stack[-1][0] >= depth:
            d, name, rng, lineno, kids = stack.pop()
            node = IomemNode(rng, name, d, lineno, tuple(kids))
            (stack[-1][4] if stack else top).append(node)

    nonzero = False
    count = 0
    damage = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _IOMEM_LINE.match(line)
        if not m:
            raise MachineError(f"{path}:{lineno}: not 'start-end : name': {line.strip()!r}",
                               path, lineno)
        indent, first_s, last_s, name = m.groups()
        if len(indent) % 2:
            raise MachineError(f"{path}:{lineno}: odd indentation ({len(indent)} spaces)",
                               path, lineno)
        depth = len(indent) // 2
        close_to(depth)
        parent_depth = stack[-1][0] if stack else -1
        if depth > parent_depth + 1:
            raise MachineError(f"{path}:{lineno}: indented {depth} levels under a line of "
                               f"level {parent_depth}", path, lineno)
        if len(first_s) > 16 or len(last_s) > 16:
            raise MachineError(f"{path}:{lineno}: address above 64 bits", path, lineno)
        first, last = int(first_s, 16), int(last_s, 16)
        if last < first:
            raise MachineError(f"{path}:{lineno}: end {last:#x} is below start {first:#x}",
                               path, lineno)
        if last >= 1 << 64:
            raise MachineError(f"{path}:{lineno}: address above 64 bits", path, lineno)
        nonzero = nonzero or last != 0
        count += 1
        rng = Range.from_inclusive(first, last)
        siblings = stack[-1][4] if stack else top
        if damage is None:
            try:
                check_iomem_nesting(path, lineno, stack[-1][2:4] if stack else None,
                                    (siblings[-1].range, siblings[-1].line)
                                    if siblings else None, rng)
            except MachineError as e:
                damage = e  # reported after the all-zero test (non-root readers)
        stack.append((depth, name, rng, lineno, []))
    close_to(0)
    if count and not nonzero:
        raise MachineError(f"{path}: every address is zero (the kernel shows /proc/iomem "
                           f"addresses only to root)", path)
    if damage is not None:
        raise damage
    return Iomem(tuple(top))


def check_iomem_nesting(path: str, lineno: int, parent, previous, rng: Range) -> None:
    """Refuse an iomem line that breaks the resource tree's order (the kernel guarantees it).

    `parent` is (range, line) of the enclosing line or None; `previous` is (range, line)
    of the sibling just before, or None. Overlapping or unsorted ranges would
    give overlapping core-header PT_LOADs and a wrong backup area, so they are damage.
    """
    if parent is not None and not parent[0].contains(rng):
        raise MachineError(f"{path}:{lineno}: {rng.to_iomem()} is not inside its parent "
                           f"{parent[0].to_iomem()} (line {parent[1]})", path, lineno)
    if previous is not None:
        prev_range, prev_line = previous
        if rng.start < prev_range.end:
            how = "overlaps" if rng.start >= prev_range.start else "is below"
            raise MachineError(f"{path}:{lineno}: {rng.to_iomem()} {how} "
                               f"{prev_range.to_iomem()} (line {prev_line}): ranges must be "
                               f"sorted and disjoint", path, lineno)


def ram_ranges_of(iomem: "Iomem") -> Tuple[Range, ...]:
    """Top-level "System RAM" ranges of a checked iomem tree, sorted (and disjoint)."""
    return tuple(n.range for n in iomem.top if "System RAM" in n.name)


class RamIndex(NamedTuple):
    """Sorted, disjoint RAM ranges with their starts, for O(log n) containment tests."""

    ranges: Tuple[Range, ...]
    starts: Tuple[int, ...]

    @classmethod
    def of(cls, ranges: Sequence[Range]) -> "RamIndex":
        return cls(tuple(ranges), tuple(r.start for r in ranges))

    def holds(self, what: Range) -> bool:
        """True when `what` lies inside one of the ranges."""
        i = bisect.bisect_right(self.starts, what.start) - 1
        return i >= 0 and self.ranges[i].contains(what)


# ---------------------------------------------------------------------------------------
# Memory map (placement map)

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


def _parse_c_integer(text: str) -> int:
    """strtoull(text, 0): 0x-hex, 0-octal or decimal, surrounding blanks allowed."""
    s = text.strip()
    if re.fullmatch(r"0[xX][0-9A-Fa-f]+", s):
        return int(s, 16)
    if re.fullmatch(r"0[0-7]*", s):
        return int(s, 8)
    if re.fullmatch(r"[1-9][0-9]*", s):
        return int(s)
    raise ValueError(f"not a number: {s!r}")


def _parse_hex(text: str) -> int:
    """sscanf %llx: hex digits with an optional 0x prefix."""
    s = text.strip()
    if not re.fullmatch(r"(0[xX])?[0-9A-Fa-f]+", s):
        raise ValueError(f"not a hex number: {s!r}")
    return int(s, 16)


# ---------------------------------------------------------------------------------------
# Small value types


class CpuNote(NamedTuple):
    """A CPU's crash-notes buffer: physical address and size (one PT_NOTE)."""

    cpu: int
    paddr: int
    size: int


class VmcoreInfo(NamedTuple):
    """The vmcoreinfo note: physical address and size (one PT_NOTE)."""

    paddr: int
    size: int


@dataclass(frozen=True)
class KernelText:
    """x86_64 kernel text mapping for the elfcorehdr's kernel-text PT_LOAD.

    `paddr` is the `Kernel code` start from /proc/iomem; `vaddr` and `size` come from the
    kcore PT_LOAD holding `_stext` (vaddr rounded down to 1 MiB, size up to a page);
    `page_offset` is the direct-map base (KASLR aware) used for the RAM PT_LOADs.
    """

    paddr: int
    vaddr: int
    size: int
    page_offset: int
    stext: Optional[int] = None  # _stext from kallsyms, None when hidden or missing


class KcoreLoad(NamedTuple):
    """A PT_LOAD of /proc/kcore: kernel virtual address and memory size."""

    vaddr: int
    memsz: int


@dataclass(frozen=True)
class EfiRuntimeMapEntry:
    """One sys/firmware/efi/runtime-map/N entry (an EFI memory descriptor)."""

    index: int
    type: int
    phys_addr: int
    virt_addr: int
    num_pages: int
    attribute: int


@dataclass(frozen=True)
class EfiFacts:
    """What sys/firmware/efi says. `present` is False on BIOS machines.

    `runtime_map_dir` is kexec-tools' test for leaving out `acpi_rsdp=` (the directory
    opens); `runtime_map` lists its entries in numeric order (kexec-tools uses readdir
    order, which on sysfs is not guaranteed to be numeric).
    """

    present: bool
    systab: Tuple[Tuple[str, int], ...] = ()
    fw_vendor: Optional[int] = None
    runtime: Optional[int] = None
    config_table: Optional[int] = None
    runtime_map_dir: bool = False
    runtime_map: Tuple[EfiRuntimeMapEntry, ...] = ()

    @property
    def has_runtime_map(self) -> bool:
        """runtime-map lists entries (what passing EFI data to the capture kernel needs)."""
        return bool(self.runtime_map)

    def systab_value(self, key: str) -> Optional[int]:
        for k, v in self.systab:
            if k == key:
                return v
        return None


@dataclass(frozen=True)
class EddFacts:
    """BIOS Enhanced Disk Drive data from sys/firmware/edd, as boot_params carries it.

    `entries` are `structs.bootparams.EddInfo` field dicts (at most EDD_MAX_ENTRIES),
    `mbr_signatures` the disks' MBR signatures (at most EDD_MBR_SIG_MAX). `problem` says why
    everything was left out (kexec-tools zeroes all EDD data on any unreadable entry).
    """

    entries: Tuple[Dict, ...] = ()
    mbr_signatures: Tuple[int, ...] = ()
    problem: Optional[str] = None


_EDD_EXTENSIONS = (  # extensions file lines (drivers/firmware/edd.c) -> interface_support bits
    ("Fixed disk access", 1 << 0),
    ("Device locking and ejecting", 1 << 1),
    ("Enhanced Disk Drive support", 1 << 2),
    ("64-bit extensions", 1 << 3),
)


def _scan_unsigned(text: str, prefix: str, base: int, bits: int) -> int:
    """scanf "<prefix>%<h|hh><u|x>": blanks, the literal prefix, digits; kept to `bits` bits."""
    digits = "[0-9a-fA-F]+" if base == 16 else "[0-9]+"
    m = re.match(r"\s*" + re.escape(prefix) + "(" + digits + ")", text)
    if not m:
        raise ValueError(f"expected {prefix}{'hex' if base == 16 else 'decimal'} number")
    return int(m.group(1), base) & ((1 << bits) - 1)


# ---------------------------------------------------------------------------------------
# Pure helpers for the kernel text mapping


def kcore_page_offset(loads, default: int = X86_64_PAGE_OFFSET) -> int:
    """The lowest kcore PT_LOAD vaddr rounded down to 1 GiB (the KASLR direct-map base).

    Follows kexec-tools literally: a zero candidate is replaced by the next one, and
    `default` stays when the result is zero.
    """
    lowest = 0
    for load in loads:
        v = load.vaddr & ~(PAGE_OFFSET_ALIGN - 1) & ((1 << 64) - 1)
        if lowest == 0 or lowest > v:
            lowest = v
    return lowest if lowest else default


def kernel_text_mapping(loads, stext: Optional[int], page_size: int = 4096):
    """(vaddr, size) of the kernel text mapping among kcore PT_LOADs, or None.

    The PT_LOAD containing `_stext` when known (non-zero), else the first one inside
    [0xffffffff80000000, +512 MiB); vaddr rounded down to 1 MiB, size to the end of the
    PT_LOAD rounded up to a page.
    """
    def mapping(load):
        vaddr = align_down(load.vaddr, KERNEL_VADDR_ALIGN)
        return vaddr, align_up(load.vaddr + load.memsz - vaddr, page_size)

    if stext:
        for load in loads:
            if load.vaddr <= stext < load.vaddr + load.memsz:
                return mapping(load)
    for load in loads:
        if (load.vaddr >= X86_64_START_KERNEL_MAP
                and load.vaddr + load.memsz <= X86_64_START_KERNEL_MAP + X86_64_KERNEL_TEXT_SIZE):
            return mapping(load)
    return None


def parse_kcore_loads(data: bytes, path: str = "/proc/kcore") -> Tuple[KcoreLoad, ...]:
    """PT_LOADs of a kcore ELF header (only the headers need to be in `data`)."""
    def fail(why):
        return MachineError(f"ELF core (kcore) parse failed: {path}: {why}", path,
                            exit_status=EXIT_LOAD_FAILED)

    if len(data) < 16 or data[:4] != ELF_MAGIC:
        raise fail("no ELF magic")
    if data[4] not in (1, 2) or data[5] != 1:
        raise fail(f"unsupported ELF class {data[4]} / data encoding {data[5]}")
    s = elf_structs(data[4])
    if len(data) < s.ehdr_size:
        raise fail("truncated ELF header")
    ehdr = s.Ehdr.parse(data)
    if ehdr.e_ident.version != 1 or ehdr.e_version != 1:
        raise fail("unknown ELF version")
    if ehdr.e_type != ET_CORE:
        raise fail(f"e_type is {ehdr.e_type}, not ET_CORE")
    if ehdr.e_phoff == 0 or ehdr.e_phnum == 0:
        raise fail("no program headers")
    end = ehdr.e_phoff + ehdr.e_phnum * s.phdr_size
    if end > len(data):
        raise fail(f"program headers end at {end:#x}, past the {len(data):#x} bytes read")
    loads = []
    for i in range(ehdr.e_phnum):
        at = ehdr.e_phoff + i * s.phdr_size
        ph = s.Phdr.parse(data[at:at + s.phdr_size])
        if ph.p_type == PT_LOAD:
            loads.append(KcoreLoad(ph.p_vaddr, ph.p_memsz))
    return tuple(loads)


MAX_CPUS = 8192  # the x86 kernel's largest NR_CPUS (MAXSMP): no CPU number reaches it
_CPU_LIST = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")


def parse_cpu_list(text: str, limit: int = MAX_CPUS) -> Tuple[int, ...]:
    """A sysfs CPU list such as "0-3,5" as sorted CPU numbers; "" is no CPU.

    Strict, as the kernel prints it (bitmap_print_to_pagebuf): decimal numbers and
    ascending ranges joined by commas. Every number must be below `limit` (checked before
    a range is expanded, so a damaged "0-4294967295" costs nothing).
    """
    body = text.strip()
    if not body:
        return ()
    if not _CPU_LIST.fullmatch(body):
        raise ValueError("not a CPU list such as 0-3,5")
    cpus = set()
    for part in body.split(","):
        lo, _, hi = part.partition("-")
        lo_i, hi_i = int(lo), int(hi or lo)
        if hi_i < lo_i:
            raise ValueError(f"range {part} runs backwards")
        if hi_i >= limit:
            raise ValueError(f"CPU {hi_i} is beyond the kernel's limit (CPUs 0-{limit - 1})")
        cpus.update(range(lo_i, hi_i + 1))
    return tuple(sorted(cpus))


# ---------------------------------------------------------------------------------------
# The machine


MAX_MACHINE_FILE = 64 << 20  # far above any /proc or /sys file a loader reads (kallsyms ~15 MiB)


READ_CHUNK = 1 << 16


def read_machine_file(path: str, limit: Optional[int]) -> bytes:
    """Bytes of a regular file, at most `limit` (else at most MAX_MACHINE_FILE, or EFBIG).

    Opened without blocking so that a FIFO or device planted in a snapshot is refused, not
    waited on or read forever; /proc and /sys files are regular (their size says 0).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno_mod.EISDIR, os.strerror(errno_mod.EISDIR), path)
        if not stat.S_ISREG(mode):
            raise OSError(errno_mod.EINVAL, "not a regular file", path)
        want = MAX_MACHINE_FILE + 1 if limit is None else limit
        chunks, got = [], 0
        while got < want:
            # Small reads: a /proc/sys file answers ENOMEM to a read of KMALLOC_MAX_SIZE
            # (4 MiB) or more, because the kernel allocates a buffer of the size asked.
            chunk = os.read(fd, min(want - got, READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if limit is None and len(data) > MAX_MACHINE_FILE:
        raise OSError(errno_mod.EFBIG, f"larger than {MAX_MACHINE_FILE >> 20} MiB", path)
    return data


class _Missing:
    """A file that could not be read: keeps the OSError for the message."""

    def __init__(self, error: OSError):
        self.error = error


class Machine:
    """Everything a loader needs from /proc and /sys under `root`, read lazily, once.

    Create with `Machine.read(root)`. Attributes are computed on first access and cached;
    reading the same file again is served from a per-machine cache, so the values are a
    consistent picture of one moment per file.
    """

    def __init__(self, root: str):
        object.__setattr__(self, "root", os.path.abspath(os.fspath(root)))
        object.__setattr__(self, "_files", {})
        object.__setattr__(self, "_derived", {})

    def __setattr__(self, name, value):
        raise AttributeError("Machine is read-only")

    @classmethod
    def read(cls, root: str = "/") -> "Machine":
        """The machine under `root` ("/" for the live one, or a snapshot folder)."""
        if os.fspath(root) == "":
            raise MachineError("--sysroot: the path is empty (give a machine folder, or / for "
                               "this machine)", "", exit_status=EXIT_LOAD_FAILED)
        if not os.path.isdir(root):
            why = "does not exist" if not os.path.lexists(root) else "is not a directory"
            raise MachineError(f"--sysroot {root}: {why} (a machine folder is expected)",
                               os.fspath(root), exit_status=EXIT_LOAD_FAILED)
        return cls(root)

    def __repr__(self) -> str:
        return f"Machine.read({self.root!r})"

    # -- file access -------------------------------------------------------------------

    def path(self, rel: str) -> str:
        """How a machine file is named in messages: the root prefix plus the real path."""
        return os.path.join(self.root, rel)

    def _read(self, rel: str, limit: Optional[int] = None):
        """Bytes of `rel` (at most `limit`), or a _Missing. Each file is read once."""
        key = (rel, limit)
        cache = self._files
        if key not in cache:
            try:
                cache[key] = read_machine_file(self.path(rel), limit)
            except OSError as e:
                cache[key] = _Missing(e)
        return cache[key]

    def _bytes(self, rel: str, limit: Optional[int] = None) -> Optional[bytes]:
        """Bytes of `rel`, None when it does not exist, MachineError on other errors."""
        data = self._read(rel, limit)
        if isinstance(data, _Missing):
            if data.error.errno in (errno_mod.ENOENT, errno_mod.ENOTDIR):
                return None
            raise MachineError(f"Cannot read {self.path(rel)}: {data.error.strerror}",
                               self.path(rel))
        return data

    def _text(self, rel: str) -> Optional[str]:
        data = self._bytes(rel)
        return None if data is None else data.decode("utf-8", "replace")

    def _required_text(self, rel: str) -> str:
        text = self._text(rel)
        if text is None:
            raise MachineError(f"Cannot read {self.path(rel)}: No such file or directory",
                               self.path(rel))
        return text

    def _first_line(self, rel: str) -> Optional[str]:
        text = self._text(rel)
        return None if text is None else (text.splitlines() or [""])[0]

    def _value(self, rel: str, parse, what: str):
        """Parse the first line of `rel` with `parse`; None if the file is absent."""
        line = self._first_line(rel)
        if line is None:
            return None
        try:
            return parse(line)
        except ValueError:
            raise MachineError(f"{self.path(rel)}:1: expected {what}, got {line.strip()!r}",
                               self.path(rel), 1) from None

    def _kexec_value(self, name: str, parse, what: str):
        """sys/kernel/<name>, else the newer sys/kernel/kexec/<name without kexec_> (2025+)."""
        value = self._value(f"sys/kernel/{name}", parse, what)
        if value is None:
            short = name[len("kexec_"):] if name.startswith("kexec_") else name
            value = self._value(f"sys/kernel/kexec/{short}", parse, what)
        return value

    def _isdir(self, rel: str) -> bool:
        return os.path.isdir(self.path(rel))

    def _listdir(self, rel: str) -> Tuple[str, ...]:
        try:
            return tuple(n for n in os.listdir(self.path(rel)) if not n.startswith("."))
        except OSError:
            return ()

    def _cached(self, key, compute):
        cache = self._derived
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    # -- memory ------------------------------------------------------------------------

    @cached_property
    def iomem(self) -> Iomem:
        """The /proc/iomem tree (MachineError if missing, malformed or all zero)."""
        return parse_iomem(self._required_text("proc/iomem"), self.path("proc/iomem"))

    @cached_property
    def _memory_map_result(self):
        warnings = []
        memmap_dir = "sys/firmware/memmap"
        # kexec-tools looks at the first 511 bytes of the command line, if readable
        try:
            cmdline = self._text("proc/cmdline") or ""
        except MachineError:
            cmdline = ""
        if "add_efi_memmap" not in cmdline[:511] and self._isdir(memmap_dir):
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
        names = self._listdir(memmap_dir)
        if len(names) > MAX_MEMORY_RANGES:
            raise ValueError(f"{self.path(memmap_dir)}: {len(names)} entries, more than "
                             f"{MAX_MEMORY_RANGES}")
        for name in names:
            rel = f"{memmap_dir}/{name}"
            try:
                start = _parse_c_integer(self._required_text(f"{rel}/start"))
                last = _parse_c_integer(self._required_text(f"{rel}/end"))
                type_name = self._required_text(f"{rel}/type").rstrip("\n")
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

    @cached_property
    def crash_regions(self) -> Tuple[Range, ...]:
        """Every "Crash kernel" line at any depth (crashkernel= high and ,low), file order.

        The kernel reserves them inside System RAM and shows each as a child of its
        System RAM line; one that is not is damage (a plan there would not boot).
        """
        out = []
        for parent in self.iomem.top:
            for node in parent.walk():
                if node.name != "Crash kernel":
                    continue
                if node is parent or "System RAM" not in parent.name:
                    raise MachineError(
                        f"{self.path('proc/iomem')}:{node.line}: crash region "
                        f"{node.range.to_iomem()} is not inside a System RAM line",
                        self.path("proc/iomem"), node.line)
                out.append(node.range)
        return tuple(out)

    @property
    def crash_region(self) -> Optional[Range]:
        """The highest crash region: the only destination of a crash load, or None.

        kexec-tools takes the last "Crash kernel" line; /proc/iomem is sorted by address,
        so that is the highest one.
        """
        regions = self.crash_regions
        return max(regions, key=lambda r: r.start) if regions else None

    def crash_memory_ranges(self, arch: str = "x86_64") -> Tuple[MemoryRegion, ...]:
        """Ranges the dump describes and passes on (crashmem.crash_memory_ranges).

        `arch` "i386" (or i486..i686) splits ranges at the 0x38000000 lowmem limit.
        """
        limit = crashmem.lowmem_limit_for(arch)
        return self._cached(("crash_memory_ranges", limit), lambda: crashmem.crash_memory_ranges(
            ((n.range, n.name) for n in self.iomem.walk()), self.crash_regions, limit))

    def backup_area(self, arch: str = "x86_64") -> BackupArea:
        """The low RAM that purgatory copies away: (start, size); default (0, 0xa0000)."""
        return crashmem.backup_area(self.crash_memory_ranges(arch))

    # -- CPUs and notes ------------------------------------------------------------------

    @cached_property
    def nr_cpus_conf(self) -> int:
        """Configured CPUs, as glibc's sysconf(_SC_NPROCESSORS_CONF) counts them.

        The number of CPUs in sys/devices/system/cpu/possible, else the number of cpuN
        directories. kexec-tools tries CPU numbers 0 .. nr_cpus_conf-1.
        """
        possible = self.possible_cpus
        if possible:
            return len(possible)
        return sum(1 for n in self._listdir("sys/devices/system/cpu")
                   if re.fullmatch(r"cpu[0-9]+", n))

    @cached_property
    def possible_cpus(self) -> Tuple[int, ...]:
        return self._cpu_list("sys/devices/system/cpu/possible")

    @cached_property
    def present_cpus(self) -> Tuple[int, ...]:
        return self._cpu_list("sys/devices/system/cpu/present")

    @cached_property
    def online_cpus(self) -> Tuple[int, ...]:
        return self._cpu_list("sys/devices/system/cpu/online")

    def _cpu_list(self, rel: str) -> Tuple[int, ...]:
        """A sysfs CPU list file (parse_cpu_list); () when absent, MachineError when bad."""
        line = self._first_line(rel)
        if line is None:
            return ()
        try:
            return parse_cpu_list(line)
        except ValueError as e:
            raise MachineError(f"{self.path(rel)}:1: {line.strip()!r}: {e}", self.path(rel),
                               1) from None

    @cached_property
    def cpus(self) -> Tuple[CpuNote, ...]:
        """Per-CPU crash notes for CPU numbers 0 .. nr_cpus_conf-1 that have crash_notes.

        crash_notes is hex (the physical address of the CPU's note buffer), crash_notes_size
        decimal (1024 when the file is missing). A CPU without crash_notes is skipped; when
        sys/devices itself is missing that is an error (sysfs not mounted), as in kexec-tools.
        """
        if not self._isdir("sys/devices"):
            raise MachineError(f"{self.path('sys/devices')} does not exist; is sysfs mounted?",
                               self.path("sys/devices"))
        out = []
        nr_cpus = self.nr_cpus_conf
        # Only CPU folders that exist are read (kexec-tools tries every number below
        # nr_cpus and skips the missing ones): linear in the folders, not in nr_cpus.
        numbers = sorted(int(n[3:]) for n in self._listdir("sys/devices/system/cpu")
                         if re.fullmatch(r"cpu(0|[1-9][0-9]*)", n))
        for cpu in numbers:
            if cpu >= nr_cpus:
                break
            base = f"sys/devices/system/cpu/cpu{cpu}"
            paddr = self._value(f"{base}/crash_notes", _parse_hex, "a hex address")
            if paddr is None:
                continue
            size = self._value(f"{base}/crash_notes_size", _parse_decimal, "a decimal size")
            note = CpuNote(cpu, paddr, MAX_NOTE_BYTES if size is None else size)
            self._check_note(f"{base}/crash_notes", note.paddr, note.size)
            out.append(note)
        return tuple(out)

    @cached_property
    def ram_index(self) -> RamIndex:
        """The top-level System RAM ranges of /proc/iomem, for containment checks."""
        return RamIndex.of(ram_ranges_of(self.iomem))

    def _check_note(self, rel: str, paddr: int, size: int) -> None:
        """A note buffer the kernel wrote must be non-empty, bounded and inside System RAM."""
        if not 0 < size <= MAX_NOTE_SIZE:
            raise MachineError(f"{self.path(rel)}: note size {size} is not between 1 and "
                               f"{MAX_NOTE_SIZE}", self.path(rel))
        if paddr + size > 1 << 64 or not self.ram_index.holds(Range.from_size(paddr, size)):
            raise MachineError(f"{self.path(rel)}: note at {paddr:#x}+{size:#x} is not inside "
                               f"System RAM of {self.path('proc/iomem')}", self.path(rel))

    @cached_property
    def legacy_crash_notes(self) -> Optional[int]:
        """sys/kernel/crash_notes (very old kernels): a kernel *virtual* address, or None."""
        return self._value("sys/kernel/crash_notes", _parse_hex, "a hex address")

    def cpu_notes(self, arch: str = "x86_64") -> Tuple[CpuNote, ...]:
        """The CPU PT_NOTEs kexec-tools would write for `arch`.

        x86_64: `cpus`. i386 with the legacy sys/kernel/crash_notes: every CPU number below
        nr_cpus_conf at `vaddr + cpu * 1024 - 0xc0000000`, 1024 bytes each.
        """
        legacy = self.legacy_crash_notes if crashmem.lowmem_limit_for(arch) else None
        if legacy is None:
            return self.cpus
        return tuple(CpuNote(cpu, legacy + cpu * MAX_NOTE_BYTES - I386_PAGE_OFFSET, MAX_NOTE_BYTES)
                     for cpu in range(self.nr_cpus_conf))

    @cached_property
    def vmcoreinfo(self) -> Optional[VmcoreInfo]:
        """(paddr, size) from sys/kernel/vmcoreinfo, both hex ("%llx %llx"), or None."""
        def parse(line):
            fields = line.split()
            if len(fields) < 2:
                raise ValueError(line)
            return VmcoreInfo(_parse_hex(fields[0]), _parse_hex(fields[1]))
        info = self._value("sys/kernel/vmcoreinfo", parse, "'<hex paddr> <hex size>'")
        if info is not None:
            self._check_note("sys/kernel/vmcoreinfo", info.paddr, info.size)
        return info

    # -- kernel text -----------------------------------------------------------------------

    @cached_property
    def kernel_code(self) -> Range:
        """The single "Kernel code" /proc/iomem range (the kernel's physical text)."""
        nodes = self.iomem.find("Kernel code")
        if len(nodes) != 1:
            raise MachineError(f"Cannot determine kernel physical load addr: "
                               f"{self.path('proc/iomem')} has {len(nodes)} 'Kernel code' "
                               f"lines, expected exactly one", self.path("proc/iomem"),
                               exit_status=EXIT_LOAD_FAILED)
        return nodes[0].range

    @cached_property
    def kcore_loads(self) -> Tuple[KcoreLoad, ...]:
        """PT_LOADs from the first 64 KiB of /proc/kcore."""
        rel = "proc/kcore"
        data = self._read(rel, KCORE_HEADERS_SIZE)
        if isinstance(data, _Missing):
            raise MachineError(f"Cannot read {self.path(rel)}: {data.error.strerror}",
                               self.path(rel), exit_status=EXIT_LOAD_FAILED)
        return parse_kcore_loads(data, self.path(rel))

    def symbol(self, name: str) -> Optional[int]:
        """Address of the first /proc/kallsyms line naming `name` exactly, or None.

        Zero when kptr_restrict hides addresses. Missing kallsyms gives None.
        """
        data = self._bytes("proc/kallsyms")
        if data is None:
            return None
        pattern = re.compile(rb"^([0-9A-Fa-f]+) \S " + re.escape(name.encode()) + rb"(?=[\t ]|$)",
                             re.MULTILINE)
        m = pattern.search(data)
        return int(m.group(1), 16) if m else None

    @cached_property
    def page_offset(self) -> int:
        """x86_64 direct-map base: from kcore (KASLR) when readable, else 0xffff888000000000."""
        return kcore_page_offset(self.kcore_loads)

    @cached_property
    def kernel_text(self) -> KernelText:
        """The x86_64 kernel text mapping (kexec-tools 3.6); MachineError when unknown."""
        paddr = self.kernel_code.start
        loads = self.kcore_loads
        try:
            stext = self.symbol("_stext")
        except MachineError:
            stext = None  # kexec-tools carries on without kallsyms (the fixed window below)
        found = kernel_text_mapping(loads, stext)
        if found is None:
            raise MachineError(f"Can't find kernel text map area from kcore "
                               f"({self.path('proc/kcore')})", self.path("proc/kcore"),
                               exit_status=EXIT_LOAD_FAILED)
        vaddr, size = found
        return KernelText(paddr=paddr, vaddr=vaddr, size=size,
                          page_offset=kcore_page_offset(loads), stext=stext or None)

    # -- firmware --------------------------------------------------------------------------

    @cached_property
    def boot_params(self) -> Optional[bytes]:
        """The running kernel's boot_params (4096 bytes), or None when not exported."""
        return self._bytes("sys/kernel/boot_params/data")

    @cached_property
    def efi(self) -> EfiFacts:
        base = "sys/firmware/efi"
        if not self._isdir(base):
            return EfiFacts(present=False)
        systab = []
        for line in (self._text(f"{base}/systab") or "").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                try:
                    systab.append((key.strip(), _parse_hex(value)))
                except ValueError:
                    pass
        hexval = lambda name: self._value(f"{base}/{name}", _parse_hex, "a hex number")
        entries = []
        for name in self._listdir(f"{base}/runtime-map"):
            rel = f"{base}/runtime-map/{name}"
            if not name.isdigit():
                continue
            fields = {}
            for field in ("type", "phys_addr", "virt_addr", "num_pages", "attribute"):
                value = self._value(f"{rel}/{field}", _parse_hex, "a hex number")
                if value is None:
                    raise MachineError(f"Cannot read {self.path(rel + '/' + field)}: No such "
                                       f"file or directory", self.path(rel))
                fields[field] = value
            entries.append(EfiRuntimeMapEntry(index=int(name), **fields))
        return EfiFacts(present=True, systab=tuple(systab), fw_vendor=hexval("fw_vendor"),
                        runtime=hexval("runtime"), config_table=hexval("config_table"),
                        runtime_map_dir=self._isdir(f"{base}/runtime-map"),
                        runtime_map=tuple(sorted(entries, key=lambda e: e.index)))

    @cached_property
    def edd(self) -> Optional[EddFacts]:
        """sys/firmware/edd as kexec-tools passes it on, or None when the folder is absent.

        Each int13_devNN folder (NN the BIOS drive number, hex) gives an entry: version;
        when it is not 0 also the legacy geometry, the extensions lines as flag bits and
        raw_data (the first 74 bytes, which must hold the length its first u16 says); and
        its mbr_signature when present. Folders are taken in directory (readdir) order, as
        kexec-tools takes them, so both give the same order on the same folder (sysfs lists
        them in its own hash order, not by drive number). Any unreadable entry, or more
        entries than boot_params holds (no kernel makes that many; kexec-tools would write
        past the table), leaves all EDD data out, as kexec-tools' error path does.
        """
        base = "sys/firmware/edd"
        if not self._isdir(base):
            return None
        names = [n for n in self._listdir(base) if n.startswith("int13_dev")]
        try:
            devices = [(_scan_unsigned(n, "int13_dev", 16, 8), n) for n in names]
            if len(devices) > bp.EDD_MAX_ENTRIES:
                raise ValueError(f"{len(devices)} int13_dev entries, more than the "
                                 f"{bp.EDD_MAX_ENTRIES} boot_params holds")
            entries, sigs = [], []
            for device, name in devices:
                entry, sig = self._edd_entry(f"{base}/{name}", device)
                entries.append(entry)
                if sig is not None:
                    sigs.append(sig)
            if len(sigs) > bp.EDD_MBR_SIG_MAX:
                raise ValueError(f"{len(sigs)} MBR signatures, more than {bp.EDD_MBR_SIG_MAX}")
        except (ValueError, MachineError) as e:
            return EddFacts(problem=f"{self.path(base)}: {e}; EDD data left out")
        return EddFacts(tuple(entries), tuple(sigs))

    def _edd_entry(self, rel: str, device: int):
        """(EddInfo dict, MBR signature or None) of one int13_devNN folder."""
        def scan(name, prefix, base, bits):
            text = self._text(f"{rel}/{name}")
            if text is None:
                raise ValueError(f"{name} is missing")
            try:
                return _scan_unsigned(text, prefix, base, bits)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None

        sig_text = self._text(f"{rel}/mbr_signature")
        sig = None
        if sig_text is not None:
            try:
                sig = _scan_unsigned(sig_text, "0x", 16, 32)
            except ValueError:
                sig = None  # kexec-tools skips a signature it cannot scan
        entry = dict(device=device, version=scan("version", "0x", 16, 8), interface_support=0,
                     legacy_max_cylinder=0, legacy_max_head=0, legacy_sectors_per_track=0,
                     params=bytes(bp.EDD_DEVICE_PARAM_SIZE))
        if entry["version"]:
            entry["legacy_max_cylinder"] = scan("legacy_max_cylinder", "", 10, 16)
            entry["legacy_max_head"] = scan("legacy_max_head", "", 10, 8)
            entry["legacy_sectors_per_track"] = scan("legacy_sectors_per_track", "", 10, 8)
            lines = self._text(f"{rel}/extensions")
            if lines is None:
                raise ValueError("extensions is missing")
            for line in lines.splitlines():
                for text, bit in _EDD_EXTENSIONS:
                    if line.startswith(text):
                        entry["interface_support"] |= bit
                        break
            raw = self._bytes(f"{rel}/raw_data", bp.EDD_DEVICE_PARAM_SIZE)
            if raw is None:
                raise ValueError("raw_data is missing")
            length = struct.unpack_from("<H", raw.ljust(2, b"\0"))[0]
            if len(raw) < length:
                raise ValueError(f"raw_data says {length} bytes but has {len(raw)}")
            entry["params"] = raw.ljust(bp.EDD_DEVICE_PARAM_SIZE, b"\0")
        return entry, sig

    @cached_property
    def acpi_rsdp(self) -> Optional[int]:
        """The ACPI RSDP: boot_params acpi_rsdp_addr (0x70) else ACPI20=/ACPI= of the EFI systab.

        The systab value must be written 0x... (kexec-tools scans "0x%llx"). None if neither.
        """
        bp = self.boot_params
        if bp is not None and len(bp) >= 0x78:
            value = struct.unpack_from("<Q", bp, 0x70)[0]
            if value:
                return value
        text = self._text("sys/firmware/efi/systab")
        for line in (text or "").splitlines():
            if "ACPI20=" in line or "ACPI=" in line:
                m = re.match(r"0x([0-9A-Fa-f]+)", line.split("=", 1)[1])
                value = int(m.group(1), 16) if m else 0
                return value or None
        return None

    # -- flags and identity ----------------------------------------------------------------

    @cached_property
    def cmdline(self) -> str:
        """The running kernel's command line (without the trailing newline)."""
        # Bytes as the kernel has them (pykexec.core.cmdline's one encoding rule), not U+FFFD.
        self._required_text("proc/cmdline")   # the one-line error when it is missing
        return os.fsdecode(self._bytes("proc/cmdline")).rstrip("\n")

    @cached_property
    def kexec_loaded(self) -> Optional[bool]:
        return self._kexec_value("kexec_loaded", _parse_flag, "0 or 1")

    @cached_property
    def kexec_crash_loaded(self) -> Optional[bool]:
        return self._kexec_value("kexec_crash_loaded", _parse_flag, "0 or 1")

    @cached_property
    def kexec_crash_size(self) -> Optional[int]:
        """Bytes reserved for crash kernels (high + low), or None."""
        return self._kexec_value("kexec_crash_size", _parse_decimal, "a decimal size")

    @cached_property
    def crash_elfcorehdr_size(self) -> Optional[int]:
        """CONFIG_CRASH_HOTPLUG: the elfcorehdr memsz to reserve, or None."""
        return self._kexec_value("crash_elfcorehdr_size", _parse_decimal, "a decimal size")

    @cached_property
    def kexec_load_disabled(self) -> Optional[bool]:
        return self._value("proc/sys/kernel/kexec_load_disabled", _parse_flag, "0 or 1")

    @cached_property
    def lockdown(self) -> Optional[str]:
        """The active lockdown mode ("none", "integrity", "confidentiality"), or None."""
        line = self._first_line("sys/kernel/security/lockdown")
        if line is None:
            return None
        m = re.search(r"\[([^\]]+)\]", line)
        if not m:
            raise MachineError(f"{self.path('sys/kernel/security/lockdown')}:1: no [mode] in "
                               f"{line.strip()!r}", self.path("sys/kernel/security/lockdown"), 1)
        return m.group(1)

    @cached_property
    def snapshot_info(self) -> Optional[Dict]:
        """snapshot.json of a snapshot folder, or None."""
        text = self._text("snapshot.json")
        if text is None:
            return None
        import json  # only snapshot folders have one: a live load does not import json
        try:
            info = json.loads(text)
        except ValueError as e:
            raise MachineError(f"{self.path('snapshot.json')}: not JSON: {e}",
                               self.path("snapshot.json")) from None
        if not isinstance(info, dict):
            raise MachineError(f"{self.path('snapshot.json')}: not a JSON object",
                               self.path("snapshot.json"))
        return info

    def _kcore_arch(self) -> Optional[str]:
        """"x86_64" or "i386" from the kcore ELF header's e_machine; None if unknown."""
        try:
            head = self._bytes("proc/kcore", 20)
        except MachineError:
            return None
        if not head or len(head) < 20 or head[:4] != ELF_MAGIC:
            return None
        return KCORE_ARCHES.get(struct.unpack_from("<H", head, 18)[0])

    @cached_property
    def machine_arch(self) -> Optional[str]:
        """`uname -m` of the machine: snapshot.json's "machine", os.uname() for root "/",
        else None (a folder that does not say)."""
        info = self.snapshot_info
        if info and info.get("machine"):
            recorded = str(info["machine"])
            kernel = self._kcore_arch()
            if kernel is not None and crashmem.lowmem_limit_for(recorded) is None \
                    and recorded != kernel:
                raise MachineError(
                    f"{self.path('snapshot.json')}: machine {recorded!r} but "
                    f"{self.path('proc/kcore')} is an {kernel} kernel's (a snapshot taken "
                    f"with the host's architecture?)", self.path("snapshot.json"))
            if kernel == "x86_64" and crashmem.lowmem_limit_for(recorded) is not None:
                raise MachineError(
                    f"{self.path('snapshot.json')}: machine {recorded!r} but "
                    f"{self.path('proc/kcore')} is an x86_64 kernel's", self.path("snapshot.json"))
            return recorded
        if self.root == os.path.abspath(os.sep):
            return os.uname().machine
        return None


KCORE_ARCHES = {62: "x86_64", 3: "i386"}  # e_machine of a kcore ELF header


def _parse_decimal(text: str) -> int:
    s = text.strip()
    if not s.isdigit():
        raise ValueError(s)
    return int(s)


def _parse_flag(text: str) -> bool:
    value = _parse_decimal(text)
    if value not in (0, 1):
        raise ValueError(text)
    return bool(value)
