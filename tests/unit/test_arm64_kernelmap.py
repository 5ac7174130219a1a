"""The running arm64 kernel's mappings (pykexec.arch.arm64.kernelmap) from VMCOREINFO in
/proc/kcore, checked against the snapshots' other files: kcore's own PT_LOADs are the
oracle, and a machine whose files contradict each other, or that has no VMCOREINFO, is
refused in one line (a core header would mislead the dump tools)."""

from __future__ import annotations

import shutil

import pytest
from elftools.elf.elffile import ELFFile

from pykexec.arch.arm64.kernelmap import (kernel_map, linear_map_base, parse_vmcoreinfo,
                                          vmcoreinfo_number)
from pykexec.machine import Machine, MachineError
from tests.bed.arm64guest import ARM64_MACHINES, SNAPSHOTS_DIR

NAMES = sorted(m.name for m in ARM64_MACHINES)


@pytest.mark.parametrize("name", NAMES)
def test_mappings_agree_with_kcore(name):
    snap = SNAPSHOTS_DIR / name
    kmap = kernel_map(Machine.read(str(snap)))
    assert kmap.va_bits == 48 and kmap.page_offset == 0xFFFF000000000000
    with open(snap / "proc/kcore", "rb") as f:
        loads = [dict(s.header) for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD"]
    # every linear-map PT_LOAD of kcore: vaddr = paddr - PHYS_OFFSET + PAGE_OFFSET
    linear = [l for l in loads if 0xFFFF000000000000 <= l["p_vaddr"] < 0xFFFF800000000000]
    assert linear
    for l in linear:
        assert kmap.linear_vaddr(l["p_paddr"]) == l["p_vaddr"]
    text = [l for l in loads if l["p_vaddr"] == kmap.text.virt_start]
    assert len(text) == 1
    assert (text[0]["p_paddr"], text[0]["p_memsz"]) == (kmap.text.phys_start, kmap.text.size)


def test_linear_map_base_before_and_after_5_4():
    assert linear_map_base(48, 0xFFFF800010080000) == 0xFFFF000000000000     # 5.4+
    assert linear_map_base(48, 0xFFFF000010080000) == 0xFFFF800000000000     # before 5.4
    assert linear_map_base(39, 0xFFFFFFC010080000) == 0xFFFFFF8000000000


def test_vmcoreinfo_numbers():
    info = parse_vmcoreinfo("NUMBER(VA_BITS)=48\nNUMBER(PHYS_OFFSET)=0x40000000\n"
                            "NUMBER(kimage_voffset)=0xffffc28096e00000\nSYMBOL(_stext)=ffff8000\n"
                            "NUMBER(VA_BITS)=52\n")
    assert vmcoreinfo_number(info, "NUMBER(VA_BITS)") == 48          # the first one wins
    assert vmcoreinfo_number(info, "NUMBER(PHYS_OFFSET)") == 0x40000000
    assert vmcoreinfo_number(info, "SYMBOL(_stext)") == 0xFFFF8000


def copy(tmp_path, name="qemu-arm64-2g-1cpu"):
    dest = tmp_path / name
    shutil.copytree(SNAPSHOTS_DIR / name, dest)
    return dest


def refused(path) -> str:
    with pytest.raises(MachineError) as err:
        kernel_map(Machine.read(str(path)))
    assert "\n" not in str(err.value)
    return str(err.value)


def test_contradicting_kernel_code_is_refused(tmp_path):
    snap = copy(tmp_path)
    iomem = snap / "proc/iomem"
    iomem.write_text(iomem.read_text().replace("40210000-4185ffff : Kernel code",
                                               "40310000-4185ffff : Kernel code"))
    assert "'Kernel code' starts at 0x40310000" in refused(snap)


def test_contradicting_kernel_data_is_refused(tmp_path):
    snap = copy(tmp_path)
    iomem = snap / "proc/iomem"
    iomem.write_text(iomem.read_text().replace("41eb0000-4220ffff : Kernel data",
                                               "41eb0000-4230ffff : Kernel data"))
    assert "'Kernel data' ends at 0x42310000" in refused(snap)


def test_contradicting_text_symbol_is_refused(tmp_path):
    snap = copy(tmp_path)
    (snap / "proc/kallsyms").write_text("ffffc280d7200000 T _text\nffffc280d7010000 T _stext\n")
    assert "_text is 0xffffc280d7200000" in refused(snap)


def test_no_vmcoreinfo_in_kcore_is_refused(tmp_path):
    snap = copy(tmp_path)
    kcore = snap / "proc/kcore"
    kcore.write_bytes(kcore.read_bytes().replace(b"VMCOREINFO\0", b"NOTVMCORE\0\0"))
    assert "no VMCOREINFO note" in refused(snap)


def test_a_crash_load_there_is_one_line_exit_255(tmp_path):
    from tests.unit.test_arm64_load import cli, image
    snap = copy(tmp_path)
    kcore = snap / "proc/kcore"
    kcore.write_bytes(kcore.read_bytes().replace(b"VMCOREINFO\0", b"NOTVMCORE\0\0"))
    kernel = tmp_path / "Image"
    kernel.write_bytes(image())
    status, out, err = cli(["-p", "-c", str(kernel), "--sysroot", str(snap), "--dry-run"])
    assert status == 255 and out == "" and err.count("\n") == 1 and "VMCOREINFO" in err
    # a normal load needs no core header
    status, _, err = cli(["-l", "-c", str(kernel), "--sysroot", str(snap), "--dry-run"])
    assert status == 0, err


def test_no_device_tree_is_one_line(tmp_path):
    from tests.unit.test_arm64_load import cli, image
    snap = copy(tmp_path)
    (snap / "sys/firmware/fdt").unlink()
    kernel = tmp_path / "Image"
    kernel.write_bytes(image())
    status, out, err = cli(["-p", "-c", str(kernel), "--sysroot", str(snap), "--dry-run"])
    assert status == 255 and out == "" and err.count("\n") == 1 and "--dtb" in err


def without_kcore_text(snap):
    """kcore with its kernel-image PT_LOAD turned into PT_NULL."""
    kcore = snap / "proc/kcore"
    data = bytearray(kcore.read_bytes())
    stext = int((snap / "proc/kallsyms").read_text().split()[0], 16)
    e_phoff = int.from_bytes(data[32:40], "little")
    for i in range(int.from_bytes(data[56:58], "little")):
        at = e_phoff + 56 * i
        vaddr = int.from_bytes(data[at + 16:at + 24], "little")
        memsz = int.from_bytes(data[at + 40:at + 48], "little")
        if int.from_bytes(data[at:at + 4], "little") == 1 and vaddr <= stext < vaddr + memsz \
                and memsz < 1 << 30:
            data[at:at + 4] = bytes(4)
    kcore.write_bytes(bytes(data))


def test_without_kcore_text_the_image_runs_from_stext_to_kernel_data_end(tmp_path):
    snap = copy(tmp_path)
    without_kcore_text(snap)
    text = kernel_map(Machine.read(str(snap))).text
    # _stext 0xffffc280d7010000 at 0x40210000 ("Kernel code"); "Kernel data" ends at 0x42210000
    assert (text.virt_start, text.phys_start, text.size) == \
        (0xFFFFC280D7010000, 0x40210000, 0x42210000 - 0x40210000)
    iomem = snap / "proc/iomem"
    iomem.write_text("".join(l for l in iomem.read_text().splitlines(True)
                             if "Kernel data" not in l))
    assert "extent is unknown" in refused(snap)
