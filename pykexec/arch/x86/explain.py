"""Explaining an x86 kernel image for `pykexec inspect`: the bzImage setup header, field
by field, with what each field means (reached through x86_64's and i386's
`image_explainer()`)."""

from __future__ import annotations

from typing import Dict

from pykexec.abi.fields import field_offset
from pykexec.arch.x86 import bootparams as bp
from pykexec.core.units import human_size

KIND = "bzimage"   # what inspect calls the file
_BOOT_SIGNATURE_AT = bp.SETUP_HEADER_OFFSET + field_offset(bp.SetupHeader, "boot_flag")
_HEADER_AT = bp.SETUP_HEADER_OFFSET + field_offset(bp.SetupHeader, "header")

SETUP_FIELDS = (   # (field, meaning); offsets come from bp.SetupHeader
    ("setup_sects", "512-byte sectors of real-mode setup code after the boot sector "
     "(0 means 4)"),
    ("root_flags", "mount root read-only if non-zero (obsolete)"),
    ("syssize", "size of the protected-mode code in 16-byte paragraphs"),
    ("vid_mode", "video mode (0xffff: normal)"),
    ("root_dev", "default root device (obsolete)"),
    ("boot_flag", "0xaa55: boot sector signature"),
    ("header", "'HdrS': the boot protocol header is present"),
    ("version", "boot protocol version"),
    ("kernel_version", "offset - 0x200 of the kernel version string"),
    ("type_of_loader", "boot loader id (a loader writes it; kexec: 0xd0)"),
    ("loadflags", "LOADED_HIGH (protected-mode code at 1 MiB), CAN_USE_HEAP, ..."),
    ("code32_start", "32-bit entry for the boot loader (protected-mode code address)"),
    ("ramdisk_image", "physical address of the initrd (a loader writes it)"),
    ("ramdisk_size", "initrd size (a loader writes it)"),
    ("heap_end_ptr", "end of the setup heap (a loader writes it)"),
    ("cmd_line_ptr", "physical address of the command line (a loader writes it)"),
    ("initrd_addr_max", "highest address the initrd may end at"),
    ("kernel_alignment", "physical alignment the kernel needs when relocated"),
    ("relocatable_kernel", "the kernel can run at any aligned address"),
    ("min_alignment", "smallest alignment the kernel accepts, as a power of two"),
    ("xloadflags", "64-bit entry, loadable above 4 GiB, EFI handover, kexec EFI..."),
    ("cmdline_size", "longest command line without its NUL"),
    ("hardware_subarch", "0: PC"),
    ("payload_offset", "offset of the compressed kernel in the protected-mode code"),
    ("payload_length", "length of the compressed kernel"),
    ("setup_data", "physical address of the first setup_data item (a loader writes it)"),
    ("pref_address", "preferred load address of the kernel"),
    ("init_size", "memory the kernel needs from its load address while it "
     "decompresses and starts"),
    ("handover_offset", "EFI handover entry, from the protected-mode code"),
    ("kernel_info_offset", "offset of the kernel_info structure"),
)
LOADFLAGS = {0x01: "LOADED_HIGH", 0x20: "QUIET_FLAG", 0x40: "KEEP_SEGMENTS",
             0x80: "CAN_USE_HEAP"}
XLOADFLAGS = {0x01: "XLF_KERNEL_64", 0x02: "XLF_CAN_BE_LOADED_ABOVE_4G",
              0x04: "XLF_EFI_HANDOVER_32", 0x08: "XLF_EFI_HANDOVER_64",
              0x10: "XLF_EFI_KEXEC", 0x20: "XLF_5LEVEL", 0x40: "XLF_5LEVEL_ENABLED"}




def probe(head: bytes) -> bool:
    """A boot sector signature and "HdrS" where the boot protocol puts them."""
    return (len(head) >= _HEADER_AT + 4
            and head[_HEADER_AT:_HEADER_AT + 4] == bp.HDRS_MAGIC.to_bytes(4, "little")
            and head[_BOOT_SIGNATURE_AT:_BOOT_SIGNATURE_AT + 2] == bp.BOOT_FLAG.to_bytes(2, "little"))


def _bits(value: int, names: Dict[int, str]) -> str:
    parts = [name for bit, name in names.items() if value & bit]
    rest = value & ~sum(names)
    if rest:
        parts.append(f"{rest:#x}")
    return " | ".join(parts) or "none"


def explain(data: bytes, path: str, file_size: int) -> str:
    """What a bzImage's setup header says; ValueError (naming `path`) if it cannot say."""
    header_end = bp.SETUP_HEADER_OFFSET + bp.SETUP_HEADER_SIZE
    if len(data) < header_end:
        raise ValueError(f"{path}: too short for a setup header")
    hdr = bp.SetupHeader.parse(data[bp.SETUP_HEADER_OFFSET:header_end])
    setup_sects = hdr.setup_sects or 4
    pm_offset = (setup_sects + 1) * 512
    if pm_offset > len(data):
        raise ValueError(f"{path}: setup_sects {hdr.setup_sects} puts the kernel past the "
                           f"end of the file")
    version = f"{hdr.version >> 8}.{hdr.version & 0xFF:02d}"
    kver = ""
    if hdr.kernel_version and 0x200 + hdr.kernel_version < len(data):
        raw = data[0x200 + hdr.kernel_version:0x200 + hdr.kernel_version + 256]
        kver = raw.split(b"\0", 1)[0].decode("latin-1", "replace")
    out = [f"{path}: bzImage (x86 boot protocol {version}), {file_size} bytes"]
    if kver:
        out.append(f"  kernel version: {kver}")
    out.append(f"  real-mode setup: {pm_offset:#x} bytes (boot sector + {setup_sects} sectors); "
               f"protected-mode code: {file_size - pm_offset:#x} bytes at file offset {pm_offset:#x}")
    if hdr.version >= 0x20C and hdr.xloadflags & bp.XLF_KERNEL_64:
        out.append("  64-bit entry (startup_64): protected-mode code + 0x200")
    out.append("")
    out.append("  setup header (offset, field, value, meaning)")
    for name, meaning in SETUP_FIELDS:
        offset = bp.SETUP_HEADER_OFFSET + field_offset(bp.SetupHeader, name)
        if name == "header":
            value = "HdrS"
        else:
            value_int = hdr[name]
            if name == "loadflags":
                value = f"{value_int:#x} ({_bits(value_int, LOADFLAGS)})"
            elif name == "xloadflags":
                value = f"{value_int:#x} ({_bits(value_int, XLOADFLAGS)})"
            elif name == "version":
                value = f"{value_int:#06x} ({version})"
            elif name in ("init_size", "kernel_alignment", "syssize") and value_int:
                shown = value_int * 16 if name == "syssize" else value_int
                value = f"{value_int:#x} ({human_size(shown)})"
            elif name == "min_alignment":
                value = f"{value_int} ({human_size(1 << value_int) if value_int < 64 else '?'})"
            elif name == "cmdline_size":
                value = f"{value_int:#x} ({value_int} bytes)"
            else:
                value = f"{value_int:#x}"
        out.append(f"  {offset:#05x}  {name:<19} {value:<34} {meaning}")
    return "\n".join(out) + "\n"
