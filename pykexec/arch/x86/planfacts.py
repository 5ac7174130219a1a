"""Reading x86's boot structures back out of a plan: the views' x86 decoder.

`pykexec.views.planfacts` and `pykexec.views.show` reach this module through the plan's
architecture (`plan_decoder()` of arch/x86_64 and arch/i386; the PlanDecoder of
pykexec.arch.interfaces). Everything is read the way the capture kernel and purgatory
read it, so a plan recorded from Debian's kexec decodes like one pykexec built: the zero
page (boot_params) or the ELF `--args-linux` parameter block, the e820 map with its
SETUP_E820_EXT overflow, the setup_data chain, the command line, and purgatory's
register block found by what it must hold.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

from pykexec.abi.fields import field_offset
from pykexec.arch.x86 import bootparams as bp
from pykexec.arch.x86.abi import START_KERNEL_MAP
from pykexec.arch.x86.purgatory_setup import I386, X86_64
from pykexec.core.plan import Plan, Segment

E820_TYPE_NAMES = {bp.E820_RAM: "RAM", bp.E820_RESERVED: "reserved", bp.E820_ACPI: "ACPI",
                   bp.E820_NVS: "NVS", bp.E820_UNUSABLE: "unusable", bp.E820_PMEM: "PMEM",
                   bp.E820_PRAM: "PRAM"}
E820_RAM = bp.E820_RAM
E820_IN_BOOT_PARAMS = bp.E820_MAX_ENTRIES_ZEROPAGE   # entries past these are SETUP_E820_EXT
SETUP_E820_EXT_NAME = "SETUP_E820_EXT"
SETUP_DATA_NAMES = {bp.SETUP_E820_EXT: SETUP_E820_EXT_NAME, bp.SETUP_DTB: "SETUP_DTB",
                    bp.SETUP_PCI: "SETUP_PCI", bp.SETUP_EFI: "SETUP_EFI",
                    5: "SETUP_APPLE_PROPERTIES", 6: "SETUP_JAILHOUSE", 7: "SETUP_CC_BLOB",
                    8: "SETUP_IMA", bp.SETUP_RNG_SEED: "SETUP_RNG_SEED"}
SETUP_DATA_MEANING = {
    bp.SETUP_E820_EXT: "e820 entries that did not fit the 128 slots of boot_params",
    bp.SETUP_EFI: "EFI system table and runtime map addresses for the capture kernel",
    bp.SETUP_RNG_SEED: "random seed for the capture kernel's RNG",
    bp.SETUP_PCI: "PCI option ROM images",
}
# the setup header fields a plan's facts keep (what a loader writes or must agree on)
BOOT_HEADER_FIELDS = ("type_of_loader", "loadflags", "ramdisk_image", "ramdisk_size",
                      "cmd_line_ptr", "setup_data", "version", "cmdline_size")
_E820_ENTRY_SIZE = bp.E820Entry.sizeof()


_HDRS_AT = bp.SETUP_HEADER_OFFSET + field_offset(bp.SetupHeader, "header")
# a zero page is at least its setup header (which ends before the EDD MBR signatures)
_HEADER_AREA_END = field_offset(bp.BootParams, "edd_mbr_sig_buffer")


def is_kernel_text(vaddr: int) -> bool:
    """A core PT_LOAD at `vaddr` maps the kernel image (x86_64's __START_KERNEL_map)."""
    return vaddr >= START_KERNEL_MAP


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 4], "little")


def is_boot_params(seg: Segment) -> bool:
    """The segment's bytes are a zero page: the setup header's "HdrS" where it belongs."""
    return (seg.mem is not None and seg.bufsz >= _HEADER_AREA_END
            and _u32(seg.data, _HDRS_AT) == bp.HDRS_MAGIC)


def boot_params_segment(plan: Plan) -> Optional[Segment]:
    """The segment holding boot_params (bzImage) or the ELF `--args-linux` parameter block."""
    for seg in plan.segments:
        if seg.kind in ("boot_params", "param_block"):
            return seg
    return next((s for s in plan.segments if is_boot_params(s)), None)


@functools.lru_cache(maxsize=4)
def _parse_boot_params(page: bytes):
    return bp.BootParams.parse(page)


def _boot_params(plan: Plan):
    """(segment, parsed boot_params; callers only read it): parsed once per listing, not
    once per fact (the 4 KiB parse is the slowest step of a listing)."""
    seg = boot_params_segment(plan)
    if seg is None:
        return None, None
    return seg, _parse_boot_params(seg.read(seg.mem, bp.BOOT_PARAMS_SIZE))


def cmdline_address(plan: Plan) -> Optional[int]:
    """Where boot_params says the command line is (0: none); None without boot_params."""
    _seg, params = _boot_params(plan)
    if params is None:
        return None
    return params.hdr.cmd_line_ptr | (params.ext_cmd_line_ptr << 32)


def setup_data_chain(plan: Plan) -> List[Tuple[int, int, int, bytes]]:
    """(address, type, len, data) for each setup_data item linked from boot_params."""
    _seg, params = _boot_params(plan)
    if params is None:
        return []
    addr = params.hdr.setup_data
    header_size = bp.SetupDataHeader.sizeof()
    chain, seen = [], set()
    while addr and addr not in seen:
        seen.add(addr)
        holder = plan.segment_at(addr)
        if holder is None:
            break
        hdr = bp.SetupDataHeader.parse(holder.read(addr, header_size))
        chain.append((addr, hdr.type, hdr.len, holder.read(addr + header_size, hdr.len)))
        addr = hdr.next
    return chain


def read_e820(plan: Plan) -> List[Tuple[int, int, int]]:
    """The capture kernel's e820 table: boot_params entries, then SETUP_E820_EXT ones."""
    _seg, params = _boot_params(plan)
    if params is None:
        return []
    entries = [(e.addr, e.size, e.type) for e in params.e820_table[:params.e820_entries]]
    for _addr, typ, length, data in setup_data_chain(plan):
        if typ == bp.SETUP_E820_EXT:
            for off in range(0, length - length % _E820_ENTRY_SIZE, _E820_ENTRY_SIZE):
                e = bp.E820Entry.parse(data[off:off + _E820_ENTRY_SIZE])
                entries.append((e.addr, e.size, e.type))
    return entries


def boot_header(plan: Plan) -> Dict[str, int]:
    """The setup header fields two loaders must agree on, with acpi_rsdp_addr and where."""
    seg, params = _boot_params(plan)
    if params is None:
        return {}
    out = {name: params.hdr[name] for name in BOOT_HEADER_FIELDS}
    out["acpi_rsdp_addr"] = params.acpi_rsdp_addr
    out["address"] = seg.mem
    return out


def find_entry_registers(plan: Plan) -> Optional[Dict[str, int]]:
    """Locate purgatory's register block by what it must hold, not by symbol tables.

    A plan recorded from another loader has no symbols, so search the purgatory segment for
    a 64-bit block whose rsi is the boot_params address and whose rip lands in a segment
    (or a 32-bit block with esi/eip likewise).
    """
    params = boot_params_segment(plan)
    purg = next((s for s in plan.segments if s.kind == "purgatory"), None)
    if purg is None and plan.entry is not None:
        purg = plan.segment_at(plan.entry)
    if params is None or purg is None:
        return None
    data = purg.data
    for width, block in ((64, X86_64.registers), (32, I386.registers)):
        word = width // 8
        size = block.layout.sizeof()
        params_at = field_offset(block.layout, block.boot_params)
        for off in range(0, len(data) - size + 1, word):
            at = off + params_at
            if int.from_bytes(data[at:at + word], "little") != params.mem:
                continue
            parsed = block.layout.parse(data[off:off + size])
            regs = {name: parsed[name] for name in block.names}
            if plan.segment_at(regs[block.entry]) is not None:
                regs["_block_offset"] = off
                regs["_width"] = width
                return regs
    return None


def bzimage_payload(kernel: bytes) -> Optional[bytes]:
    """The protected-mode code of a bzImage (what a loader copies), or None."""
    if len(kernel) < _HEADER_AREA_END or _u32(kernel, _HDRS_AT) != bp.HDRS_MAGIC:
        return None
    hdr = bp.SetupHeader.parse(kernel[bp.SETUP_HEADER_OFFSET:_HEADER_AREA_END])
    return kernel[((hdr.setup_sects or 4) + 1) * 512:]
