"""The zero page (struct boot_params) a loader hands to an x86 Linux kernel.

It starts from the setup header of the kernel file and the running kernel's boot_params
(for screen_info and hardware_subarch, as kexec-tools does when /dev/fb0 says nothing
better), then fills what a boot loader owns: loader type, command line pointer, initrd,
the e820 memory map and the setup_data list.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from construct import Int32ul

from pykexec.abi.fields import field_offset
from pykexec.arch.x86 import bootparams as bp

if TYPE_CHECKING:
    from pykexec.arch.x86.firmware import EddFacts

LOADER_TYPE_KEXEC = 0xD0   # kexec's registered boot loader id (0x0D) in the high nibble
CL_MAGIC = 0xA33F
# The screen_info a kernel expects from a loader that knows nothing about the display.
# Fields: orig_x, orig_y, ext_mem_k, video_page, video_mode, video_cols, flags, unused,
# ega_bx, unused, video_lines, isVGA, video_points.
DEFAULT_SCREEN_INFO = struct.pack("<BBHHBBBBHHBBH", 0, 0, 0, 0, 0, 80, 0, 0, 0, 0, 25, 1, 16)

E820Entry = Tuple[int, int, int]  # (addr, size, e820 type)
SCREEN_INFO_SIZE = bp.ScreenInfo.sizeof()
# where the running kernel's hardware_subarch is (its boot_params may be that short)
_SUBARCH_AT = bp.SETUP_HEADER_OFFSET + field_offset(bp.SetupHeader, "hardware_subarch")


@dataclass(frozen=True)
class ZeroPageInputs:
    header_bytes: bytes             # the kernel file's setup header, from 0x1f1
    cmdline_addr: int
    cmdline_offset: int             # from the zero page, for the old cl_magic/cl_offset protocol
    e820: Sequence[E820Entry]
    initrd: Optional[Tuple[int, int]] = None  # (addr, size)
    setup_data_head: int = 0
    acpi_rsdp: int = 0
    running_boot_params: Optional[bytes] = None
    edd: Optional["EddFacts"] = None  # x86.firmware.edd: BIOS disk data for the new kernel


def split_e820(entries: Sequence[E820Entry]) -> Tuple[Sequence[E820Entry], Sequence[E820Entry]]:
    """The first 128 go into boot_params; the rest need a SETUP_E820_EXT setup_data."""
    n = bp.E820_MAX_ENTRIES_ZEROPAGE
    return entries[:n], entries[n:]


def e820_ext_payload(entries: Sequence[E820Entry]) -> bytes:
    return b"".join(bp.E820Entry.build(dict(addr=a, size=s, type=t)) for a, s, t in entries)


def build_zero_page(inputs: ZeroPageInputs) -> bytes:
    page = bytearray(bp.BOOT_PARAMS_SIZE)
    running = inputs.running_boot_params
    if running and len(running) >= SCREEN_INFO_SIZE:
        page[0:SCREEN_INFO_SIZE] = running[0:SCREEN_INFO_SIZE]
    else:
        page[0:len(DEFAULT_SCREEN_INFO)] = DEFAULT_SCREEN_INFO
    hdr_at = bp.SETUP_HEADER_OFFSET
    page[hdr_at:hdr_at + len(inputs.header_bytes)] = inputs.header_bytes
    params = bp.BootParams.parse(bytes(page))

    hdr = params.hdr
    hdr.type_of_loader = LOADER_TYPE_KEXEC
    hdr.loadflags = 0
    hdr.root_flags = 0xFFFF   # mount root read-only, as the kernel's default
    hdr.root_dev = 0x0300
    hdr.boot_flag = 0x0055    # kexec-tools clears the high byte ("aux device info")
    hdr.cmd_line_ptr = inputs.cmdline_addr & 0xFFFFFFFF
    params.ext_cmd_line_ptr = inputs.cmdline_addr >> 32
    if inputs.initrd:
        addr, size = inputs.initrd
        hdr.ramdisk_image, params.ext_ramdisk_image = addr & 0xFFFFFFFF, addr >> 32
        hdr.ramdisk_size, params.ext_ramdisk_size = size & 0xFFFFFFFF, size >> 32
    else:
        hdr.ramdisk_image = hdr.ramdisk_size = 0
        params.ext_ramdisk_image = params.ext_ramdisk_size = 0
    if running and len(running) >= _SUBARCH_AT + 4:
        hdr.hardware_subarch = Int32ul.parse(running[_SUBARCH_AT:_SUBARCH_AT + 4])
    hdr.setup_data = inputs.setup_data_head
    params.acpi_rsdp_addr = inputs.acpi_rsdp

    in_page, _ = split_e820(list(inputs.e820))
    table = [dict(addr=a, size=s, type=t) for a, s, t in in_page]
    table += [dict(addr=0, size=0, type=0)] * (bp.E820_MAX_ENTRIES_ZEROPAGE - len(table))
    params.e820_table = table
    params.e820_entries = len(in_page)
    # The legacy memory-size fields describe the RAM that runs past 1 MiB, if any. As in
    # kexec-tools they are counted from the range's *inclusive* end (one KiB less than the
    # exclusive end gives when that is KiB-aligned), and a range ending at 1 MiB is skipped.
    ext_mem_k = alt_mem_k = 0
    for addr, size, typ in inputs.e820:
        last = addr + size - 1
        if typ == bp.E820_RAM and addr <= 0x100000 < last:
            mem_k = (last >> 10) - 1024
            ext_mem_k, alt_mem_k = min(mem_k, 0xFC00), min(mem_k, 0xFFFFFFFF)
    params.alt_mem_k = alt_mem_k
    _fill_edd(params, inputs.edd)

    params.screen_info.ext_mem_k = ext_mem_k
    params.screen_info.cl_magic = CL_MAGIC
    params.screen_info.cl_offset = inputs.cmdline_offset & 0xFFFF
    return bp.BootParams.build(params)


def setup_data_item(next_addr: int, typ: int, payload: bytes) -> bytes:
    return bp.SetupDataHeader.build(dict(next=next_addr, type=typ, len=len(payload))) + payload


_NO_EDD = dict(device=0, version=0, interface_support=0, legacy_max_cylinder=0,
               legacy_max_head=0, legacy_sectors_per_track=0,
               params=bytes(bp.EDD_DEVICE_PARAM_SIZE))


def _fill_edd(params, edd: Optional["EddFacts"]) -> None:
    """eddbuf, edd_mbr_sig_buffer and their counts from the machine's EDD data (kexec-tools
    passes what /sys/firmware/edd says; the counts stay 0 when there is none)."""
    entries = list(edd.entries) if edd is not None else []
    sigs = list(edd.mbr_signatures) if edd is not None else []
    params.eddbuf = entries + [_NO_EDD] * (bp.EDD_MAX_ENTRIES - len(entries))
    params.eddbuf_entries = len(entries)
    params.edd_mbr_sig_buffer = sigs + [0] * (bp.EDD_MBR_SIG_MAX - len(sigs))
    params.edd_mbr_sig_buf_entries = len(sigs)
