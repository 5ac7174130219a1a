"""pykexec.vmcore.dump on synthetic vmcores built from the ELF and kernel layouts
(tests/unit/_vmcore.py), and on the real vmcore head in examples/."""

from __future__ import annotations

import os
import struct

import pytest

from pykexec.vmcore import Vmcore, VmcoreError
from tests.unit._vmcore import (EM_386, EM_X86_64, ET_EXEC, Mem, core, note, prstatus_i386,
                                prstatus_x86_64, vmcoreinfo)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE_OFFSET = 0xFFFF888000000000
TEXT = 0xFFFFFFFF81000000
PHYS_BASE = 0x3000000
TEXT_PHYS = 0x1000000 + PHYS_BASE        # TEXT - __START_KERNEL_map + phys_base
VMALLOC = 0xFFFFC90000000000
P = 1                                    # present
PS = 0x80                                # large page
NX = 1 << 63


def idx(vaddr, shift, bits=9):
    return (vaddr >> shift) & ((1 << bits) - 1)


def x86_64_dump(tmp_path, levels=4, extra_info=(), name="core64"):
    mem = Mem()
    mem.add(0, 0x200000, vaddr=PAGE_OFFSET)                 # RAM, direct-mapped
    mem.add(TEXT_PHYS, 0x10000, vaddr=TEXT)                  # kernel text
    mem.add(0x800000, 0x1000, vaddr=PAGE_OFFSET + 0x800000, memsz=0x3000)  # zero tail
    top = TEXT_PHYS + 0x1000
    tables = [top + 0x1000 * i for i in range(levels)]       # top, ..., PT
    shifts = [48, 39, 30, 21, 12][5 - levels:]
    v = VMALLOC + 0x5000
    for level in range(levels - 1):
        mem.put(tables[level] + 8 * idx(v, shifts[level]), struct.pack("<Q", tables[level + 1] | P))
    mem.put(tables[-1] + 8 * idx(v, 12), struct.pack("<Q", 0x7000 | P | NX))
    # a 2 MiB page one PD entry further (PD is tables[-2])
    mem.put(tables[-2] + 8 * idx(v + 0x200000, 21), struct.pack("<Q", 0x0 | P | PS))
    # a 1 GiB page one PDPT entry further
    mem.put(tables[-3] + 8 * idx(v + 0x40000000, 30), struct.pack("<Q", 0x80000000 | P | PS))
    mem.put(0x7000, b"vmalloc page!")
    mem.put(0x1234, b"inside the 2M page")
    mem.put(TEXT_PHYS + 0x100, b"kernel text bytes")
    mem.put(0x10000, b"direct map")
    info = [("OSRELEASE", "6.1.0-test"), ("PAGESIZE", "4096"),
            ("SYMBOL(init_top_pgt)", f"{TEXT + 0x1000:x}"), ("NUMBER(phys_base)", str(PHYS_BASE)),
            ("NUMBER(pgtable_l5_enabled)", "1" if levels == 5 else "0"),
            ("OFFSET(printk_info.seq)", "0"), ("SIZE(printk_info)", "88"),
            ("LENGTH(free_area.free_list)", "5"), ("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", "-129"),
            ("KERNELOFFSET", "1000000"), *extra_info, ("CRASHTIME", "1795675538")]
    notes = [note("CORE", 1, prstatus_x86_64(0, {"rip": TEXT + 0x10, "rsp": PAGE_OFFSET + 0x9000,
                                                 "rax": 0x1111})),
             note("CORE", 1, prstatus_x86_64(42, {"rip": TEXT + 0x20, "rsp": 0x55, "r15": 7})),
             note("VMCOREINFO", 0, vmcoreinfo(info, trailing_newline=False))]
    path = tmp_path / name
    path.write_bytes(core(mem, notes))
    return path


def test_elf64_headers_notes_and_vmcoreinfo(tmp_path):
    with Vmcore.open(str(x86_64_dump(tmp_path))) as d:
        assert d.elfclass == 64 and d.machine == EM_X86_64 and d.pointer_size == 8
        assert [(ld.paddr, ld.memsz) for ld in d.loads] == [(0, 0x200000), (0x800000, 0x3000),
                                                           (TEXT_PHYS, 0x10000)]
        assert len(d.cpus) == 2
        assert d.cpus[0].pc == TEXT + 0x10 and d.cpus[0].regs["rax"] == 0x1111
        assert d.cpus[1].pid == 42 and d.cpus[1].regs["r15"] == 7 and d.cpus[1].sp == 0x55
        info = d.vmcoreinfo
        assert info.osrelease == "6.1.0-test" and info.page_size == 4096
        assert info.symbol("init_top_pgt") == TEXT + 0x1000
        assert info.offset("printk_info", "seq") == 0 and info.size("printk_info") == 88
        assert info.length("free_area.free_list") == 5
        assert info.number("PAGE_BUDDY_MAPCOUNT_VALUE") == -129
        assert info.kernel_offset == 0x1000000
        assert info.crash_time == 1795675538          # last line without its newline
        assert info.symbol("nothing") is None
        assert d.missing() == []


def test_read_phys_zero_copy_zero_fill_and_bounds(tmp_path):
    with Vmcore.open(str(x86_64_dump(tmp_path))) as d:
        view = d.read_phys(0x10000, 10)
        assert isinstance(view, memoryview) and bytes(view) == b"direct map"
        # past p_filesz, inside p_memsz: zeros
        assert bytes(d.read_phys(0x800FF0, 0x20)) == bytes(0x20)
        with pytest.raises(VmcoreError, match=r"0x200000 is not in the dump"):
            d.read_phys(0x1FFFF0, 0x20)
        chunks = list(d.iter_phys(0, 0x200000, chunk=0x80000))
        assert [len(c) for c in chunks] == [0x80000] * 4


@pytest.mark.parametrize("levels", [4, 5])
def test_x86_64_translation(tmp_path, levels):
    with Vmcore.open(str(x86_64_dump(tmp_path, levels))) as d:
        assert d.kvtop(TEXT + 0x100) == TEXT_PHYS + 0x100
        assert d.read_virt(TEXT + 0x100, 17) == b"kernel text bytes"
        assert d.kvtop(PAGE_OFFSET + 0x10000) == 0x10000
        v = VMALLOC + 0x5000
        assert d.kvtop(v + 3) == 0x7003                       # NX bit dropped
        assert bytes(d.read_virt(v, 13)) == b"vmalloc page!"
        assert d.kvtop(v + 0x200000 + 0x1234 - 0x5000) == 0x1234  # 2 MiB page
        assert d.kvtop(v + 0x40000000 + 0x12345) == 0x80000000 + 0x5000 + 0x12345
        assert d.kvtop(v + 0x1000) is None                   # PTE not present
        with pytest.raises(VmcoreError, match="not mapped"):
            d.read_virt(v + 0x1000, 4)
        assert d.read_ulong(PAGE_OFFSET + 0x10000) == struct.unpack("<Q", b"direct m")[0]


@pytest.mark.parametrize("levels", [4, 5])
def test_x86_64_translation_extent(tmp_path, levels):
    """kvtop_extent: the physical address and how far the same mapping goes on (a struct
    page array is read once a mapping); every byte of the extent translates linearly, and
    where a page-table mapping ends, the next byte is another (here unmapped) page."""
    v = VMALLOC + 0x5000
    ram_end = TEXT_PHYS + 0x10000                 # the highest PT_LOAD end: the direct map's
    cases = [
        (v + 3, 0x7003, 0x1000 - 3, True),                                 # 4 KiB PTE
        (VMALLOC + 0x200000 + 0x1234, 0x1234, 0x200000 - 0x1234, True),    # 2 MiB page
        (VMALLOC + 0x40000000 + 0x17345, 0x80017345, 0x40000000 - 0x17345, True),  # 1 GiB
        (PAGE_OFFSET + 0x10000, 0x10000, ram_end - 0x10000, False),       # direct map
        (TEXT + 0x100, TEXT_PHYS + 0x100, 0xFFFFFFFFC0000000 - TEXT - 0x100, False),  # 1 GiB image
    ]
    with Vmcore.open(str(x86_64_dump(tmp_path, levels))) as d:
        for vaddr, paddr, size, ends_unmapped in cases:
            assert d.kvtop_extent(vaddr) == (paddr, size), hex(vaddr)
            for k in (1, size // 2, size - 1):
                assert d.kvtop(vaddr + k) == paddr + k
            if ends_unmapped:
                assert d.kvtop(vaddr + size) is None
        assert d.kvtop_extent(v + 0x1000) is None


def test_generic_extent_stops_where_an_earlier_load_takes_over():
    """The generic (PT_LOAD p_vaddr) translation gives the first PT_LOAD holding an address:
    an extent ends where an earlier PT_LOAD begins inside the later one's range."""
    from types import SimpleNamespace

    from pykexec.arch.dumpreader import DumpReader as Arch
    from pykexec.vmcore.dump import Load
    loads = [Load(0, 0x9000, 0x5000, 0, 0x1000, 0x1000),      # vaddr 0x5000-0x6000
             Load(1, 0x100000, 0x1000, 0, 0x8000, 0x8000)]    # vaddr 0x1000-0x9000
    arch = Arch(SimpleNamespace(loads=loads, elfclass=64))
    assert arch.kvtop_extent(0x2000) == (0x101000, 0x3000)   # up to 0x5000
    assert arch.kvtop_extent(0x5800) == (0x9800, 0x800)
    assert arch.kvtop_extent(0x6000) == (0x105000, 0x3000)   # after it, the later load again
    assert arch.kvtop_extent(0x9000) is None
    # an Arch with its own kvtop and no extents of its own is asked one 4 KiB page at a time
    class OwnTranslation(Arch):
        def kvtop(self, vaddr):
            return None if vaddr >= 0x10000 else 0x40000000 + vaddr
    own = OwnTranslation(SimpleNamespace(loads=loads, elfclass=64))
    assert own.kvtop_extent(0x2345) == (0x40002345, 0x1000 - 0x345)
    assert own.kvtop_extent(0x10000) is None
    # x86_64 without page tables falls back to the PT_LOADs for what is neither text nor
    # the direct map (and its kvtop agrees)
    from pykexec.arch.x86.vmcore import X86_64
    x86_loads = [Load(0, 0, PAGE_OFFSET, 0, 0x100000, 0x100000),
                 Load(1, 0x200000, 0x1000, 0, 0x1000, 0x1000)]
    x86 = X86_64(SimpleNamespace(loads=x86_loads, elfclass=64, vmcoreinfo=None))
    assert x86.kvtop_extent(0x1800) == (0x200800, 0x800) and x86.kvtop(0x1800) == 0x200800
    # the direct map is linear up to the highest PT_LOAD end (0x201000), as kvtop says
    assert x86.kvtop_extent(PAGE_OFFSET + 0x10) == (0x10, 0x201000 - 0x10)
    assert x86.kvtop(PAGE_OFFSET + 0x200FFF) == 0x200FFF
    # the last byte of each extent still belongs to the PT_LOAD its first byte did
    for vaddr, load in ((0x2000, 1), (0x5800, 0), (0x6000, 1)):
        paddr, size = arch.kvtop_extent(vaddr)
        last = vaddr + size - 1
        assert loads[load].vaddr <= last < loads[load].vaddr + loads[load].memsz
        assert paddr + size - 1 == loads[load].paddr + last - loads[load].vaddr


def test_read_virt_crosses_pages(tmp_path):
    with Vmcore.open(str(x86_64_dump(tmp_path))) as d:
        assert d.read_virt(PAGE_OFFSET + 0x6FFC, 8) == bytes(4) + b"vmal"


def i386_dump(tmp_path, pae=False):
    po = 0xC0000000
    mem = Mem()
    mem.add(0, 0x400000, vaddr=po)
    v = 0xF8003000
    if pae:
        mem.put(0x1000 + 8 * 3, struct.pack("<Q", 0x2000 | P))          # PDPT[3]
        mem.put(0x2000 + 8 * idx(v, 21), struct.pack("<Q", 0x3000 | P))
        mem.put(0x3000 + 8 * idx(v, 12), struct.pack("<Q", 0x5000 | P))
        mem.put(0x2000 + 0, struct.pack("<Q", 0 | P | PS))                # lowmem 2 MiB page
        mem.put(0x2000 + 8 * idx(0xF8400000, 21), struct.pack("<Q", 0x200000 | P | PS))
    else:
        mem.put(0x1000 + 4 * (v >> 22), struct.pack("<I", 0x2000 | P))
        mem.put(0x2000 + 4 * idx(v, 12, 10), struct.pack("<I", 0x5000 | P))
        mem.put(0x1000 + 4 * (po >> 22), struct.pack("<I", 0 | P | PS))   # lowmem 4 MiB page
        mem.put(0x1000 + 4 * (0xF8400000 >> 22), struct.pack("<I", 0 | P | PS))
    mem.put(0x5000, b"i386 vmalloc")
    mem.put(0x200100, b"large")
    info = [("OSRELEASE", "6.1.0-test-686"), ("SYMBOL(swapper_pg_dir)", f"{po + 0x1000:x}")]
    if pae:
        info.append(("CONFIG_X86_PAE", "y"))
    notes = [note("CORE", 1, prstatus_i386(1, {"eip": 0xC1000000, "esp": 0xC2000000, "eax": 9})),
             note("VMCOREINFO", 0, vmcoreinfo(info))]
    path = tmp_path / "core32"
    path.write_bytes(core(mem, notes, elfclass=32, machine=EM_386))
    return path


@pytest.mark.parametrize("pae", [False, True])
def test_i386_elf32(tmp_path, pae):
    with Vmcore.open(str(i386_dump(tmp_path, pae))) as d:
        assert d.elfclass == 32 and d.machine == EM_386 and d.pointer_size == 4
        assert len(d.cpus) == 1 and d.cpus[0].pc == 0xC1000000 and d.cpus[0].regs["eax"] == 9
        assert d.read_virt(0xF8003000, 12) == b"i386 vmalloc"
        assert d.kvtop(0xC0000000 + 0x1234) == 0x1234
        large = 0xF8400100 if pae else 0xF8400000 + 0x200100   # 2 MiB or 4 MiB page
        assert bytes(d.read_virt(large, 5)) == b"large"
        assert d.kvtop(0xF8004000) is None
        # how far each mapping goes on: a 4 KiB PTE, a 2 MiB (PAE) or 4 MiB page
        assert d.kvtop_extent(0xF8003005) == (0x5005, 0x1000 - 5)
        rest = 0x200000 - 0x100 if pae else 0x400000 - 0x200100
        assert d.kvtop_extent(large) == (0x200100, rest)
        assert d.kvtop(large + rest - 1) == 0x200100 + rest - 1


# ---------------------------------------------------------------------------------------
# Hostile files: one VmcoreError naming the file and the problem.

def hostile(tmp_path, data, name="bad"):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(VmcoreError) as err:
        Vmcore.open(str(path))
    message = str(err.value)
    assert message.startswith(str(path) + ": ") and "\n" not in message
    return message


def test_not_elf(tmp_path):
    assert "not an ELF file" in hostile(tmp_path, b"hello world, not a core" * 4)


def test_empty_and_missing(tmp_path):
    assert hostile(tmp_path, b"").endswith(": empty file: not a vmcore")
    assert "truncated ELF header" in hostile(tmp_path, b"\x7fELF\x02\x01")
    with pytest.raises(VmcoreError, match="No such file"):
        Vmcore.open(str(tmp_path / "absent"))


def test_truncated_header(tmp_path):
    good = x86_64_dump(tmp_path).read_bytes()
    assert "truncated" in hostile(tmp_path, good[:40])
    assert "program headers end" in hostile(tmp_path, good[:100])


def test_wrong_class_and_byte_order(tmp_path):
    good = bytearray(x86_64_dump(tmp_path).read_bytes())
    good[4] = 3
    assert "unknown ELF class 3" in hostile(tmp_path, bytes(good))
    good[4], good[5] = 2, 2
    assert "not little endian" in hostile(tmp_path, bytes(good))


def test_et_exec(tmp_path):
    mem = Mem()
    mem.add(0, 0x1000)
    assert "ET_EXEC, not a core file" in hostile(tmp_path, core(mem, [], e_type=ET_EXEC))


def test_note_lies_about_its_size(tmp_path):
    mem = Mem()
    mem.add(0, 0x1000)
    lie = bytearray(note("VMCOREINFO", 0, vmcoreinfo([("OSRELEASE", "x")])))
    struct.pack_into("<I", lie, 4, 0x10000)                  # n_descsz far past the segment
    assert "past the end of its PT_NOTE" in hostile(tmp_path, core(mem, [bytes(lie)]))


def test_pt_load_past_end_of_file(tmp_path):
    data = x86_64_dump(tmp_path).read_bytes()
    path = tmp_path / "cut"
    path.write_bytes(data[:len(data) - 0x800])    # the last PT_LOAD (0x800000) loses 2 KiB
    with Vmcore.open(str(path)) as d:                # headers and notes are intact
        (load, absent), = d.missing()
        assert load.paddr == 0x800000 and absent == 0x800
        assert bytes(d.read_phys(0x800000, 0x800)) == bytes(0x800)
        assert bytes(d.read_phys(0x801000, 16)) == bytes(16)     # p_memsz beyond p_filesz
        with pytest.raises(VmcoreError, match=r"past the end of the file .*truncated dump"):
            d.read_phys(0x800800, 16)


def test_pt_note_past_end_of_file(tmp_path):
    data = x86_64_dump(tmp_path).read_bytes()
    assert "PT_NOTE 0 ends at" in hostile(tmp_path, data[:0x1F0])


def test_missing_vmcoreinfo_opens_but_need_says_so(tmp_path):
    mem = Mem()
    mem.add(0, 0x1000, vaddr=PAGE_OFFSET)
    path = tmp_path / "noinfo"
    path.write_bytes(core(mem, [note("CORE", 1, prstatus_x86_64(0, {}))]))
    with Vmcore.open(str(path)) as d:
        assert d.vmcoreinfo is None and len(d.cpus) == 1
        with pytest.raises(VmcoreError, match="no VMCOREINFO note"):
            d.need("symbol", "prb")


def test_real_vmcore_head():
    """The first 8 KiB of a real 6.1 x86_64 /proc/vmcore (examples/vmcore-1g-2cpu)."""
    path = os.path.join(REPO, "examples", "vmcore-1g-2cpu", "vmcore-head")
    with Vmcore.open(path) as d:
        assert d.elfclass == 64 and len(d.cpus) == 2 and len(d.loads) == 4
        assert d.vmcoreinfo.osrelease == "6.1.0-56-amd64"
        assert d.vmcoreinfo.size("printk_info") == 88
        # kernel text PT_LOAD: vaddr 0xffffffff88800000 at paddr 0x1ea00000
        assert d.kvtop(0xFFFFFFFF88800000) == 0x1EA00000
        assert d.kvtop(0xFF374CAD40100000) == 0x100000      # direct map (5-level KASLR base)
        assert len(d.missing()) == 4                          # only the head was kept
