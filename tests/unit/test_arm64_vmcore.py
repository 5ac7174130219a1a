"""arm64 dumps (pykexec.arch.arm64.vmcore) on synthetic vmcores packed with struct
(tests/unit/_vmcore.py): registers from arm64's NT_PRSTATUS layout, and addresses
translated from VMCOREINFO even where the PT_LOADs' p_vaddr are wrong, as in a dump loaded
by kexec-tools 2.0.25 without _text (page_offset 0)."""

from __future__ import annotations

import struct

import pytest

from pykexec.vmcore import Vmcore
from tests.unit._vmcore import Mem, core, note, vmcoreinfo

EM_AARCH64 = 183
PAGE_OFFSET_48 = 0xFFFF000000000000       # 2^64 - 2^48
PHYS_OFFSET = 0x40000000
STEXT = 0xFFFFC280D7010000
KIMAGE_VOFFSET = 0xFFFFC28096E00000      # so _stext is at 0x40210000
VMALLOC = 0xFFFF800012340000
REGS = tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate")


def prstatus_arm64(pid, regs):
    """struct elf_prstatus on arm64: 392 bytes, pr_pid at 32, pr_reg (34 u64) at 112."""
    out = bytearray(392)
    struct.pack_into("<I", out, 32, pid)
    struct.pack_into("<34Q", out, 112, *(regs.get(r, 0) for r in REGS))
    return bytes(out)


def arm64_dump(tmp_path, phys_offset=PHYS_OFFSET, extra=()):
    mem = Mem()
    # RAM 0x40000000-0x40800000 with kexec-tools' wrong p_vaddr: paddr - PHYS_OFFSET + 0
    mem.add(0x40000000, 0x800000, vaddr=0x40000000 - phys_offset)
    pgd = 0x40400000                       # swapper_pg_dir, in the image
    tables = [pgd, pgd + 0x1000, pgd + 0x2000, pgd + 0x3000]
    idx = lambda v, s: (v >> s) & 0x1FF   # noqa: E731
    for level, shift in enumerate((39, 30, 21)):
        mem.put(tables[level] + 8 * idx(VMALLOC, shift), struct.pack("<Q", tables[level + 1] | 3))
    mem.put(tables[3] + 8 * idx(VMALLOC, 12), struct.pack("<Q", 0x40007000 | 3 | (1 << 54)))
    # a 2 MiB block one level-2 entry further
    mem.put(tables[2] + 8 * idx(VMALLOC + 0x200000, 21), struct.pack("<Q", 0x40600000 | 1))
    mem.put(0x40007000 + 0x10, b"vmalloc bytes")
    mem.put(0x40210000, b"kernel text")
    mem.put(0x40001000, b"linear bytes")
    mem.put(0x40600000 + 0x345, b"in a block")
    info = [("OSRELEASE", "6.1.0-50-arm64"), ("PAGESIZE", "4096"),
            ("SYMBOL(swapper_pg_dir)", f"{pgd + KIMAGE_VOFFSET:x}"),
            ("SYMBOL(_stext)", f"{STEXT:x}"), ("NUMBER(VA_BITS)", "48"),
            ("NUMBER(kimage_voffset)", f"{KIMAGE_VOFFSET:#x}"),
            ("NUMBER(PHYS_OFFSET)", f"{phys_offset:#x}"), ("KERNELOFFSET", "4280cf000000"),
            *extra]
    notes = [note("CORE", 1, prstatus_arm64(0, {"pc": STEXT + 0x40, "sp": 0x1234, "x0": 7})),
             note("CORE", 1, prstatus_arm64(99, {"pc": STEXT + 0x80, "x30": 5})),
             note("VMCOREINFO", 0, vmcoreinfo(info))]
    path = tmp_path / "arm64core"
    path.write_bytes(core(mem, notes, machine=EM_AARCH64))
    return path


def test_registers_from_arm64_prstatus(tmp_path):
    with Vmcore.open(str(arm64_dump(tmp_path))) as d:
        assert d.machine == EM_AARCH64 and len(d.cpus) == 2
        assert d.cpus[0].pc == STEXT + 0x40 and d.cpus[0].sp == 0x1234
        assert d.cpus[0].regs["x0"] == 7
        assert d.cpus[1].pid == 99 and d.cpus[1].regs["x30"] == 5


@pytest.mark.parametrize("phys_offset", [PHYS_OFFSET, 0])
def test_linear_map_and_kernel_image_from_vmcoreinfo(tmp_path, phys_offset):
    with Vmcore.open(str(arm64_dump(tmp_path, phys_offset))) as d:
        linear = PAGE_OFFSET_48 + 0x40001000 - phys_offset
        assert d.kvtop(linear) == 0x40001000
        assert bytes(d.read_virt(linear, 12)) == b"linear bytes"
        assert bytes(d.read_virt(STEXT, 11)) == b"kernel text"
        # the PT_LOAD's own (wrong) vaddr is not what the kernel used
        assert d.kvtop(0x1000) is None


def test_page_tables_for_vmalloc_pages_and_blocks(tmp_path):
    with Vmcore.open(str(arm64_dump(tmp_path))) as d:
        assert d.kvtop(VMALLOC + 0x10) == 0x40007010               # attribute bits dropped
        assert bytes(d.read_virt(VMALLOC + 0x10, 13)) == b"vmalloc bytes"
        block = (VMALLOC + 0x200000) & ~0x1FFFFF                    # a 2 MiB block
        assert d.kvtop(block + 0x345) == 0x40600345
        assert bytes(d.read_virt(block + 0x345, 10)) == b"in a block"
        assert d.kvtop(VMALLOC + 0x1000) is None                    # invalid descriptor


def test_without_vmcoreinfo_numbers_only_the_pt_loads_map(tmp_path):
    path = tmp_path / "bare"
    mem = Mem()
    mem.add(0x40000000, 0x1000, vaddr=PAGE_OFFSET_48)
    path.write_bytes(core(mem, [note("VMCOREINFO", 0, vmcoreinfo([("PAGESIZE", "4096")]))],
                          machine=EM_AARCH64))
    with Vmcore.open(str(path)) as d:
        assert d.kvtop(PAGE_OFFSET_48 + 8) == 0x40000008


def test_vmcore_info_finds_the_arm64_reader_by_e_machine(tmp_path, capsys):
    from pykexec.cli import run
    path = arm64_dump(tmp_path)
    status = run(["vmcore", "info", str(path)])
    out, err = capsys.readouterr()
    assert "ELF64 vmcore for aarch64" in out
    assert "linear map PAGE_OFFSET 0xffff000000000000 = PHYS_OFFSET 0x40000000" in out
    assert f"CPU 1: pid 99, pc {STEXT + 0x80:#x}" in out
    # the synthetic dump has no printk ring: complete says so, in one line, exit 1
    assert status == 1 and err.count("\n") == 1 and "log_buf" in err
