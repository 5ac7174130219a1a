"""Machine: reading /proc and /sys under a root, on small fake machine folders."""

import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pykexec.machine.reader as machine_mod  # the reader: its limit and read function
from pykexec.arch.x86.crashmem import BackupArea
from pykexec.machine import (
    CpuNote, Iomem, KcoreLoad, Machine, MachineError, VmcoreInfo, fixup_memory_map,
    parse_cpu_list, parse_iomem,
)
from pykexec.arch.x86.kerneltext import KernelText, kcore_page_offset, kernel_text_mapping
from pykexec.machine.memmap import skip_realmode_ivt
from pykexec.core.ranges import MemoryRegion, MemType, Range, RangeSet
from pykexec.abi.elf import ELFCLASS64, ET_CORE, ET_EXEC, PT_LOAD, PT_NOTE, elf_structs
from pykexec.arch.x86.firmware import acpi_rsdp as x86_acpi_rsdp
from pykexec.arch.x86.crashfacts import backup_area as x86_backup_area
from pykexec.arch.x86.crashfacts import cpu_notes as x86_cpu_notes
from pykexec.arch.x86.crashfacts import crash_memory_ranges as x86_crash_memory_ranges
from pykexec.arch.x86.kerneltext import kernel_code as x86_kernel_code
from pykexec.arch.x86.kerneltext import kernel_text as x86_kernel_text
from pykexec.arch.x86.kerneltext import page_offset as x86_page_offset
from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]

# A QEMU/SeaBIOS guest with 1 GiB and crashkernel=256M, as in kexec-tools-x86.md 3.15.
QEMU_IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000c0000-000c99ff : Video ROM
000ca000-000cadff : Adapter ROM
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-3ffdffff : System RAM
  0a000000-0ac00fff : Kernel code
  0ae00000-0b3fffff : Kernel rodata
  0b400000-0b6fffff : Kernel data
  0bb00000-0bdfffff : Kernel bss
  2e000000-3dffffff : Crash kernel
3ffe0000-3fffffff : Reserved
40000000-afffffff : PCI Bus 0000:00
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
  b0000000-bfffffff : Reserved
c0000000-febfffff : PCI Bus 0000:00
  fd000000-fdffffff : 0000:00:02.0
fec00000-fec003ff : IOAPIC 0
fed00000-fed003ff : HPET 0
  fed00000-fed003ff : PNP0103:00
fee00000-fee00fff : Local APIC
  fee00000-fee00fff : Reserved
fffc0000-ffffffff : Reserved
100000000-17fffffff : PCI Bus 0000:00
"""

QEMU_MEMMAP = [
    (0x0, 0x9FBFF, "System RAM"),
    (0x9FC00, 0x9FFFF, "Reserved"),
    (0xF0000, 0xFFFFF, "Reserved"),
    (0x100000, 0x3FFDFFFF, "System RAM"),
    (0x3FFE0000, 0x3FFFFFFF, "Reserved"),
    (0xB0000000, 0xBFFFFFFF, "Reserved"),
    (0xFEFFC000, 0xFEFFFFFF, "Reserved"),
    (0xFFFC0000, 0xFFFFFFFF, "Reserved"),
]

KASLR_TEXT = 0xFFFFFFFF8A000000  # _text with a KASLR offset
KASLR_PAGE_OFFSET = 0xFFFF9B4C80000000


def kcore_bytes(loads, elfclass=ELFCLASS64, e_type=ET_CORE, note_size=0x100):
    """An ELF core header like /proc/kcore's: one PT_NOTE then PT_LOADs (vaddr, memsz)."""
    s = elf_structs(elfclass)
    phnum = 1 + len(loads)
    phoff = s.ehdr_size
    data = bytearray(s.Ehdr.build(dict(
        e_ident=dict(data=1, version=1, osabi=0, abiversion=0), e_type=e_type,
        e_machine=62, e_version=1, e_entry=0, e_phoff=phoff, e_shoff=0, e_flags=0,
        e_ehsize=s.ehdr_size, e_phentsize=s.phdr_size, e_phnum=phnum, e_shentsize=0,
        e_shnum=0, e_shstrndx=0)))
    notes_off = phoff + phnum * s.phdr_size
    phdrs = [dict(p_type=PT_NOTE, p_flags=0, p_offset=notes_off, p_vaddr=0, p_paddr=0,
                  p_filesz=note_size, p_memsz=0, p_align=4)]
    for i, (vaddr, memsz) in enumerate(loads):
        phdrs.append(dict(p_type=PT_LOAD, p_flags=7, p_offset=0x1000 * (i + 1), p_vaddr=vaddr,
                          p_paddr=0xFFFFFFFFFFFFFFFF, p_filesz=memsz, p_memsz=memsz,
                          p_align=0x1000))
    for ph in phdrs:
        data += s.Phdr.build(ph)
    data += bytes(note_size)
    return bytes(data)


QEMU_KCORE_LOADS = [
    (KASLR_TEXT, 0x2600000),                       # kernel text: _text .. _end
    (0xFFFFFFFFC0000000, 0x3F000000),              # modules
    (0xFFFFB0C000000000, 0x1FFFFFFFFFFF),          # vmalloc
    (KASLR_PAGE_OFFSET + 0x1000, 0x9F000),         # direct map, low RAM
    (KASLR_PAGE_OFFSET + 0x100000, 0x3FEE0000),    # direct map
    (0xFFFFDB1A40000000, 0x1000000),               # vmemmap
]

QEMU_KALLSYMS = f"""\
{KASLR_TEXT:016x} T _text
{KASLR_TEXT + 0x1000:016x} T _stext
{KASLR_TEXT + 0x1000:016x} T startup_64_not_stext
{KASLR_TEXT + 0x1600000:016x} D _etext
{KASLR_TEXT + 0x25FF000:016x} B _end
ffffffffc0a01000 t helper\t[virtio_net]
"""


def boot_params_with_rsdp(rsdp):
    data = bytearray(4096)
    struct.pack_into("<Q", data, 0x70, rsdp)
    return bytes(data)


def qemu_files():
    """{relative path: str | bytes} for the QEMU guest above."""
    files = {
        "snapshot.json": json.dumps({"format": 1, "source": "synthetic", "machine": "x86_64"}),
        "proc/iomem": QEMU_IOMEM,
        "proc/cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/vda1 crashkernel=256M console=ttyS0\n",
        "proc/kallsyms": QEMU_KALLSYMS,
        "proc/kcore": kcore_bytes(QEMU_KCORE_LOADS),
        "sys/kernel/vmcoreinfo": "0x000000003f6b4000 1024\n",
        "sys/kernel/kexec_crash_size": "268435456\n",
        "sys/kernel/kexec_crash_loaded": "0\n",
        "sys/kernel/kexec_loaded": "0\n",
        "sys/kernel/boot_params/data": boot_params_with_rsdp(0xF59D0),
        "sys/kernel/security/lockdown": "[none] integrity confidentiality\n",
        "proc/sys/kernel/kexec_load_disabled": "0\n",
        "sys/devices/system/cpu/possible": "0-1\n",
        "sys/devices/system/cpu/present": "0-1\n",
        "sys/devices/system/cpu/online": "0-1\n",
        "sys/devices/system/cpu/cpu0/crash_notes": "3fc1b000\n",
        "sys/devices/system/cpu/cpu0/crash_notes_size": "424\n",
        "sys/devices/system/cpu/cpu1/crash_notes": "3fc1b800\n",
        "sys/devices/system/cpu/cpu1/crash_notes_size": "424\n",
    }
    for i, (start, end, kind) in enumerate(QEMU_MEMMAP):
        files[f"sys/firmware/memmap/{i}/start"] = f"{start:#x}\n"
        files[f"sys/firmware/memmap/{i}/end"] = f"{end:#x}\n"
        files[f"sys/firmware/memmap/{i}/type"] = f"{kind}\n"
    return files


def make_machine(root: Path, files=None, **changes) -> Machine:
    """Write a fake machine folder: qemu_files() with `changes` (path=None removes)."""
    files = dict(qemu_files() if files is None else files)
    for key, value in changes.items():
        files[key] = value
    for rel, content in files.items():
        if content is None:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return Machine.read(str(root))


def without(*paths, files=None):
    files = dict(qemu_files() if files is None else files)
    for p in paths:
        for key in [k for k in files if k == p or k.startswith(p + "/")]:
            del files[key]
    return files


@pytest.fixture
def qemu(tmp_path):
    return make_machine(tmp_path)


# -- the QEMU guest ---------------------------------------------------------------------------

def test_iomem_tree(qemu):
    iomem = qemu.iomem
    assert isinstance(iomem, Iomem)
    ram = iomem.top[7]
    assert (ram.name, ram.range, ram.depth, ram.line) == (
        "System RAM", Range(0x100000, 0x3FFE0000), 0, 9)
    assert [c.name for c in ram.children] == [
        "Kernel code", "Kernel rodata", "Kernel data", "Kernel bss", "Crash kernel"]
    assert ram.children[4].depth == 1 and ram.children[4].line == 14
    assert len(list(iomem.walk())) == QEMU_IOMEM.count("\n")
    assert [n.range for n in iomem.find("Reserved")][-2:] == [
        Range(0xFEE00000, 0xFEE01000), Range(0xFFFC0000, 0x100000000)]
    assert iomem.top[-1].range == Range(0x100000000, 0x180000000)


def test_crash_regions(qemu):
    assert qemu.crash_regions == (Range.from_inclusive(0x2E000000, 0x3DFFFFFF),)
    assert qemu.crash_region == Range(0x2E000000, 0x3E000000)


def test_memory_map_from_firmware_memmap(qemu):
    assert qemu.memory_map_source == "sys/firmware/memmap"
    mm = qemu.memory_map
    # the first RAM range is raised to 0x400 (real-mode IVT)
    assert mm[0] == MemoryRegion(Range(0x400, 0x9FC00), MemType.RAM)
    assert mm[3] == MemoryRegion(Range(0x100000, 0x3FFE0000), MemType.RAM)
    assert [r.type for r in mm].count(MemType.RESERVED) == 6
    assert [r.start for r in mm] == sorted(r.start for r in mm)
    assert qemu.ram == (Range(0x400, 0x9FC00), Range(0x100000, 0x3FFE0000))
    assert qemu.memory_map_warnings == ()


def test_crash_memory_ranges(qemu):
    got = [(r.range.start, r.range.last, r.type) for r in x86_crash_memory_ranges(qemu)]
    R, V = MemType.RAM, MemType.RESERVED
    assert got == [
        (0x0, 0xFFF, V), (0x1000, 0x9FBFF, R), (0x9FC00, 0x9FFFF, V), (0xF0000, 0xFFFFF, V),
        (0x100000, 0x2DFFFFFF, R), (0x3E000000, 0x3FFDFFFF, R),  # 9.10 exclude_region
        (0x3FFE0000, 0x3FFFFFFF, V), (0xB0000000, 0xBFFFFFFF, V), (0xFEE00000, 0xFEE00FFF, V),
        (0xFFFC0000, 0xFFFFFFFF, V),
    ]


def test_backup_area(qemu):
    assert x86_backup_area(qemu) == BackupArea(0x1000, 0x9EC00)
    assert x86_backup_area(qemu).range == Range(0x1000, 0x9FC00)


def test_cpus_and_vmcoreinfo(qemu):
    assert qemu.nr_cpus_conf == 2
    assert qemu.cpus == (CpuNote(0, 0x3FC1B000, 424), CpuNote(1, 0x3FC1B800, 424))
    assert x86_cpu_notes(qemu) == qemu.cpus
    # "%llx %llx": both hex, 0x allowed; 0x1024 = 4132
    assert qemu.vmcoreinfo == VmcoreInfo(0x3F6B4000, 0x1024)
    assert (qemu.possible_cpus, qemu.present_cpus, qemu.online_cpus) == ((0, 1),) * 3


def test_kernel_text(qemu):
    kt = x86_kernel_text(qemu)
    assert kt == KernelText(paddr=0x0A000000, vaddr=KASLR_TEXT, size=0x2600000,
                            page_offset=KASLR_PAGE_OFFSET, stext=KASLR_TEXT + 0x1000)
    assert x86_page_offset(qemu) == KASLR_PAGE_OFFSET
    assert x86_kernel_code(qemu) == Range(0x0A000000, 0x0AC01000)
    assert qemu.symbol("_stext") == KASLR_TEXT + 0x1000
    assert qemu.symbol("helper") == 0xFFFFFFFFC0A01000
    assert qemu.symbol("startup_64") is None  # exact names only
    assert qemu.symbol("nope") is None


def test_firmware_and_flags(qemu):
    assert x86_acpi_rsdp(qemu) == 0xF59D0
    assert len(qemu.boot_params) == 4096
    assert not qemu.efi.present and not qemu.efi.runtime_map_dir
    assert qemu.cmdline.endswith("console=ttyS0")
    assert (qemu.kexec_loaded, qemu.kexec_crash_loaded) == (False, False)
    assert qemu.kexec_crash_size == 256 << 20
    assert qemu.kexec_load_disabled is False
    assert qemu.lockdown == "none"
    assert qemu.machine_arch == "x86_64"
    assert qemu.crash_elfcorehdr_size is None


def test_machine_is_read_only(qemu):
    with pytest.raises(AttributeError):
        qemu.root = "/"
    assert isinstance(qemu.crash_regions, tuple)
    assert qemu.crash_regions is qemu.crash_regions  # computed once


def test_each_file_is_read_once(tmp_path, monkeypatch):
    m = make_machine(tmp_path)
    opened = []
    real_read = machine_mod.read_machine_file

    def counting_read(path, *args, **kwargs):
        opened.append(os.path.relpath(path, tmp_path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(machine_mod, "read_machine_file", counting_read)
    for _ in range(2):
        m.memory_map, x86_crash_memory_ranges(m), x86_crash_memory_ranges(m, "i386"), m.cpus
        x86_kernel_text(m), m.vmcoreinfo, x86_acpi_rsdp(m), m.symbol("_text"), m.symbol("_end")
    assert len(opened) == len(set(opened))
    assert "proc/iomem" in opened and "proc/kcore" in opened and "proc/kallsyms" in opened


def test_read_root_must_be_a_directory(tmp_path):
    with pytest.raises(MachineError, match="--sysroot .*/nope: does not exist"):
        Machine.read(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(MachineError, match="--sysroot .*/file: is not a directory"):
        Machine.read(str(tmp_path / "file"))
    with pytest.raises(MachineError, match="--sysroot: the path is empty"):
        Machine.read("")


def test_live_root_arch():
    m = Machine.read("/")
    assert m.root == "/"
    assert m.path("proc/iomem") == "/proc/iomem"
    if not os.path.exists("/snapshot.json"):
        assert m.machine_arch == os.uname().machine


def test_folder_without_snapshot_json_has_no_arch(tmp_path):
    m = make_machine(tmp_path, files=without("snapshot.json"))
    assert m.machine_arch is None


# -- memory map variants ----------------------------------------------------------------------

def test_memory_map_falls_back_to_iomem(tmp_path):
    m = make_machine(tmp_path, files=without("sys/firmware/memmap"))
    assert m.memory_map_source == "proc/iomem"
    mm = m.memory_map
    # iomem lines at any depth; first RAM (0x1000) is already above 0x400
    assert mm[0] == MemoryRegion(Range(0x0, 0x1000), MemType.RESERVED)
    assert mm[1] == MemoryRegion(Range(0x1000, 0x9FC00), MemType.RAM)
    assert MemoryRegion(Range(0xB0000000, 0xC0000000), MemType.RESERVED) in mm  # nested
    assert [r for r in mm if r.type is MemType.RAM] == [
        MemoryRegion(Range(0x1000, 0x9FC00), MemType.RAM),
        MemoryRegion(Range(0x100000, 0x3FFE0000), MemType.RAM)]


def test_add_efi_memmap_uses_iomem(tmp_path):
    m = make_machine(tmp_path, **{"proc/cmdline": "root=/dev/sda add_efi_memmap\n"})
    assert m.memory_map_source == "proc/iomem"


def test_memmap_parse_failure_falls_back(tmp_path):
    m = make_machine(tmp_path, **{"sys/firmware/memmap/3/start": "0xzz\n"})
    assert m.memory_map_source == "proc/iomem"
    assert "falling back to /proc/iomem" in m.memory_map_warnings[0]
    assert "memmap/3" in m.memory_map_warnings[0]


def test_memmap_unknown_type_is_reserved(tmp_path):
    m = make_machine(tmp_path, **{"sys/firmware/memmap/6/type": "Soft Reserved\n"})
    assert MemoryRegion(Range(0xFEFFC000, 0xFF000000), MemType.RESERVED) in m.memory_map
    assert "unknown type 'Soft Reserved'" in m.memory_map_warnings[0]


def test_memmap_sorted_numerically_not_by_name(tmp_path):
    files = without("sys/firmware/memmap")
    entries = QEMU_MEMMAP * 2  # 16 entries: "10" sorts before "2" as text
    for i, (start, end, kind) in enumerate(entries[:12]):
        start += i * 0x100000000
        files[f"sys/firmware/memmap/{i}/start"] = f"{start:#x}\n"
        files[f"sys/firmware/memmap/{i}/end"] = f"{end + i * 0x100000000:#x}\n"
        files[f"sys/firmware/memmap/{i}/type"] = f"{kind}\n"
    m = make_machine(tmp_path, files=files)
    starts = [r.start for r in m.memory_map]
    assert starts == sorted(starts) and len(starts) == 12


RAM, RSV = MemType.RAM, MemType.RESERVED


def regions(*items):
    return tuple(MemoryRegion(Range.from_inclusive(a, b), t) for a, b, t in items)


@pytest.mark.parametrize("given,expected", [
    # equal starts, same type: the longer stays
    (regions((0, 0xFFF, RAM), (0, 0x1FFF, RAM)), regions((0, 0x1FFF, RAM))),
    (regions((0, 0x1FFF, RAM), (0, 0xFFF, RAM)), regions((0, 0x1FFF, RAM))),
    # contained: removed
    (regions((0, 0x3FFF, RAM), (0x1000, 0x1FFF, RAM), (0x5000, 0x5FFF, RAM)),
     regions((0, 0x3FFF, RAM), (0x5000, 0x5FFF, RAM))),
    # overlap: trimmed to the previous inclusive end (sic, one shared byte)
    (regions((0, 0x1FFF, RAM), (0x1000, 0x2FFF, RAM)), regions((0, 0x1FFF, RAM), (0x1FFF, 0x2FFF, RAM))),
    # different types: untouched
    (regions((0, 0x1FFF, RAM), (0x1000, 0x2FFF, RSV)), regions((0, 0x1FFF, RAM), (0x1000, 0x2FFF, RSV))),
    # chains settle
    (regions((0, 0x4FFF, RAM), (0x1000, 0x1FFF, RAM), (0x2000, 0x2FFF, RAM), (0x3000, 0x5FFF, RAM)),
     regions((0, 0x4FFF, RAM), (0x4FFF, 0x5FFF, RAM))),
])
def test_fixup_memory_map(given, expected):
    assert fixup_memory_map(given) == expected


@pytest.mark.parametrize("given,expected", [
    (regions((0, 0x9FBFF, RAM), (0x100000, 0x1FFFFF, RAM)),
     regions((0x400, 0x9FBFF, RAM), (0x100000, 0x1FFFFF, RAM))),
    (regions((0, 0xFFF, RSV), (0x1000, 0x9FBFF, RAM)), regions((0, 0xFFF, RSV), (0x1000, 0x9FBFF, RAM))),
    (regions((0, 0x3FF, RAM), (0x200, 0x9FBFF, RAM)), regions((0x200, 0x9FBFF, RAM))),  # only the first
])
def test_skip_realmode_ivt(given, expected):
    assert skip_realmode_ivt(given) == expected


# -- two crash regions, i386 ------------------------------------------------------------------

HIGH_LOW_IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-bffdffff : System RAM
  01000000-01e00fff : Kernel code
  ab000000-baffffff : Crash kernel
bffe0000-bfffffff : Reserved
100000000-43fffffff : System RAM
  43c000000-43fffffff : Crash kernel
  440000000-44fffffff : Not RAM sibling
"""


def test_two_crash_regions(tmp_path):
    iomem = HIGH_LOW_IOMEM.replace("  440000000-44fffffff : Not RAM sibling\n", "")
    m = make_machine(tmp_path, **{"proc/iomem": iomem})
    assert m.crash_regions == (Range(0xAB000000, 0xBB000000), Range(0x43C000000, 0x440000000))
    assert m.crash_region == Range(0x43C000000, 0x440000000)
    ram = [r.range for r in x86_crash_memory_ranges(m) if r.type is MemType.RAM]
    assert ram == [Range(0x1000, 0x9FC00), Range(0x100000, 0xAB000000),
                   Range(0xBB000000, 0xBFFE0000), Range(0x100000000, 0x43C000000)]


def test_i386_lowmem_split(tmp_path):
    iomem = ("00001000-0009fbff : System RAM\n00100000-7ffdffff : System RAM\n"
             "  2e000000-3dffffff : Crash kernel\n7ffe0000-7fffffff : Reserved\n")
    m = make_machine(tmp_path, **{"proc/iomem": iomem})
    got = [(r.range.start, r.range.last, r.type) for r in x86_crash_memory_ranges(m, "i386")]
    # split at 0x38000000 first, then the crash region removed from the low half; the
    # part of the crash region above the limit trims the start of the high half
    assert got == [(0x1000, 0x9FBFF, RAM), (0x100000, 0x2DFFFFFF, RAM),
                   (0x3E000000, 0x7FFDFFFF, RAM), (0x7FFE0000, 0x7FFFFFFF, RSV)]
    assert x86_crash_memory_ranges(m, "x86_64")[1].range == Range(0x100000, 0x2E000000)


def test_i386_legacy_crash_notes(tmp_path):
    m = make_machine(tmp_path, **{"sys/kernel/crash_notes": "c1a2b000\n"})
    assert x86_cpu_notes(m, "i386") == (CpuNote(0, 0x01A2B000, 1024), CpuNote(1, 0x01A2B400, 1024))
    assert x86_cpu_notes(m, "x86_64") == m.cpus


# -- CPUs -------------------------------------------------------------------------------------

def test_cpus_skip_missing_notes_and_default_size(tmp_path):
    files = qemu_files()
    files["sys/devices/system/cpu/possible"] = "0-3\n"
    files["sys/devices/system/cpu/cpu2/crash_notes"] = "3fc1c000\n"
    files["sys/devices/system/cpu/cpu3/crash_notes"] = "0x3fc1c800\n"
    files["sys/devices/system/cpu/cpu3/crash_notes_size"] = "512\n"
    del files["sys/devices/system/cpu/cpu1/crash_notes"]
    m = make_machine(tmp_path, files=files)
    assert m.nr_cpus_conf == 4
    assert m.cpus == (CpuNote(0, 0x3FC1B000, 424), CpuNote(2, 0x3FC1C000, 1024),
                      CpuNote(3, 0x3FC1C800, 512))


def test_cpus_counted_from_directories_without_possible(tmp_path):
    m = make_machine(tmp_path, files=without("sys/devices/system/cpu/possible"))
    assert m.nr_cpus_conf == 2
    assert len(m.cpus) == 2


def test_cpus_without_sysfs_is_an_error(tmp_path):
    m = make_machine(tmp_path, files=without("sys/devices"))
    assert m.nr_cpus_conf == 0
    with pytest.raises(MachineError, match=r"sys/devices does not exist; is sysfs mounted\?"):
        m.cpus
    m2 = make_machine(tmp_path / "b", files={"sys/devices/system/cpu/possible": "0\n",
                                             "proc/iomem": QEMU_IOMEM})
    assert m2.cpus == ()  # sys/devices exists: CPU 0 without notes is skipped


@pytest.mark.parametrize("rel,content,pattern", [
    ("sys/devices/system/cpu/cpu0/crash_notes", "xyz\n", r"cpu0/crash_notes:1: expected a hex"),
    ("sys/devices/system/cpu/cpu0/crash_notes_size", "0x10\n", r"crash_notes_size:1: expected a decimal"),
    ("sys/kernel/vmcoreinfo", "3f6b4000\n", r"vmcoreinfo:1: expected"),
    ("sys/kernel/vmcoreinfo", "zz 10\n", r"vmcoreinfo:1: expected"),
    ("sys/devices/system/cpu/possible", "0-x\n", r"possible:1: '0-x': not a CPU list"),
    ("sys/kernel/kexec_crash_loaded", "2\n", r"kexec_crash_loaded:1: expected 0 or 1"),
    ("sys/kernel/security/lockdown", "none integrity\n", r"lockdown:1: no \[mode\]"),
    ("snapshot.json", "{not json", r"snapshot.json: not JSON"),
])
def test_malformed_small_files(tmp_path, rel, content, pattern):
    m = make_machine(tmp_path, **{rel: content})
    attr = {"crash_notes": "cpus", "crash_notes_size": "cpus", "vmcoreinfo": "vmcoreinfo",
            "possible": "nr_cpus_conf", "kexec_crash_loaded": "kexec_crash_loaded",
            "lockdown": "lockdown", "snapshot.json": "machine_arch"}[rel.rsplit("/", 1)[-1]]
    with pytest.raises(MachineError, match=pattern) as info:
        getattr(m, attr)
    assert str(tmp_path) in str(info.value)
    assert info.value.path.startswith(str(tmp_path))


@pytest.mark.parametrize("line,expected", [
    ("0x000000003f6b4000 1024\n", VmcoreInfo(0x3F6B4000, 0x1024)),
    ("3f6b4000 1024\n", VmcoreInfo(0x3F6B4000, 0x1024)),
    ("3F6B4000 0x1000", VmcoreInfo(0x3F6B4000, 0x1000)),
])
def test_vmcoreinfo_formats(tmp_path, line, expected):
    assert make_machine(tmp_path, **{"sys/kernel/vmcoreinfo": line}).vmcoreinfo == expected


def test_missing_optional_files(tmp_path):
    m = make_machine(tmp_path, files=without(
        "sys/kernel/vmcoreinfo", "sys/kernel/security", "sys/kernel/kexec_crash_size",
        "proc/sys", "sys/kernel/boot_params"))
    assert m.vmcoreinfo is None and m.lockdown is None and m.kexec_crash_size is None
    assert m.kexec_load_disabled is None and m.boot_params is None and x86_acpi_rsdp(m) is None


@pytest.mark.parametrize("text,expected", [
    ("0-3", (0, 1, 2, 3)), ("0", (0,)), ("0,2-3,5", (0, 2, 3, 5)), ("", ()),
])
def test_parse_cpu_list(text, expected):
    assert parse_cpu_list(text) == expected


# -- malformed iomem --------------------------------------------------------------------------

@pytest.mark.parametrize("text,pattern", [
    ("00000000-00000fff : Reserved\n0000zz00-00000fff : Reserved\n", r"proc/iomem:2: not 'start-end : name'"),
    ("00000000-00000fff Reserved\n", r"proc/iomem:1: not 'start-end : name'"),
    ("00001000-00000fff : Reserved\n", r"proc/iomem:1: end 0xfff is below start 0x1000"),
    ("00000000-00000fff : Reserved\n   00000000-000000ff : x\n", r"proc/iomem:2: odd indentation"),
    ("00000000-00000fff : Reserved\n    00000000-000000ff : x\n", r"proc/iomem:2: indented 2 levels"),
    ("  00000000-00000fff : Reserved\n", r"proc/iomem:1: indented 1 levels"),
    ("00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n", r"proc/iomem: every address is zero"),
    ("0-10000000000000000 : Reserved\n", r"proc/iomem:1: address above 64 bits"),
])
def test_malformed_iomem(tmp_path, text, pattern):
    m = make_machine(tmp_path, **{"proc/iomem": text})
    with pytest.raises(MachineError, match=pattern) as info:
        m.crash_regions
    assert str(info.value).startswith(str(tmp_path / "proc" / "iomem"))
    assert "\n" not in str(info.value)


def test_iomem_blank_lines_and_names():
    iomem = parse_iomem("\n00000000-00000fff : \n00001000-00001fff : a : b\n\n")
    assert [(n.name, n.line) for n in iomem.walk()] == [("", 2), ("a : b", 3)]


def test_missing_iomem(tmp_path):
    m = make_machine(tmp_path, files=without("proc/iomem"))
    with pytest.raises(MachineError, match=r"Cannot read .*proc/iomem: No such file"):
        m.iomem


# -- kernel text failures ---------------------------------------------------------------------

def test_missing_kernel_code(tmp_path):
    m = make_machine(tmp_path, **{"proc/iomem": QEMU_IOMEM.replace("Kernel code", "Kernel cod")})
    with pytest.raises(MachineError, match="Cannot determine kernel physical load addr.*0 'Kernel code'"):
        x86_kernel_text(m)


def test_two_kernel_code_lines(tmp_path):
    iomem = QEMU_IOMEM + "  170000000-1700fffff : Kernel code\n"
    m = make_machine(tmp_path, **{"proc/iomem": iomem})
    with pytest.raises(MachineError, match="has 2 'Kernel code' lines"):
        x86_kernel_text(m)


def test_unreadable_kcore(tmp_path):
    m = make_machine(tmp_path, files=without("proc/kcore"))
    (tmp_path / "proc" / "kcore").mkdir()  # reading a directory fails with EISDIR
    with pytest.raises(MachineError, match=rf"^Cannot read {tmp_path}/proc/kcore: Is a directory"):
        x86_kernel_text(m)


def test_missing_kcore(tmp_path):
    m = make_machine(tmp_path, files=without("proc/kcore"))
    with pytest.raises(MachineError, match=r"Cannot read .*/proc/kcore: No such file"):
        x86_kernel_text(m)


@pytest.mark.parametrize("data,pattern", [
    (b"\x7fELF", "no ELF magic"),
    (b"not an elf at all", "no ELF magic"),
    (kcore_bytes(QEMU_KCORE_LOADS, e_type=ET_EXEC), "not ET_CORE"),
    (kcore_bytes(QEMU_KCORE_LOADS)[:0x100], "program headers end at"),
    (kcore_bytes(QEMU_KCORE_LOADS)[:0x30], "truncated ELF header"),
])
def test_bad_kcore(tmp_path, data, pattern):
    m = make_machine(tmp_path, **{"proc/kcore": data})
    with pytest.raises(MachineError, match=f"ELF core \\(kcore\\) parse failed: .*{pattern}"):
        x86_kernel_text(m)


def test_kptr_restrict_zeros_use_the_fixed_window(tmp_path):
    zeros = "".join(f"0000000000000000 {line.split(' ', 1)[1]}\n"
                    for line in QEMU_KALLSYMS.splitlines())
    m = make_machine(tmp_path, **{"proc/kallsyms": zeros})
    kt = x86_kernel_text(m)
    assert kt.stext is None
    assert (kt.vaddr, kt.size) == (KASLR_TEXT, 0x2600000)


def test_no_kallsyms_uses_the_fixed_window(tmp_path):
    m = make_machine(tmp_path, files=without("proc/kallsyms"))
    assert x86_kernel_text(m).vaddr == KASLR_TEXT


def test_no_text_mapping(tmp_path):
    loads = [l for l in QEMU_KCORE_LOADS if l[0] != KASLR_TEXT]
    m = make_machine(tmp_path, **{"proc/kcore": kcore_bytes(loads), "proc/kallsyms": ""})
    with pytest.raises(MachineError, match="Can't find kernel text map area from kcore"):
        x86_kernel_text(m)


@pytest.mark.parametrize("loads,stext,expected", [
    # _stext inside a PT_LOAD: vaddr down to 1 MiB, size to its end, up to a page
    ([(0xFFFFFFFF81234000, 0x1000800)], 0xFFFFFFFF81235000, (0xFFFFFFFF81200000, 0x1035000)),
    # the first containing PT_LOAD wins
    ([(0xFFFF888000000000, 0x1000), (0xFFFFFFFF81000000, 0x2000000)], 0xFFFFFFFF81000010,
     (0xFFFFFFFF81000000, 0x2000000)),
    # _stext unknown: the first PT_LOAD within [0xffffffff80000000, +512 MiB)
    ([(0xFFFFFFFFC0000000, 0x1000), (0xFFFFFFFF81000000, 0x2000000)], None,
     (0xFFFFFFFF81000000, 0x2000000)),
    # _stext outside every PT_LOAD falls back to the window too
    ([(0xFFFFFFFF81000000, 0x2000000)], 0x1234, (0xFFFFFFFF81000000, 0x2000000)),
    ([(0xFFFFFFFF81000000, 0x20000000)], None, None),  # ends past the window
])
def test_kernel_text_mapping(loads, stext, expected):
    assert kernel_text_mapping([KcoreLoad(*l) for l in loads], stext) == expected


@pytest.mark.parametrize("vaddrs,expected", [
    ([0xFFFFFFFF81000000, 0xFFFF9B4CB0001000, 0xFFFFC90000000000], 0xFFFF9B4C80000000),
    ([], 0xFFFF888000000000),
    ([0x1000, 0xFFFF888000100000], 0xFFFF888000000000),  # a zero candidate is replaced
])
def test_kcore_page_offset(vaddrs, expected):
    assert kcore_page_offset([KcoreLoad(v, 0x1000) for v in vaddrs]) == expected


# -- EFI / RSDP -------------------------------------------------------------------------------

def efi_files(systab):
    files = qemu_files()
    files["sys/kernel/boot_params/data"] = boot_params_with_rsdp(0)
    files["sys/firmware/efi/systab"] = systab
    files["sys/firmware/efi/fw_vendor"] = "0x7fe6a018\n"
    files["sys/firmware/efi/runtime"] = "0x7fe6ab98\n"
    files["sys/firmware/efi/config_table"] = "0x7fe6a218\n"
    for i, (t, phys, pages) in enumerate([(5, 0x7F9F0000, 0x10), (6, 0x7FA00000, 0x20)]):
        base = f"sys/firmware/efi/runtime-map/{i}"
        files[f"{base}/type"] = f"{t:#x}\n"
        files[f"{base}/phys_addr"] = f"{phys:#x}\n"
        files[f"{base}/virt_addr"] = f"{0xFFFFFFFEF0000000 + i * 0x10000:#x}\n"
        files[f"{base}/num_pages"] = f"{pages:#x}\n"
        files[f"{base}/attribute"] = "0x800000000000000f\n"
    return files


def test_efi_machine(tmp_path):
    m = make_machine(tmp_path, files=efi_files("ACPI20=0x7fb7e014\nACPI=0x7fb7e000\nSMBIOS=0x7f9c0000\n"))
    assert x86_acpi_rsdp(m) == 0x7FB7E014
    efi = m.efi
    assert efi.present and efi.runtime_map_dir
    assert (efi.fw_vendor, efi.runtime, efi.config_table) == (0x7FE6A018, 0x7FE6AB98, 0x7FE6A218)
    assert efi.systab_value("SMBIOS") == 0x7F9C0000 and efi.systab_value("nope") is None
    assert [(e.index, e.type, e.phys_addr, e.num_pages) for e in efi.runtime_map] == [
        (0, 5, 0x7F9F0000, 0x10), (1, 6, 0x7FA00000, 0x20)]
    assert efi.runtime_map[0].attribute == 0x800000000000000F


@pytest.mark.parametrize("systab,expected", [
    ("SMBIOS=0x1\nACPI=0x7fb7e000\nACPI20=0x7fb7e014\n", 0x7FB7E000),  # first line wins
    ("ACPI20=7fb7e014\n", None),                                          # needs 0x
    ("SMBIOS=0x1\n", None),
])
def test_rsdp_from_systab(tmp_path, systab, expected):
    assert x86_acpi_rsdp(make_machine(tmp_path, files=efi_files(systab))) == expected


def test_boot_params_rsdp_wins(tmp_path):
    files = efi_files("ACPI20=0x7fb7e014\n")
    files["sys/kernel/boot_params/data"] = boot_params_with_rsdp(0xF59D0)
    assert x86_acpi_rsdp(make_machine(tmp_path, files=files)) == 0xF59D0


# -- real and synthetic snapshots ---------------------------------------------------------------

SNAPSHOTS = sorted(p for p in (REPO / "tests" / "snapshots").glob("*/")
                   if (p / "proc" / "iomem").exists())


def check_loadable_machine(m: Machine):
    assert m.crash_region is not None, (
        f"{m.path('proc/iomem')} has no 'Crash kernel' line: the crashkernel= reservation "
        f"failed on that machine ({m.cmdline!r}), so nothing can be crash-loaded")
    assert m.crash_region in m.crash_regions
    assert m.memory_map and m.ram
    assert m.cpus and m.nr_cpus_conf >= len(m.cpus)
    ranges = x86_crash_memory_ranges(m)
    assert not any(r.range.overlaps(c) for r in ranges for c in m.crash_regions)
    x86_backup_area(m)
    if (m.machine_arch or "x86_64") == "x86_64":
        kt = x86_kernel_text(m)
        assert kt.size > 0 and kt.vaddr % (1 << 20) == 0


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[p.name for p in SNAPSHOTS])
def test_real_snapshot_reads(snapshot):
    check_loadable_machine(Machine.read(str(snapshot)))


def test_real_snapshots_exist():
    require(SNAPSHOTS, "no QEMU guest snapshots under tests/snapshots yet")


def _synthetic():
    try:
        from tests.bed import synthetic
    except ImportError:
        return None
    return synthetic if hasattr(synthetic, "PRESETS") else None


SYNTHETIC = _synthetic()
PRESET_NAMES = sorted(SYNTHETIC.PRESETS) if SYNTHETIC else []


def test_synthetic_presets_exist():
    require(PRESET_NAMES, "tests/bed/synthetic.py with PRESETS is not available")


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_synthetic_machine(tmp_path, preset):
    """Each preset reads without error, and agrees with the layout it was made from."""
    layout = SYNTHETIC.make_machine(str(tmp_path), SYNTHETIC.PRESETS[preset])
    m = Machine.read(str(tmp_path))
    check_loadable_machine(m)
    crash = tuple(Range.from_inclusive(c.start, c.end) for c in layout.crash_regions)
    assert m.crash_regions == crash and m.crash_region == crash[-1]
    assert m.memory_map_source == "sys/firmware/memmap"
    fw_ram = [Range.from_inclusive(r.start, r.end) for r in layout.firmware if r.name == "System RAM"]
    fw_ram[0] = Range(0x400, fw_ram[0].end)
    assert list(m.ram) == fw_ram
    expected_ram = RangeSet(Range.from_inclusive(r.start, r.end) for r in layout.system_ram()).minus(crash)
    got_ram = [r.range for r in x86_crash_memory_ranges(m) if r.type is MemType.RAM]
    assert RangeSet(got_ram) == expected_ram and len(got_ram) == len(RangeSet(got_ram))
    assert [c.cpu for c in m.cpus] == layout.cpus_with_notes
    assert [c.paddr for c in m.cpus] == [a for a in layout.crash_notes if a is not None]
    assert m.nr_cpus_conf == layout.spec.cpus
    assert m.vmcoreinfo.paddr == layout.vmcoreinfo_paddr
    kt = x86_kernel_text(m)
    assert kt.paddr == layout.kernel_paddr
    assert kt.vaddr == layout.kernel_vaddr - layout.kernel_vaddr % (1 << 20)
    assert kt.page_offset == layout.page_offset
    assert x86_acpi_rsdp(m) == layout.spec.acpi_rsdp
    assert x86_backup_area(m) == BackupArea(0x1000, 0x9EC00)


# -- more edge cases --------------------------------------------------------------------------

def test_unreadable_kallsyms_uses_the_fixed_window(tmp_path):
    m = make_machine(tmp_path, files=without("proc/kallsyms"))
    (tmp_path / "proc" / "kallsyms").mkdir()
    with pytest.raises(MachineError, match="Cannot read .*proc/kallsyms: Is a directory"):
        m.symbol("_stext")
    assert x86_kernel_text(m).vaddr == KASLR_TEXT and x86_kernel_text(m).stext is None


def test_memory_map_without_cmdline(tmp_path):
    m = make_machine(tmp_path, files=without("proc/cmdline"))
    assert m.memory_map_source == "sys/firmware/memmap"
    with pytest.raises(MachineError, match="Cannot read .*proc/cmdline"):
        m.cmdline


def test_iomem_fallback_keeps_at_most_2048_entries(tmp_path):
    lines = "".join(f"{i * 0x1000:08x}-{i * 0x1000 + 0xfff:08x} : reserved\n" for i in range(2100))
    m = make_machine(tmp_path, files=without("sys/firmware/memmap"), **{"proc/iomem": lines})
    assert len(m.memory_map) == 2048 and m.memory_map[0].type is MemType.RESERVED


def test_memory_region_repr():
    assert repr(MemoryRegion(Range(0x400, 0x9FC00), MemType.RAM)) == \
        "MemoryRegion(Range(0x400, 0x9fc00), RAM)"


def test_efi_runtime_map_flags(tmp_path):
    files = efi_files("ACPI20=0x7fb7e014\n")
    m = make_machine(tmp_path, files=files)
    assert m.efi.has_runtime_map
    files = {k: v for k, v in files.items() if "runtime-map/" not in k}
    m2 = make_machine(tmp_path / "b", files=files)
    (tmp_path / "b" / "sys/firmware/efi/runtime-map").mkdir()
    assert m2.efi.runtime_map_dir and not m2.efi.has_runtime_map


def test_efi_runtime_map_missing_field(tmp_path):
    files = efi_files("ACPI20=0x7fb7e014\n")
    del files["sys/firmware/efi/runtime-map/1/num_pages"]
    with pytest.raises(MachineError, match="runtime-map/1/num_pages"):
        make_machine(tmp_path, files=files).efi


def test_kexec_flags_from_the_newer_sysfs_group(tmp_path):
    files = without("sys/kernel/kexec_loaded", "sys/kernel/kexec_crash_loaded",
                    "sys/kernel/kexec_crash_size")
    files.update({"sys/kernel/kexec/loaded": "1\n", "sys/kernel/kexec/crash_loaded": "1\n",
                  "sys/kernel/kexec/crash_size": "134217728\n",
                  "sys/kernel/kexec/crash_elfcorehdr_size": "73728\n"})
    m = make_machine(tmp_path, files=files)
    assert (m.kexec_loaded, m.kexec_crash_loaded) == (True, True)
    assert m.kexec_crash_size == 128 << 20 and m.crash_elfcorehdr_size == 73728


# -- iomem round trip -----------------------------------------------------------------------

@st.composite
def iomem_trees(draw, start=0, end=1 << 40, depth=0):
    """(start, end, name, children) lists whose children nest inside their parents."""
    nodes, at = [], start
    for _ in range(draw(st.integers(0, 4 if depth < 3 else 0))):
        gap = draw(st.integers(0, 0x10000))
        size = draw(st.integers(1, 1 << 32))
        if at + gap + size > end:
            break
        s = at + gap
        kids = draw(iomem_trees(s, s + size, depth + 1)) if size > 1 else []
        nodes.append((s, s + size, draw(st.sampled_from(["System RAM", "Reserved", "PCI Bus 0000:00",
                                                         "Crash kernel", "Kernel code"])), kids))
        at = s + size
    return nodes


def render_iomem(nodes, depth=0):
    out = ""
    for s, e, name, kids in nodes:
        out += f"{'  ' * depth}{s:08x}-{e - 1:08x} : {name}\n" + render_iomem(kids, depth + 1)
    return out


def flatten(nodes, depth=0):
    for s, e, name, kids in nodes:
        yield Range(s, e), name, depth
        yield from flatten(kids, depth + 1)


@settings(max_examples=100)
@given(iomem_trees())
def test_iomem_round_trip(nodes):
    text = render_iomem(nodes)
    if not text.strip() or all(r.end == 1 for r, _, _ in flatten(nodes)):
        return  # an empty or all-zero file is another test's business
    iomem = parse_iomem(text)
    assert [(n.range, n.name, n.depth) for n in iomem.walk()] == list(flatten(nodes))
    assert [n.line for n in iomem.walk()] == list(range(1, text.count("\n") + 1))
    for node in iomem.walk():
        assert all(node.range.contains(c.range) for c in node.children)


def test_unreadable_iomem(tmp_path):
    m = make_machine(tmp_path, files=without("proc/iomem"))
    (tmp_path / "proc" / "iomem").mkdir()
    with pytest.raises(MachineError, match=rf"^Cannot read {tmp_path}/proc/iomem: Is a directory$"):
        m.crash_region


def test_read_accepts_a_path_object(tmp_path):
    make_machine(tmp_path)
    m = Machine.read(tmp_path)
    assert m.root == str(tmp_path) and m.crash_region == Range(0x2E000000, 0x3E000000)


def test_flattened_device_tree(qemu, tmp_path):
    """sys/firmware/fdt as bytes: the machine's DTB where it booted with one, else None."""
    assert qemu.flattened_device_tree is None
    snap = Path(__file__).resolve().parents[1] / "snapshots" / "qemu-arm64-2g-1cpu"
    require((snap / "sys/firmware/fdt").is_file(), f"{snap} has no sys/firmware/fdt")
    dt = Machine.read(str(snap)).flattened_device_tree
    assert dt == (snap / "sys/firmware/fdt").read_bytes()
    assert dt[:4] == b"\xd0\x0d\xfe\xed" and len(dt) == int.from_bytes(dt[4:8], "big")
    (tmp_path / "m" / "sys/firmware/fdt").mkdir(parents=True)
    with pytest.raises(MachineError, match=r"^Cannot read .*/m/sys/firmware/fdt: Is a directory$"):
        Machine.read(str(tmp_path / "m")).flattened_device_tree
