"""EFI runtime data for a normal load: when it is passed and what the buffers hold."""

import struct
from types import SimpleNamespace

from pykexec.arch.x86.efi import (EFI_MEMDESC_SIZE, efi_boot_data, patch_efi_info)
from pykexec.machine import EfiFacts, EfiRuntimeMapEntry
from pykexec.arch.x86 import bootparams as bp


def machine(memmap_size=0x118, version=1, entries=2, present=True):
    params = bytearray(4096)
    struct.pack_into("<8I", params, 0x1C0, 0x34364C45, 0x3F9EC018, 48, version, 0x1234000,
                     memmap_size, 0, 0)
    runtime = tuple(EfiRuntimeMapEntry(i, 6, 0x3EEB0000 + i * 0x1000, 0xFFFFFFFEFF000000 + i,
                                       1, 0x800000000000000F) for i in range(entries))
    efi = EfiFacts(present=present, systab=(("SMBIOS", 0x3F9C8000),), fw_vendor=0x3F9EB018,
                   runtime=0x3F9EBB98, config_table=0x3F9EAF18, runtime_map_dir=True,
                   runtime_map=runtime)
    return SimpleNamespace(boot_params=bytes(params), efi=efi)


def test_passed_only_to_an_efi_kexec_kernel_without_noefi():
    flags = bp.XLF_KERNEL_64 | bp.XLF_CAN_BE_LOADED_ABOVE_4G | bp.XLF_EFI_KEXEC
    assert efi_boot_data(machine(), flags, noefi=False) is not None
    assert efi_boot_data(machine(), flags & ~bp.XLF_EFI_KEXEC, noefi=False) is None
    assert efi_boot_data(machine(), flags, noefi=True) is None
    assert efi_boot_data(machine(memmap_size=0), flags, noefi=False) is None   # BIOS boot
    assert efi_boot_data(machine(version=2), flags, noefi=False) is None
    assert efi_boot_data(machine(entries=0), flags, noefi=False) is None
    assert efi_boot_data(machine(present=False), flags, noefi=False) is None


def test_buffers_and_efi_info():
    data = efi_boot_data(machine(), bp.XLF_EFI_KEXEC, noefi=False)
    assert data.entries == 2 and len(data.runtime_map) == 2 * EFI_MEMDESC_SIZE
    typ, pad, phys, virt, pages, attr = struct.unpack_from("<IIQQQQ", data.runtime_map, 40)
    assert (typ, pad, phys, pages) == (6, 0, 0x3EEB1000, 1)
    assert struct.unpack_from("<4Q", data.setup_payload) == (0x3F9EB018, 0x3F9EBB98,
                                                              0x3F9EAF18, 0x3F9C8000)
    assert len(data.setup_payload) == 96 and data.setup_payload[32:] == bytes(64)
    page = patch_efi_info(bytes(4096), data, 0x1_2345_6000)
    sig, systab, desc_size, version, lo, size, _, hi = struct.unpack_from("<8I", page, 0x1C0)
    assert (sig, systab, desc_size, version) == (0x34364C45, 0x3F9EC018, 40, 1)
    assert (lo, hi, size) == (0x23456000, 1, 80)


# --- crash loads: the capture kernel gets the EFI data too (kexec-tools does the same) ------

import os
import shutil

import pytest

from pykexec.arch import parse_args, plan_load
from pykexec.machine import Machine
from tests.bed.fakekernel import FakeKernel, bzimage_bytes

SNAPSHOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "snapshots", "qemu-x86_64-1g-2cpu")
RUNTIME_MAP = [(0x6, 0x3EEB0000, 0xFFFFFFFEFF000000, 4), (0x5, 0x3EEB4000, 0xFFFFFFFEFEFFC000, 4)]


def uefi_machine(tmp_path) -> str:
    """The 1 GiB snapshot as if booted through UEFI: efi_info in the running zero page and
    sys/firmware/efi with a two-entry runtime map."""
    root = tmp_path / "uefi"
    shutil.copytree(SNAPSHOT, root, symlinks=True)
    params = bytearray((root / "sys/kernel/boot_params/data").read_bytes())
    struct.pack_into("<8I", params, 0x1C0, 0x34364C45, 0x3F9EC018, 48, 1, 0x3E234000,
                     48 * len(RUNTIME_MAP), 0, 0)
    (root / "sys/kernel/boot_params/data").write_bytes(bytes(params))
    efi = root / "sys/firmware/efi"
    efi.mkdir(parents=True)
    (efi / "systab").write_text("ACPI20=0x3f97e014\nACPI=0x3f97e000\nSMBIOS=0x3f9c8000\n")
    (efi / "fw_vendor").write_text("0x3f9eb018\n")
    (efi / "runtime").write_text("0x3f9ebb98\n")
    (efi / "config_table").write_text("0x3f9eaf18\n")
    for i, (typ, phys, virt, pages) in enumerate(RUNTIME_MAP):
        d = efi / "runtime-map" / str(i)
        d.mkdir(parents=True)
        for name, value in (("type", typ), ("phys_addr", phys), ("virt_addr", virt),
                            ("num_pages", pages), ("attribute", 0x800000000000000F)):
            (d / name).write_text(f"{value:#x}\n")
    return str(root)


def crash_plan(root, kernel, *extra):
    return plan_load(parse_args(["-c", "-p", kernel, "--append=console=ttyS0", *extra,
                                 "--sysroot", root]), Machine.read(root),
                     random_bytes=lambda n: bytes(n))


@pytest.fixture
def kernels(tmp_path):
    efi_kexec = tmp_path / "bzImage"
    efi_kexec.write_bytes(bzimage_bytes(FakeKernel()))
    no_efi = tmp_path / "bzImage-no-efi-kexec"
    no_efi.write_bytes(bzimage_bytes(FakeKernel(xloadflags=0x3)))
    return str(efi_kexec), str(no_efi)


def test_a_crash_load_on_uefi_passes_the_runtime_map_and_setup_efi(tmp_path, kernels):
    root = uefi_machine(tmp_path)
    plan = crash_plan(root, kernels[0])
    window = plan.notes["crash_window"]
    setup = [s for s in plan.segments_of("setup_data") if s.source.startswith("SETUP_EFI")]
    memmap = [s for s in plan.segments_of("setup_data") if "EFI runtime memory map" in s.source]
    assert len(setup) == len(memmap) == 1
    for seg in setup + memmap:                     # in the crash region, like everything else
        assert window[0] <= seg.mem and seg.mem + seg.memsz <= window[1]
    next_, typ, length = struct.unpack_from("<QII", setup[0].data)
    assert (typ, length) == (bp.SETUP_EFI, 96)
    assert struct.unpack_from("<4Q", setup[0].data, 16) == (0x3F9EB018, 0x3F9EBB98, 0x3F9EAF18,
                                                             0x3F9C8000)
    descriptors = [struct.unpack_from("<IIQQQQ", memmap[0].data, 40 * i) for i in range(2)]
    assert [(t, p, v, n) for t, _, p, v, n, _ in descriptors] == RUNTIME_MAP
    [zero_page] = plan.segments_of("boot_params")
    info = bp.EfiInfo.parse(zero_page.data[0x1C0:0x1E0])
    assert (info.efi_memmap | info.efi_memmap_hi << 32, info.efi_memmap_size) == \
        (memmap[0].mem, 80)
    assert info.efi_systab == 0x3F9EC018 and info.efi_loader_signature == 0x34364C45
    # the capture kernel finds ACPI through EFI: no acpi_rsdp= (kexec-tools' rule)
    assert "acpi_rsdp=" not in plan.cmdline and "elfcorehdr=" in plan.cmdline
    assert plan.notes["efi_runtime_map_entries"] == 2


@pytest.mark.parametrize("why", ["--noefi", "kernel without XLF_EFI_KEXEC", "BIOS machine"])
def test_without_efi_data_the_capture_kernel_gets_acpi_rsdp(tmp_path, kernels, why):
    root = SNAPSHOT if why == "BIOS machine" else uefi_machine(tmp_path)
    kernel = kernels[1] if why.startswith("kernel") else kernels[0]
    plan = crash_plan(root, kernel, *(["--noefi"] if why == "--noefi" else []))
    assert not [s for s in plan.segments if "EFI" in s.source]
    assert "acpi_rsdp=0x" in plan.cmdline
    assert "efi_runtime_map_entries" not in plan.notes
