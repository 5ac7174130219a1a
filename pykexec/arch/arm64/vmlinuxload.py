"""An arm64 ELF vmlinux for kexec_load (kexec-tools' "vmlinux", probed first there too).

A vmlinux is the Image before objcopy: its PT_LOADs, laid out by their virtual addresses
from e_entry on, are the Image's bytes (the 64-byte Image header opens .head.text at
_text, which the kernel's linker script makes the entry), and image_size in that header
still says how much memory the kernel takes. So the file is flattened the way `objcopy -O
binary` flattens it and loaded as an Image, at the crash region's (or RAM's) 2 MiB
boundary + text_offset, wherever it was linked: the same bytes at the same addresses as
kexec-tools' one segment per PT_LOAD, in one segment.
"""

from __future__ import annotations

import io
from typing import Optional

from pykexec.arch.arm64.image import ImageError, parse_image
from pykexec.arch.arm64.load import Arm64Load
from pykexec.core.plan import Plan
from pykexec.errors import LoadError

NAME = "vmlinux"
ELF_MAGIC = b"\x7fELF"
FLAT_LIMIT = 1 << 30          # a kernel image, flattened, is far smaller


def probe(kernel: bytes) -> Optional[str]:
    if kernel[:4] != ELF_MAGIC:
        return "not an ELF file"
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        elf = ELFFile(io.BytesIO(kernel))
        if elf["e_machine"] != "EM_AARCH64" or elf.elfclass != 64:
            return f"an ELF{elf.elfclass} file for {elf['e_machine']}, not an arm64 vmlinux"
        if elf["e_type"] != "ET_EXEC":
            return f"an ELF {elf['e_type']}, not an executable"
        if not any(s["p_type"] == "PT_LOAD" for s in elf.iter_segments()):
            return "an arm64 ELF without PT_LOAD"
    except (ELFError, ValueError, KeyError) as err:
        return f"a damaged ELF header ({err})"
    return None


def flatten(kernel: bytes, path: str) -> bytes:
    """The PT_LOADs' file bytes from e_entry on (where the linker script puts _text and the
    Image header, as kexec-tools reads it), placed by p_vaddr; gaps and BSS zero."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        elf = ELFFile(io.BytesIO(kernel))
        entry = elf["e_entry"]
        loads = [(s["p_vaddr"], s["p_offset"], s["p_filesz"])
                 for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    except (ELFError, ValueError) as err:
        raise LoadError(f"{path}: damaged ELF program headers ({err})") from None
    if not any(v <= entry < v + f for v, _o, f in loads):
        raise LoadError(f"{path}: e_entry {entry:#x} (the Image header) is in no PT_LOAD's "
                        "file bytes")
    end = max(v + f for v, _o, f in loads)
    if end - entry > FLAT_LIMIT:
        raise LoadError(f"{path}: the PT_LOADs span {end - entry:#x} bytes of virtual "
                        "addresses from e_entry, not one kernel image")
    out = bytearray(end - entry)
    for vaddr, offset, filesz in loads:
        if offset + filesz > len(kernel):
            raise LoadError(f"{path}: a PT_LOAD at offset {offset:#x}+{filesz:#x} runs past "
                            f"the end of the file ({len(kernel):#x})")
        skip = max(0, entry - vaddr)           # a PT_LOAD may start below _text (headers)
        if skip < filesz:
            start = vaddr + skip - entry
            out[start:start + filesz - skip] = kernel[offset + skip:offset + filesz]
    return bytes(out)


def load(inputs) -> Plan:
    kernel = flatten(inputs.kernel, inputs.kernel_path)
    try:
        image = parse_image(kernel, f"{inputs.kernel_path} (its first PT_LOAD)")
    except ImageError as err:
        raise LoadError(f"{err}: a vmlinux loads as the Image it holds") from None
    return Arm64Load(inputs, image, NAME, kernel).plan()
