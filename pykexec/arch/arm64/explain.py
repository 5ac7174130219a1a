"""Explaining arm64 boot files for `pykexec inspect` (reached through the architecture's
`image_explainer()`): an Image (the booting.rst header field by field, the EFI stub's PE
header and signature), an Image.gz, an EFI zboot file (its zimg header, then the Image it
carries), and a flattened device tree (what the tree says a loader needs: memory, CPUs,
/chosen, the console; and what a kexec loader changes in it).
"""

from __future__ import annotations

import zlib
from typing import List, Optional

from pykexec.arch.arm64 import image as img
from pykexec.arch.arm64.dtb import (ELFCOREHDR, INITRD_END, INITRD_START, KASLR_SEED,
                                    RNG_SEED, USABLE_MEMORY, console_uart)
from pykexec.arch.arm64.fdt import FDT_MAGIC, Fdt, FdtHeader, Node
from pykexec.core.units import hex_range, human_size

KIND = "arm64 boot file"   # what inspect calls the file
FDT_MAGIC_BYTES = FDT_MAGIC.to_bytes(4, "big")
HEADER_PEEK = 64            # bytes of an Image.gz's start to decompress when probing
VALUE_SHOWN = 96            # characters of a property value shown
BANNER = b"Linux version "

IMAGE_FIELDS = (   # (offset, field, meaning); the layout is image.Arm64ImageHeader's
    (0x00, "code0", "first instruction (with the EFI stub: \"MZ\" and a branch)"),
    (0x04, "code1", "second instruction: branch to the kernel's start"),
    (0x08, "text_offset", "where the image starts in its 2 MiB aligned window"),
    (0x10, "image_size", "memory the kernel occupies from its start, BSS included "
     "(0: older than Linux 3.17)"),
    (0x18, "flags", ""),            # the meaning is the decoded value
    (0x38, "magic", "\"ARM\\x64\": an arm64 Image"),
    (0x3C, "pe_offset", "offset of the EFI stub's PE header (0: no EFI stub)"),
)
PAGE_SIZE_NAMES = {None: "page size unspecified", 4096: "4K pages", 16384: "16K pages",
                   65536: "64K pages"}

# What a kexec loader does with /chosen (dtb.boot_dtb); shown beside the tree's values.
CHOSEN_MEANING = {
    "bootargs": "the command line; a loader replaces it",
    "stdout-path": "the console",
    INITRD_START: "the initrd's start; a loader sets it, or removes it without an initrd",
    INITRD_END: "the initrd's end",
    KASLR_SEED: "KASLR seed (the running kernel wiped it to 0); a loader puts fresh bytes",
    RNG_SEED: "random seed for the kernel's pool; a loader puts fresh bytes",
    ELFCOREHDR: "a capture kernel's ELF core header (address size)",
    USABLE_MEMORY: "the only RAM a capture kernel may use",
}


def probe(head: bytes) -> bool:
    """An arm64 Image, an arm64 EFI zboot file, an Image.gz or a DTB, from the first bytes."""
    what = img.kind(head)
    if what == "image":
        return True
    if what == "zboot":
        return _zboot_machine(head) in (None, img.IMAGE_FILE_MACHINE_ARM64)
    if what == "gzip":
        return _gzip_head(head)[0x38:0x3C] == img.ARM64_IMAGE_MAGIC
    return head[:4] == FDT_MAGIC_BYTES


def _zboot_machine(head: bytes) -> Optional[int]:
    """The PE machine of a zboot file, when its head holds the PE header (another
    architecture's zboot is not ours)."""
    pe_at = int.from_bytes(head[0x3C:0x40], "little")
    if pe_at and len(head) >= pe_at + 6 and head[pe_at:pe_at + 4] == img.PE_MAGIC:
        return int.from_bytes(head[pe_at + 4:pe_at + 6], "little")
    return None


def _gzip_head(head: bytes) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEADER_PEEK)
    except zlib.error:
        return b""


def explain(data: bytes, path: str, file_size: int) -> str:
    """The report for the file; ValueError (ImageError, FdtError) naming `path` when the
    file cannot be explained."""
    if data[:4] == FDT_MAGIC_BYTES:
        return "\n".join(explain_dtb(data, path, file_size)) + "\n"
    what = img.kind(data)
    if what == "image":
        out = [f"{path}: arm64 Image (a Linux kernel for AArch64), {file_size} bytes"]
        out += _image_lines(data, path)
    elif what == "gzip":
        inner = img.gunzip_image(data, path)
        out = [f"{path}: gzip-compressed arm64 Image (Image.gz), {file_size} bytes, "
               f"{len(inner)} bytes decompressed; a loader decompresses it and loads the "
               f"Image"]
        out += _image_lines(inner, f"{path} (decompressed)")
    elif what == "zboot":
        out = _zboot_lines(data, path, file_size)
    else:
        raise img.ImageError(f"{path}: not an arm64 Image, Image.gz, EFI zboot file or "
                             f"device tree")
    return "\n".join(out) + "\n"


# --- Image ------------------------------------------------------------------------------------

def _flags_text(image: img.Arm64Image) -> str:
    parts = ["big endian" if image.big_endian else "little endian",
             PAGE_SIZE_NAMES[image.page_size],
             "placed anywhere in RAM" if image.place_anywhere
             else "placed as low in RAM as possible"]
    return ", ".join(parts)


def _banner(data: bytes) -> Optional[str]:
    at = data.find(BANNER)
    if at < 0:
        return None
    end = data.find(b"\n", at, at + 400)
    end = data.find(b"\0", at, at + 400) if end < 0 else end
    raw = data[at:end if end > 0 else at + 200]
    return raw.decode("latin-1").strip()


def _image_lines(data: bytes, path: str) -> List[str]:
    image = img.parse_image(data, path)
    head = img.Arm64ImageHeader.parse(data)
    out = []
    banner = _banner(data)
    if banner:
        out.append(f"  kernel: {banner}")
    if image.legacy:
        out.append(f"  image_size 0: a kernel older than Linux 3.17, loaded at "
                   f"{img.PRE_3_17_TEXT_OFFSET:#x} into a 2 MiB window, size unknown")
    else:
        out.append(f"  a loader puts it at a 2 MiB aligned address + {image.text_offset:#x} and "
                   f"keeps {human_size(image.image_size)} free there (image_size, BSS "
                   f"included); {_flags_text(image)}")
    if image.pe is not None:
        pe = image.pe
        sign = (f"signed: certificate table at {pe.certificate_offset:#x}, "
                f"{pe.certificate_size:#x} bytes (Authenticode; kexec_file_load checks it "
                f"where the kernel asks for signatures)" if image.signed else "not signed")
        out.append(f"  EFI stub: PE header at {pe.offset:#x}, machine {pe.machine:#x} "
                   f"(arm64), {pe.sections} sections; {sign}")
    else:
        out.append("  no EFI stub (no PE header): booted only by a loader that knows Images")
    out.append("")
    out.append("  header (offset, field, value, meaning)")
    for offset, name, meaning in IMAGE_FIELDS:
        value = head[name]
        if name == "magic":
            shown = "ARM\\x64"
        elif name == "flags":
            shown = f"{value:#x}"
            meaning = f"{_flags_text(image)} (bit 0 endianness, bits 1-2 page size, bit 3 " \
                      f"placement)"
        elif name == "image_size" and value:
            shown = f"{value:#x} ({human_size(value)})"
        elif name == "code0" and data[:2] == img.MZ_MAGIC:
            shown = f"{value:#010x} (\"MZ\")"
        else:
            shown = f"{value:#x}"
        out.append(f"  {offset:#04x}  {name:<12} {shown:<44} {meaning}")
    return out


# --- zboot ------------------------------------------------------------------------------------

def _zboot_lines(data: bytes, path: str, file_size: int) -> List[str]:
    z = img.parse_zboot(data, path)
    out = [f"{path}: EFI zboot file (CONFIG_EFI_ZBOOT: an EFI application that decompresses "
           f"the kernel itself), {file_size} bytes",
           f"  zimg header: payload at {z.payload_offset:#x}, {z.payload_size:#x} bytes "
           f"({human_size(z.payload_size)}), compressed with {z.compress_type!r}"]
    if z.pe is not None:
        signed = (f"signed: certificate table at {z.pe.certificate_offset:#x}, "
                  f"{z.pe.certificate_size:#x} bytes" if z.pe.certificate_size else "not signed")
        out.append(f"  PE header at {z.pe.offset:#x}, machine {z.pe.machine:#x}, "
                   f"{z.pe.sections} sections; {signed}")
    from pykexec.core.inputfiles import InputFileError
    try:
        inner = img.zboot_image(data, path)
    except (img.ImageError, InputFileError) as e:
        out.append(f"  the Image inside cannot be read: {str(e).split(': ', 1)[-1]}")
        return out
    out.append(f"  inside: an arm64 Image of {len(inner)} bytes (a signed one ends at its "
               f"certificate table; the zero padding to image_size dropped), which a loader "
               f"loads as an Image")
    out += _image_lines(inner, f"{path} (zboot payload)")
    return out


# --- device tree ------------------------------------------------------------------------------

def _value_text(value: bytes) -> str:
    """A property value as dtc writes it: strings, <cells> or [bytes]; long ones cut."""
    if value and value.endswith(b"\0") and all(
            part and all(32 <= b < 127 for b in part) for part in value[:-1].split(b"\0")):
        text = ", ".join('"' + p.decode("ascii") + '"' for p in value[:-1].split(b"\0"))
    elif value and len(value) % 4 == 0:
        text = "<" + " ".join(f"{int.from_bytes(value[i:i + 4], 'big'):#x}"
                              for i in range(0, len(value), 4)) + ">"
    elif value:
        text = "[" + " ".join(f"{b:02x}" for b in value) + "]"
    else:
        return "(empty)"
    return text if len(text) <= VALUE_SHOWN else text[:VALUE_SHOWN - 1] + "…"


def _reg_ranges(node: Node, a: int, s: int) -> List[str]:
    reg = node.properties.get("reg", b"")
    step = 4 * (a + s)
    out = []
    if a < 1 or step == 0:
        return out
    for at in range(0, len(reg) - step + 1, step):
        base = int.from_bytes(reg[at:at + 4 * a], "big")
        size = int.from_bytes(reg[at + 4 * a:at + step], "big")
        out.append(f"{hex_range(base, base + size)} ({human_size(size)})")
    return out


def explain_dtb(data: bytes, path: str, file_size: int) -> List[str]:
    head = FdtHeader.parse(data)
    fdt = Fdt.parse(data, path)
    nodes = list(fdt.root.walk())
    props = sum(len(n.properties) for _, n in nodes)
    nops = sum(sum(n.nops.values()) for _, n in nodes) + fdt.trailing_nops
    out = [f"{path}: flattened device tree (DTB), version {head.version} (readable as "
           f"{head.last_comp_version}), {head.totalsize} bytes"
           + (f" of the file's {file_size}" if file_size != head.totalsize else ""),
           f"  {len(nodes)} nodes, {props} properties, {head.size_dt_strings} bytes of "
           f"names; boot CPU {head.boot_cpuid_phys}"
           + (f"; {nops} NOP words (properties the running kernel blanked after use)"
              if nops else "")]
    model = fdt.get("/", "model")
    compatible = fdt.get("/", "compatible")
    named = ([f"model {_value_text(model)}"] if model else []) + (
        [f"compatible {_value_text(compatible)}"] if compatible else [])
    if named:
        out.append("  machine: " + ", ".join(named))
    a_cells = fdt.get("/", "#address-cells")
    s_cells = fdt.get("/", "#size-cells")
    a = int.from_bytes(a_cells, "big") if a_cells and len(a_cells) == 4 else 1
    s = int.from_bytes(s_cells, "big") if s_cells and len(s_cells) == 4 else 1
    out.append(f"  root: #address-cells {a}, #size-cells {s}"
               + ("" if a_cells and s_cells else " (absent ones default to 1, the kernel's "
                  "rule)"))
    for start, size in fdt.reserved:
        out.append(f"  reserved (memreserve): {hex_range(start, start + size)} "
                   f"({human_size(size)})")
    memory = [n for n in fdt.root.children
              if n.properties.get("device_type") == b"memory\0"]
    for n in memory:
        ranges = _reg_ranges(n, a, s)
        out.append(f"  memory /{n.name}: " + (", ".join(ranges) if ranges else "no reg"))
    if not memory:
        out.append("  no memory node"
                   + (" (the EFI stub's tree: RAM comes from the UEFI memory map, "
                      "linux,uefi-mmap-*)" if fdt.get("/chosen", "linux,uefi-mmap-start")
                      else ""))
    cpus = fdt.find("/cpus")
    if cpus is not None:
        count = sum(1 for c in cpus.children if c.properties.get("device_type") == b"cpu\0")
        out.append(f"  cpus: {count}")
    chosen = fdt.find("/chosen")
    if chosen is None:
        out.append("  no /chosen node (a loader adds one for the command line)")
    else:
        out.append("  /chosen (what the kernel reads at boot):")
        for name, value in chosen.properties.items():
            meaning = CHOSEN_MEANING.get(name, "")
            if name == KASLR_SEED and len(value) == 8:
                meaning = ("KASLR seed, wiped to 0 by the running kernel; a loader puts "
                           "fresh bytes" if not any(value) else
                           "KASLR seed, not wiped: not this boot's tree? (a loader refuses it)")
            out.append(f"    {name} = {_value_text(value)}" + (f"  ({meaning})" if meaning else ""))
        uart = console_uart(data)
        if uart is not None:
            out.append(f"  console: PL011 UART at {uart:#x} (purgatory can print there)")
    out.append("  a kexec loader edits /chosen only: bootargs, kaslr-seed/rng-seed, "
               "linux,initrd-start/-end; for a crash kernel also linux,elfcorehdr and "
               "linux,usable-memory-range")
    return out


__all__ = ["KIND", "probe", "explain", "explain_dtb"]
