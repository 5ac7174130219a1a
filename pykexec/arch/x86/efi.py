"""EFI runtime data for a normally kexec'd x86 kernel (what kexec-tools' setup_efi_data does).

EFI runtime services can be put into virtual mode only once per boot, so a kernel started
by kexec must map them exactly where the running kernel did. It learns where from three
things a loader hands over: the running kernel's efi_info (boot_params 0x1c0, with
efi_memmap pointing at a copy of the runtime memory map), that map itself (the
/sys/firmware/efi/runtime-map entries, 40 bytes each), and a SETUP_EFI setup_data item
with the firmware vendor, runtime services and configuration table addresses and SMBIOS.
Only kernels that announce XLF_EFI_KEXEC get it, and never with --noefi. Crash loads pass
it too, as kexec-tools does; then the capture kernel finds ACPI through EFI, and
acpi_rsdp= is added to its command line only where no EFI data is passed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from pykexec.abi.fields import field_offset
from pykexec.arch.x86 import bootparams as bp

EFI_INFO_OFFSET = field_offset(bp.BootParams, "efi_info")
EFI_INFO_SIZE = bp.EfiInfo.sizeof()
EFI_MEMDESC_SIZE = 40          # kexec-tools' runtime-map record: u32 type, u32 pad, 4 × u64
EFI_MEMDESC_VERSION = 1
RUNTIME_MAP_MIN_ADDR = 0x100000


@dataclass(frozen=True)
class EfiBootData:
    efi_info: bytes            # the running kernel's 32 bytes, to be pointed at the new map
    runtime_map: bytes         # n × 40 bytes
    setup_payload: bytes       # SETUP_EFI's 96 bytes

    @property
    def entries(self) -> int:
        return len(self.runtime_map) // EFI_MEMDESC_SIZE


def efi_boot_data(machine, xloadflags: int, noefi: bool) -> Optional[EfiBootData]:
    """What to pass, or None (BIOS boot, --noefi, a kernel without XLF_EFI_KEXEC, no
    runtime map, or a memory descriptor version other than 1)."""
    if noefi or not xloadflags & bp.XLF_EFI_KEXEC:
        return None
    running = machine.boot_params
    efi = machine.efi
    if not running or len(running) < EFI_INFO_OFFSET + EFI_INFO_SIZE or not efi.present:
        return None
    info = running[EFI_INFO_OFFSET:EFI_INFO_OFFSET + EFI_INFO_SIZE]
    parsed = bp.EfiInfo.parse(info)
    if parsed.efi_memmap_size == 0 or parsed.efi_memdesc_version != EFI_MEMDESC_VERSION or not efi.has_runtime_map:
        return None
    runtime_map = b"".join(struct.pack("<IIQQQQ", e.type, 0, e.phys_addr, e.virt_addr,
                                       e.num_pages, e.attribute) for e in efi.runtime_map)
    payload = struct.pack("<4Q", efi.fw_vendor or 0, efi.runtime or 0, efi.config_table or 0,
                          efi.systab_value("SMBIOS") or 0) + bytes(8 * 8)
    return EfiBootData(info, runtime_map, payload)


def place_efi_data(layout, data: EfiBootData) -> tuple:
    """SETUP_EFI then the runtime map, bottom-up from 1 MiB (kexec-tools' order).
    Returns (setup_data head after SETUP_EFI, runtime map address)."""
    from pykexec.arch.x86.zeropage import setup_data_item
    head = layout.add(setup_data_item(0, bp.SETUP_EFI, data.setup_payload), "setup_data",
                      "SETUP_EFI: firmware vendor, runtime services, config tables, SMBIOS",
                      low=RUNTIME_MAP_MIN_ADDR, top_down=False)
    memmap = layout.add(data.runtime_map, "setup_data",
                        f"EFI runtime memory map: {data.entries} descriptors of "
                        f"{EFI_MEMDESC_SIZE} bytes (efi_info.efi_memmap)",
                        low=RUNTIME_MAP_MIN_ADDR, top_down=False)
    return head, memmap


def patch_efi_info(zero_page: bytes, data: EfiBootData, memmap_addr: int) -> bytes:
    """The running efi_info, pointing at the copied runtime map."""
    info = bp.EfiInfo.parse(data.efi_info)
    info.efi_memdesc_size = EFI_MEMDESC_SIZE
    info.efi_memmap, info.efi_memmap_hi = memmap_addr & 0xFFFFFFFF, memmap_addr >> 32
    info.efi_memmap_size = len(data.runtime_map)
    page = bytearray(zero_page)
    page[EFI_INFO_OFFSET:EFI_INFO_OFFSET + EFI_INFO_SIZE] = bp.EfiInfo.build(info)
    return bytes(page)


def xloadflags(kernel: bytes) -> int:
    """The bzImage's xloadflags (XLF_EFI_KEXEC: it can take EFI data from kexec); 0 for an
    ELF vmlinux, which gets no EFI data (as in kexec-tools)."""
    from pykexec.arch.x86.bzimage import BzImage
    try:
        return BzImage.parse(kernel).header.xloadflags
    except Exception:  # noqa: BLE001 - not a bzImage
        return 0
