"""The elfcorehdr builder (pykexec.core.elfcore) and the crash memory rules (pykexec.arch.x86.crashmem).

Expected numbers come from kexec-tools-x86.md section 9 (a real Debian kexec run on a QEMU
guest): crash region 0x2e000000-0x3dffffff, backup 0x1000+0x9ec00 copied to 0x3df61000,
elfcorehdr at 0x3df5d000.
"""

import io
import struct

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st

from pykexec.arch import machine_core_header
from pykexec.arch.x86.crashmem import (
    BackupArea, CrashMemoryError, E820Entry, backup_area, backup_segment_size,
    capture_memory_map, core_class_for, crash_iomem_type, crash_memory_ranges,
    elfcorehdr_memsz, lowmem_limit_for,
)
from pykexec.core.elfcore import (
    ElfCoreError, ElfLoad, ElfNote, build_core_header, crash_core_header,
)
from pykexec.core.ranges import MemoryRegion, MemType, Range, RangeSet
from pykexec.abi.elf import (
    ELFCLASS32, ELFCLASS64, EM_386, EM_X86_64, PT_LOAD, PT_NOTE, parse_core_header,
)
from pykexec.arch.x86.crashfacts import backup_area as x86_backup_area
from pykexec.arch.x86.crashfacts import cpu_notes as x86_cpu_notes
from pykexec.arch.x86.crashfacts import crash_memory_ranges as x86_crash_memory_ranges
from pykexec.arch.x86.kerneltext import kernel_text as x86_kernel_text
from pykexec.arch.x86.kerneltext import page_offset as x86_page_offset
from tests.unit.test_machine import make_machine

RAM, RSV, ACPI, NVS, PMEM, PRAM = (MemType.RAM, MemType.RESERVED, MemType.ACPI, MemType.NVS,
                                   MemType.PMEM, MemType.PRAM)
CRASH = Range.from_inclusive(0x2E000000, 0x3DFFFFFF)
BACKUP_START = 0x3DF61000
ELFCOREHDR = 0x3DF5D000
X86_64_PAGE_OFFSET = 0xFFFF888000000000


def inc(first, last, kind=RAM):
    return MemoryRegion(Range.from_inclusive(first, last), kind)


def iomem_lines(*items):
    return [(Range.from_inclusive(a, b), name) for a, b, name in items]


# The trace's crash ranges (/proc/iomem of the QEMU guest minus the crash region).
TRACE_RANGES = (
    inc(0x0, 0xFFF, RSV), inc(0x1000, 0x9FBFF), inc(0x9FC00, 0x9FFFF, RSV),
    inc(0xF0000, 0xFFFFF, RSV), inc(0x100000, 0x2DFFFFFF), inc(0x3E000000, 0x3FFDFFFF),
    inc(0x3FFE0000, 0x3FFFFFFF, RSV), inc(0xB0000000, 0xBFFFFFFF, RSV),
    inc(0xFEE00000, 0xFEE00FFF, RSV), inc(0xFFFC0000, 0xFFFFFFFF, RSV),
)


def trace_header(**kw):
    args = dict(elfclass=ELFCLASS64, machine=EM_X86_64, nr_cpus=1,
                cpu_notes=[(0, 0x3FC1B000, 0x1A8)], vmcoreinfo=(0x3F6B4000, 0x1024),
                kernel_text=(0x1000000, 0xFFFFFFFF81000000, 0x2000000),
                crash_ranges=TRACE_RANGES, page_offset=X86_64_PAGE_OFFSET,
                backup_src=BackupArea(0x1000, 0x9EC00), backup_start=BACKUP_START)
    args.update(kw)
    return crash_core_header(**args)


u16 = lambda d, o: struct.unpack_from("<H", d, o)[0]
u32 = lambda d, o: struct.unpack_from("<I", d, o)[0]
u64 = lambda d, o: struct.unpack_from("<Q", d, o)[0]


# -- ELF header bytes (kexec-tools-x86.md 9.7) ---------------------------------------------

def test_trace_ehdr_bytes():
    d = trace_header().data
    assert len(d) == 1024
    assert d[0:16] == bytes([0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0]) + bytes(8)
    assert u16(d, 16) == 4 and u16(d, 18) == 62 and u32(d, 20) == 1
    assert u64(d, 24) == 0 and u64(d, 32) == 64 and u64(d, 40) == 0
    assert u32(d, 48) == 0 and u16(d, 52) == 64 and u16(d, 54) == 56
    assert d[58:64] == bytes(6)
    # 1 CPU + vmcoreinfo + kernel text + 3 RAM ranges
    assert u16(d, 56) == 1 + 1 + 1 + 3


def test_trace_phdrs():
    h = trace_header()
    d = h.data
    rows = []
    for i in range(u16(d, 56)):
        rows.append(struct.unpack_from("<IIQQQQQQ", d, 64 + 56 * i))
    # (p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align)
    assert rows == [
        (PT_NOTE, 0, 0x3FC1B000, 0, 0x3FC1B000, 0x1A8, 0x1A8, 0),
        (PT_NOTE, 0, 0x3F6B4000, 0, 0x3F6B4000, 0x1024, 0x1024, 0),
        (PT_LOAD, 7, 0x1000000, 0xFFFFFFFF81000000, 0x1000000, 0x2000000, 0x2000000, 0),
        (PT_LOAD, 7, 0x3DF61000, X86_64_PAGE_OFFSET + 0x1000, 0x1000, 0x9EC00, 0x9EC00, 0),
        (PT_LOAD, 7, 0x100000, X86_64_PAGE_OFFSET + 0x100000, 0x100000, 0x2DF00000, 0x2DF00000, 0),
        (PT_LOAD, 7, 0x3E000000, X86_64_PAGE_OFFSET + 0x3E000000, 0x3E000000, 0x1FE0000, 0x1FE0000, 0),
    ]
    assert rows[2][3] % 0x100000 == 0
    end = 64 + 56 * len(rows)
    assert d[end:] == bytes(1024 - end)  # the reserved slack stays zero


def test_trace_descriptions():
    h = trace_header()
    assert [p.what for p in h.phdrs] == [
        "CPU 0 notes", "vmcoreinfo", "kernel text",
        "RAM 0x1000-0x9fc00 (backup copy at 0x3df61000)", "RAM 0x100000-0x2e000000",
        "RAM 0x3e000000-0x3ffe0000"]
    text = h.describe()
    assert "6 program headers in 0x400 bytes" in text and "kernel text" in text
    assert h.phdr_slots == 1 + 1 + 1 + len(TRACE_RANGES)


def test_pyelftools_reads_the_header():
    h = trace_header()
    elf = ELFFile(io.BytesIO(h.data))
    assert elf.elfclass == 64 and elf["e_type"] == "ET_CORE" and elf["e_machine"] == "EM_X86_64"
    segs = [(s["p_type"], s["p_offset"], s["p_paddr"], s["p_memsz"]) for s in elf.iter_segments()]
    assert segs[0] == ("PT_NOTE", 0x3FC1B000, 0x3FC1B000, 0x1A8)
    assert segs[3] == ("PT_LOAD", BACKUP_START, 0x1000, 0x9EC00)
    ehdr, phdrs = parse_core_header(h.data)
    assert ehdr.e_phnum == 6 and [p.p_paddr for p in phdrs] == [p.p_paddr for p in h.phdrs]


@pytest.mark.parametrize("nr_cpus,n_ranges,size", [
    (1, 10, 1024),     # 64 + 14*56 = 848
    (2, 20, 2048),     # 64 + 24*56 = 1408 -> 2048
    (64, 300, 21504),  # 64 + 366*56 = 20560 -> 21504
])
def test_buffer_size_counts_every_range(nr_cpus, n_ranges, size):
    ranges = [inc(0x100000 * (i + 1), 0x100000 * (i + 1) + 0xFFFFF, RSV if i % 2 else RAM)
              for i in range(n_ranges)]
    h = trace_header(nr_cpus=nr_cpus, crash_ranges=ranges)
    assert len(h.data) == size and h.data[64 + 56 * len(h.phdrs):] == bytes(size - 64 - 56 * len(h.phdrs))
    assert len([p for p in h.phdrs if p.p_type == PT_LOAD]) == 1 + (n_ranges + 1) // 2


def test_cpus_without_notes_still_reserve_slots():
    h = trace_header(nr_cpus=4, cpu_notes=[(0, 0x1000, 0x170), (3, 0x2000, 0x170)])
    assert [p.what for p in h.phdrs[:2]] == ["CPU 0 notes", "CPU 3 notes"]
    assert h.phdr_slots == 4 + 1 + 1 + len(TRACE_RANGES)


def test_no_vmcoreinfo_no_kernel_text_no_backup():
    h = trace_header(vmcoreinfo=None, kernel_text=None, backup_start=None)
    assert [p.what for p in h.phdrs][:2] == ["CPU 0 notes", "RAM 0x1000-0x9fc00"]
    assert h.phdrs[1].p_offset == 0x1000
    assert h.phdr_slots == 1 + len(TRACE_RANGES)


def test_backup_offset_needs_an_exact_match():
    h = trace_header(backup_src=BackupArea(0x1000, 0x9E000))
    assert h.phdrs[3].p_offset == 0x1000


def test_too_many_notes_for_the_slots():
    with pytest.raises(ElfCoreError, match="exceed"):
        trace_header(nr_cpus=0, crash_ranges=[])


def test_from_machine(tmp_path):
    """Machine facts feed the builder directly."""
    m = make_machine(tmp_path)
    ranges = x86_crash_memory_ranges(m)
    kt = x86_kernel_text(m)
    h = crash_core_header(ELFCLASS64, EM_X86_64, m.nr_cpus_conf, x86_cpu_notes(m), m.vmcoreinfo,
                          (kt.paddr, kt.vaddr, kt.size), ranges, kt.page_offset,
                          x86_backup_area(m), BACKUP_START)
    assert [p.what for p in h.phdrs][:4] == ["CPU 0 notes", "CPU 1 notes", "vmcoreinfo", "kernel text"]
    assert h.phdrs[4].p_offset == BACKUP_START and h.phdrs[4].p_vaddr == kt.page_offset + 0x1000


# -- ELF32 (i386) --------------------------------------------------------------------------

# 2 GiB i386 machine, crash region 0x20000000-0x2fffffff, split at the 0x38000000 lowmem limit
I386_RANGES = (inc(0x1000, 0x9FBFF), inc(0x100000, 0x1FFFFFFF), inc(0x30000000, 0x37FFFFFF),
               inc(0x38000000, 0x7FFDFFFF), inc(0x7FFE0000, 0x7FFFFFFF, RSV))


def i386_header(ranges=I386_RANGES, elfclass=ELFCLASS32):
    return crash_core_header(elfclass, EM_386, 2, [(0, 0x1A2B000, 1024), (1, 0x1A2B400, 1024)],
                             (0x1F00000, 0x1000), None, ranges, 0xC0000000,
                             BackupArea(0x1000, 0x9EC00), 0x2FF61000, lowmem_limit=0x38000000)


def test_elf32_layout():
    h = i386_header()
    d = h.data
    assert d[4] == 1 and u16(d, 18) == 3
    assert u32(d, 28) == 52 and u16(d, 40) == 52 and u16(d, 42) == 32 and u16(d, 44) == 2 + 1 + 4
    assert len(d) == 1024  # 52 + (2 + 1 + 5) * 32 = 308
    rows = [struct.unpack_from("<8I", d, 52 + 32 * i) for i in range(u16(d, 44))]
    # ELF32 order: p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align
    assert rows[0] == (PT_NOTE, 0x1A2B000, 0, 0x1A2B000, 1024, 1024, 0, 0)
    assert rows[3] == (PT_LOAD, 0x2FF61000, 0xC0001000, 0x1000, 0x9EC00, 0x9EC00, 7, 0)
    assert rows[5] == (PT_LOAD, 0x30000000, 0xF0000000, 0x30000000, 0x8000000, 0x8000000, 7, 0)
    # above the lowmem limit: no virtual address (all ones)
    assert rows[6][2] == 0xFFFFFFFF and "highmem" in h.phdrs[6].what
    elf = ELFFile(io.BytesIO(d))
    assert elf.elfclass == 32 and elf.num_segments() == 7


def test_elf64_on_i386_keeps_all_ones():
    h = i386_header(elfclass=ELFCLASS64)
    assert h.phdrs[6].p_vaddr == 0xFFFFFFFFFFFFFFFF


def test_elf32_refuses_addresses_above_4g():
    ranges = I386_RANGES + (inc(0x100000000, 0x13FFFFFFF),)
    with pytest.raises(ElfCoreError, match=r"RAM 0x100000000-0x140000000 \(highmem, no vaddr\): "
                                           r"p_offset 0x100000000 does not fit an ELF32 core "
                                           r"header \(use ELF64 headers\)"):
        i386_header(ranges)


@pytest.mark.parametrize("arch,ranges,forced,expected", [
    ("x86_64", I386_RANGES, ELFCLASS32, ELFCLASS64),  # x86_64 ignores --elf32-core-headers
    ("i386", I386_RANGES, None, ELFCLASS32),
    ("i386", I386_RANGES + (inc(0x100000000, 0x13FFFFFFF),), None, ELFCLASS64),
    ("i386", (), None, ELFCLASS64),
    ("i386", I386_RANGES, ELFCLASS64, ELFCLASS64),
    # only the last range decides (iomem order)
    ("i386", (inc(0x100000000, 0x13FFFFFFF), inc(0x1000, 0x9FBFF)), None, ELFCLASS32),
])
def test_core_class(arch, ranges, forced, expected):
    assert core_class_for(arch, ranges, forced) == expected


def test_build_core_header_generic():
    h = build_core_header(ELFCLASS64, EM_X86_64, [ElfNote(0x1000, 0x100, "n")],
                          [ElfLoad(0x2000, 0x1000, None, "l", offset=0x9000)], phdr_slots=3, align=512)
    assert len(h.data) == 512 and h.phdrs[1].p_vaddr == (1 << 64) - 1 and h.phdrs[1].p_offset == 0x9000
    with pytest.raises(ElfCoreError, match="do not fit 1 slots"):
        build_core_header(ELFCLASS64, EM_X86_64, [ElfNote(0, 1, "a"), ElfNote(0, 1, "b")], [], 1)


# -- crash memory ranges (kexec-tools-x86.md 3.3, 9.10) ---------------------------------------

@pytest.mark.parametrize("name,kind", [
    ("System RAM", RAM), ("System RAM (kmem)", RAM), ("System RAM (virtio_mem)", RAM),
    ("ACPI Tables", ACPI), ("ACPI Non-volatile Storage", NVS), ("Persistent Memory", PMEM),
    ("Persistent Memory (legacy)", PRAM), ("reserved", RSV), ("Reserved", RSV),
    ("RESERVED", None), ("Crash kernel", None), ("Kernel code", None), ("GART", None),
    ("PCI Bus 0000:00", None),
])
def test_crash_iomem_type(name, kind):
    assert crash_iomem_type(name) == kind


def test_exclude_region_from_the_trace():
    got = crash_memory_ranges(iomem_lines((0x100000, 0x3FFDFFFF, "System RAM")), [CRASH])
    assert got == (inc(0x100000, 0x2DFFFFFF), inc(0x3E000000, 0x3FFDFFFF))


@pytest.mark.parametrize("lines,crash,expected", [
    # crash region at the start / end of a range trims it
    ([(0x100000, 0x3FFFFFFF, "System RAM")], [(0x100000, 0x1FFFFFFF)], [inc(0x20000000, 0x3FFFFFFF)]),
    ([(0x100000, 0x3FFFFFFF, "System RAM")], [(0x20000000, 0x3FFFFFFF)], [inc(0x100000, 0x1FFFFFFF)]),
    # a split's upper part is typed RAM whatever the range was (kexec-tools quirk)
    ([(0x100000, 0x3FFFFFFF, "reserved")], [(0x20000000, 0x2FFFFFFF)],
     [inc(0x100000, 0x1FFFFFFF, RSV), inc(0x30000000, 0x3FFFFFFF, RAM)]),
    # a crash region covering a whole range leaves nothing
    ([(0x100000, 0x1FFFFF, "System RAM"), (0x200000, 0x2FFFFF, "System RAM")], [(0x100000, 0x1FFFFF)],
     [inc(0x200000, 0x2FFFFF)]),
    # non-matching names are ignored; GART (the last one) is excluded
    ([(0x0, 0xFFF, "Reserved"), (0x100000, 0xBFFFFFFF, "System RAM"), (0x80000000, 0x83FFFFFF, "GART"),
      (0x90000000, 0x93FFFFFF, "GART"), (0xC0000000, 0xC0000FFF, "PCI")], [],
     [inc(0x0, 0xFFF, RSV), inc(0x100000, 0x8FFFFFFF), inc(0x94000000, 0xBFFFFFFF)]),
    # high and low crash regions both removed; nested System RAM (kmem) kept as RAM
    ([(0x100000, 0xBFFFFFFF, "System RAM"), (0x100000000, 0x4FFFFFFFF, "System RAM"),
      (0x500000000, 0x5FFFFFFFF, "Persistent Memory"), (0x500000000, 0x5FFFFFFFF, "System RAM (kmem)")],
     [(0xA0000000, 0xAFFFFFFF), (0x400000000, 0x43FFFFFFF)],
     [inc(0x100000, 0x9FFFFFFF), inc(0xB0000000, 0xBFFFFFFF), inc(0x100000000, 0x3FFFFFFFF),
      inc(0x440000000, 0x4FFFFFFFF), inc(0x500000000, 0x5FFFFFFFF, PMEM), inc(0x500000000, 0x5FFFFFFFF)]),
])
def test_crash_memory_ranges_table(lines, crash, expected):
    got = crash_memory_ranges(iomem_lines(*lines), [Range.from_inclusive(a, b) for a, b in crash])
    assert list(got) == expected


@pytest.mark.parametrize("first,last,expected", [
    (0x100000, 0x7FFFFFFF, [(0x100000, 0x37FFFFFF), (0x38000000, 0x7FFFFFFF)]),
    (0x100000, 0x37FFFFFF, [(0x100000, 0x37FFFFFF)]),
    (0x38000000, 0x7FFFFFFF, [(0x38000000, 0x7FFFFFFF)]),
    # strictly inside: start < limit < inclusive end; a range whose last byte is the limit
    # is not split (kexec-tools compares with the inclusive end)
    (0x100000, 0x38000000, [(0x100000, 0x38000000)]),
    (0x100000, 0x38000001, [(0x100000, 0x37FFFFFF), (0x38000000, 0x38000001)]),
])
def test_lowmem_split(first, last, expected):
    got = crash_memory_ranges(iomem_lines((first, last, "System RAM")), [], lowmem_limit_for("i386"))
    assert [(r.range.start, r.range.last) for r in got] == expected
    assert lowmem_limit_for("x86_64") is None and lowmem_limit_for("i686") == 0x38000000


@pytest.mark.parametrize("ranges,expected", [
    (TRACE_RANGES, (0x1000, 0x9EC00)),
    ((inc(0x100000, 0x3FFFFFFF),), (0, 0xA0000)),             # 9.10: no low RAM -> default
    ((inc(0x0, 0x9FFFF, RSV), inc(0x0, 0x9FFFF)), (0, 0xA0000)),
    ((inc(0x1000, 0xA0000),), (0x1000, 0x9F001)),             # inclusive end 0xa0000 still counts
    ((inc(0x1000, 0xA0001),), (0, 0xA0000)),
])
def test_backup_area(ranges, expected):
    assert backup_area(ranges) == expected


# -- capture e820 (kexec-tools-x86.md 3.8, 9.5) -----------------------------------------------

def trace_capture_map(**kw):
    args = dict(backup_src=BackupArea(0x1000, 0x9EC00), crash_regions=[CRASH],
                crash_ranges=TRACE_RANGES, backup_start=BACKUP_START,
                elfcorehdr=Range.from_size(ELFCOREHDR, elfcorehdr_memsz(1024)))
    args.update(kw)
    return capture_memory_map(**args)


def test_trace_capture_e820():
    cmap = trace_capture_map()
    entries = cmap.entries
    assert (0x1000, 0x9EC00, 1) in entries
    assert (0x2E000000, 0xFF5D000, 1) in entries   # crash region minus elfcorehdr and backup
    assert (0x3DFFFC00, 0x400, 1) in entries       # the 1 KiB fragment above the backup copy
    assert entries == (
        E820Entry(0x0, 0x1000, 2), E820Entry(0x1000, 0x9EC00, 1), E820Entry(0x9FC00, 0x400, 2),
        E820Entry(0xF0000, 0x10000, 2), E820Entry(0x2E000000, 0xFF5D000, 1),
        E820Entry(0x3DFFFC00, 0x400, 1), E820Entry(0x3FFE0000, 0x20000, 2),
        E820Entry(0xB0000000, 0x10000000, 2), E820Entry(0xFEE00000, 0x1000, 2),
        E820Entry(0xFFFC0000, 0x40000, 2))
    for a, b in zip(entries, entries[1:]):
        assert a.addr + a.size <= b.addr  # sorted, no overlaps
    ram = [Range.from_size(e.addr, e.size) for e in entries if e.type == 1]
    assert not any(r.overlaps(Range(0x100000, 0x2E000000)) or r.overlaps(Range(0x3E000000, 0x3FFE0000))
                   for r in ram)
    for r in TRACE_RANGES:
        if r.type is RSV:
            assert (r.start, r.size, 2) in entries
    assert cmap.messages == ()
    assert cmap.regions[1] == inc(0x1000, 0x9FBFF)


def test_elfcorehdr_memsz():
    assert elfcorehdr_memsz(1024) == 16384
    assert elfcorehdr_memsz(17408) == 17408
    assert elfcorehdr_memsz(1024, hotplug_size=5000) == 5120
    assert backup_segment_size(BackupArea(0x1000, 0x9EC00)) == 0x9EC00
    assert backup_segment_size(BackupArea(0x1000, 0x9EB01)) == 0x9EC00


def test_unaligned_ram_is_shrunk_with_messages():
    cmap = trace_capture_map(backup_src=BackupArea(0x1100, 0x9EA00), backup_start=None)
    assert (0x1400, 0x9E400, 1) in cmap.entries
    assert cmap.messages == ("add_memmap: RAM chunk 0x1100 - 0x9fb00 unaligned",
                             "add_memmap: RAM chunk shrunk to 0x1400 - 0x9f800")


def test_without_backup_segment():
    cmap = trace_capture_map(backup_start=None)
    assert (0x2E000000, 0xFF5D000, 1) in cmap.entries
    assert (0x3DF61000, 0x9F000, 1) in cmap.entries  # nothing deleted above the header


def test_page_multiple_backup_leaves_no_fragment():
    cmap = trace_capture_map(backup_src=BackupArea(0x1000, 0x9F000))
    assert [e for e in cmap.entries if e.addr >= 0x3DF61000 and e.addr < 0x3E000000] == []


def test_two_crash_regions_and_typed_ranges():
    low = Range.from_inclusive(0xAB000000, 0xBAFFFFFF)
    high = Range.from_inclusive(0x43C000000, 0x43FFFFFFF)
    ranges = (inc(0x1000, 0x9FBFF), inc(0x7FFF0000, 0x7FFFFFFF, ACPI), inc(0x7FFEC000, 0x7FFEFFFF, NVS),
              inc(0x500000000, 0x5FFFFFFFF, PMEM), inc(0x600000000, 0x6FFFFFFFF, PRAM),
              inc(0x43E000000, 0x43E000FFF, RSV))  # overlaps crash RAM: silently not added
    cmap = capture_memory_map(BackupArea(0x1000, 0x9EC00), [low, high], ranges,
                              0x43FF61000, Range.from_size(0x43FF5D000, 0x4000))
    assert cmap.entries == (
        E820Entry(0x1000, 0x9EC00, 1), E820Entry(0x7FFEC000, 0x4000, 4),
        E820Entry(0x7FFF0000, 0x10000, 3), E820Entry(0xAB000000, 0x10000000, 1),
        E820Entry(0x43C000000, 0x3F5D000, 1), E820Entry(0x43FFFFC00, 0x400, 1),
        E820Entry(0x500000000, 0x100000000, 7), E820Entry(0x600000000, 0x100000000, 12))


@pytest.mark.parametrize("kw,pattern", [
    (dict(crash_regions=[Range(0x80000, 0x200000)]), "crash region 0x80000-0x1fffff cannot be added"),
    (dict(backup_start=0x10000000), "backup segment 0x10000000"),
    (dict(backup_start=0x3DF61200), "backup segment 0x3df61200"),   # not KiB-aligned
    (dict(elfcorehdr=Range.from_size(0x3DF5D000, 0x4000 + 0xA0000)), "elfcorehdr 0x3df5d000"),
    (dict(elfcorehdr=Range.from_size(0x3DF5D100, 0x4000)), "elfcorehdr 0x3df5d100"),
])
def test_capture_map_errors(kw, pattern):
    with pytest.raises(CrashMemoryError, match=pattern):
        trace_capture_map(**kw)


def test_capture_map_from_machine(tmp_path):
    m = make_machine(tmp_path)
    ranges = x86_crash_memory_ranges(m)
    cmap = capture_memory_map(x86_backup_area(m), m.crash_regions, ranges, BACKUP_START,
                              Range.from_size(ELFCOREHDR, elfcorehdr_memsz(1024)))
    assert cmap.entries == trace_capture_map().entries


# -- properties ----------------------------------------------------------------------------

MiB = 1 << 20


@st.composite
def machines(draw):
    """Top-level RAM/reserved ranges with crash regions strictly inside RAM ranges."""
    n = draw(st.integers(1, 6))
    lines, crash, at = [], [], 0x100000
    for _ in range(n):
        size = draw(st.integers(64, 512)) * MiB
        name = draw(st.sampled_from(["System RAM", "System RAM", "reserved", "ACPI Tables"]))
        lines.append((at, at + size - 1, name))
        if name == "System RAM" and draw(st.booleans()) and len(crash) < 2:
            cstart = at + draw(st.integers(1, size // MiB - 33)) * MiB
            crash.append(Range(cstart, cstart + 16 * MiB * draw(st.integers(1, 2))))
        at += size + draw(st.integers(0, 4)) * MiB
    return lines, crash


@settings(max_examples=150)
@given(machines())
def test_crash_ranges_are_ram_minus_crash(machine):
    lines, crash = machine
    got = crash_memory_ranges(iomem_lines(*lines), crash)
    ram = RangeSet(Range.from_inclusive(a, b) for a, b, n in lines if n == "System RAM")
    assert RangeSet(r.range for r in got if r.type is RAM) == ram.minus(crash)
    assert not any(r.range.overlaps(c) for r in got for c in crash)
    others = [(r.range, r.type) for r in got if r.type is not RAM]
    assert others == [(Range.from_inclusive(a, b), crash_iomem_type(n)) for a, b, n in lines
                      if n != "System RAM"]


@settings(max_examples=150)
@given(st.integers(1, 64), st.integers(1, 64), st.integers(1, 0x9F), st.integers(1, 16))
def test_capture_map_properties(crash_mib, backup_pages, backup_kib_short, hdr_kib):
    crash = Range(0x40000000, 0x40000000 + crash_mib * 16 * MiB)
    backup_src = BackupArea(0x1000, 0x9F000 - backup_kib_short * 0x400 + 0x400)
    bsize = backup_segment_size(backup_src)
    backup_start = crash.end - (bsize + 0xFFF) // 0x1000 * 0x1000 - backup_pages * 0x1000
    hdr = Range.from_size(backup_start - 0x4000 - hdr_kib * 0x1000, elfcorehdr_memsz(hdr_kib * 1024))
    ranges = (inc(0x0, 0xFFF, RSV), MemoryRegion(backup_src.range, RAM), inc(0xF0000, 0xFFFFF, RSV))
    cmap = capture_memory_map(backup_src, [crash], ranges, backup_start, hdr)
    entries = cmap.entries
    for a, b in zip(entries, entries[1:]):
        assert a.addr + a.size <= b.addr
    for e in entries:
        r = Range.from_size(e.addr, e.size)
        assert not r.overlaps(hdr) and not r.overlaps(Range.from_size(backup_start, bsize))
        if e.type == 1:
            assert e.addr % 1024 == 0 and e.size % 1024 == 0
    usable = RangeSet(Range.from_size(e.addr, e.size) for e in entries if e.type == 1)
    assert usable == RangeSet([crash]).minus([hdr, Range.from_size(backup_start, bsize)]).union(
        [backup_src.range.align_in(1024)])


def test_machine_core_header_x86_64(tmp_path):
    m = make_machine(tmp_path)
    h = machine_core_header(m, "x86_64", BACKUP_START)
    assert h.elfclass == ELFCLASS64 and h.machine == EM_X86_64
    assert [p.what for p in h.phdrs][:4] == ["CPU 0 notes", "CPU 1 notes", "vmcoreinfo", "kernel text"]
    assert h.phdrs[3].p_paddr == x86_kernel_text(m).paddr
    assert h.phdrs[4].p_offset == BACKUP_START and h.phdrs[4].p_vaddr == x86_page_offset(m) + 0x1000


def test_machine_core_header_i386(tmp_path):
    iomem = ("00001000-0009fbff : System RAM\n00100000-7ffdffff : System RAM\n"
             "  20000000-2fffffff : Crash kernel\n7ffe0000-7fffffff : Reserved\n")
    m = make_machine(tmp_path, **{"proc/iomem": iomem, "proc/kcore": None})
    h = machine_core_header(m, "i386", 0x2FF61000)
    assert h.elfclass == ELFCLASS32 and h.machine == EM_386
    assert [p.what for p in h.phdrs] == [
        "CPU 0 notes", "CPU 1 notes", "vmcoreinfo",
        "RAM 0x1000-0x9fc00 (backup copy at 0x2ff61000)", "RAM 0x100000-0x20000000",
        "RAM 0x30000000-0x38000000", "RAM 0x38000000-0x7ffe0000 (highmem, no vaddr)"]
    assert h.phdrs[4].p_vaddr == 0xC0100000 and h.phdrs[6].p_vaddr == 0xFFFFFFFF
    assert machine_core_header(m, "i386", 0x2FF61000, ELFCLASS64).elfclass == ELFCLASS64


def test_capture_map_describe():
    lines = trace_capture_map().describe().splitlines()
    assert lines[1] == "00001000-0009fbff      0x9ec00 System RAM (e820 1)"
    assert lines[5] == "3dfffc00-3dffffff        0x400 System RAM (e820 1)"


def test_machine_core_header_other_arch(tmp_path):
    with pytest.raises(ElfCoreError, match="unsupported crashdump architecture: arm64"):
        machine_core_header(make_machine(tmp_path), "arm64", None)
