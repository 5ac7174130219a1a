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
