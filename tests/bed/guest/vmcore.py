"""Read an ELF core file (/proc/vmcore in the capture kernel, or a saved core on the host).

`describe_core(f)` returns a JSON-ready dict: ELF class, type, machine, the program headers
(pyelftools) and the notes (parsed here: namesz/descsz/type, 4-byte padding), with the
NT_PRSTATUS count and the VMCOREINFO key=value pairs.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO, Dict, List

from elftools.elf.elffile import ELFFile
from elftools.elf.structs import ELFStructs

NT_PRSTATUS = 1


def _align4(n: int) -> int:
    return (n + 3) & ~3


def parse_notes(data: bytes) -> List[dict]:
    """[{name, type, desc}] of a PT_NOTE's bytes (stops at a zero or truncated header)."""
    notes = []
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, off)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break
        off += 12
        name = data[off:off + namesz].rstrip(b"\0").decode("ascii", "replace")
        off += _align4(namesz)
        desc = data[off:off + descsz]
        off += _align4(descsz)
        if len(desc) != descsz:
            break
        notes.append({"name": name, "type": ntype, "desc": desc})
    return notes


def parse_vmcoreinfo(text: str) -> Dict[str, str]:
    info = {}
    for line in text.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            info[key] = value
    return info


def _headers_only(f: BinaryIO) -> ELFFile:
    """An ELFFile of just the ELF header and program headers at the start of `f`.

    /proc/vmcore's size is the end of its last PT_LOAD; a bogus one (kexec-tools' arm64
    kernel-text header with page_offset 0) overflows it, so the seek to the end that
    ELFFile makes fails. Nothing past the program headers may be read to get round it:
    the bytes there are old memory, and a bogus range may be no memory at all.
    """
    f.seek(0)
    ident = f.read(16)
    structs = ELFStructs(little_endian=ident[5] == 1, elfclass=64 if ident[4] == 2 else 32)
    structs.create_basic_structs()
    ehdr = structs.Elf_Ehdr.parse(ident + f.read(structs.Elf_Ehdr.sizeof() - 16))
    f.seek(0)
    return ELFFile(io.BytesIO(f.read(ehdr.e_phoff + ehdr.e_phnum * ehdr.e_phentsize)))


def describe_core(f: BinaryIO) -> dict:
    try:
        elf = ELFFile(f)
    except OSError:
        elf = _headers_only(f)
    h = elf.header
    phdrs = []
    notes = []
    for seg in elf.iter_segments():
        p = seg.header
        phdrs.append({"type": p.p_type, "offset": p.p_offset, "vaddr": p.p_vaddr,
                      "paddr": p.p_paddr, "filesz": p.p_filesz, "memsz": p.p_memsz,
                      "flags": p.p_flags, "align": p.p_align})
        if p.p_type == "PT_NOTE":
            f.seek(p.p_offset)
            notes.extend(parse_notes(f.read(p.p_filesz)))
    counts: Dict[str, int] = {}
    for n in notes:
        key = f"{n['name']}/{n['type']}"
        counts[key] = counts.get(key, 0) + 1
    vmcoreinfo_text = ""
    for n in notes:
        if n["name"] == "VMCOREINFO":
            vmcoreinfo_text = n["desc"].rstrip(b"\0").decode("ascii", "replace")
            break
    return {
        "elf_class": elf.elfclass,
        "e_type": h.e_type,
        "e_machine": h.e_machine,
        "phdrs": phdrs,
        "note_counts": counts,
        "nt_prstatus": sum(1 for n in notes if n["name"] == "CORE" and n["type"] == NT_PRSTATUS),
        "vmcoreinfo_text": vmcoreinfo_text,
        "vmcoreinfo": parse_vmcoreinfo(vmcoreinfo_text),
    }
