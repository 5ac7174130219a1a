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


HEADERS_READ = 1 << 20     # the ELF header and program headers of any vmcore fit


def describe_core(f: BinaryIO) -> dict:
    try:
        elf = ELFFile(f)
    except OSError:
        # /proc/vmcore's size comes from the PT_LOADs; a bogus one (kexec-tools' arm64
        # kernel-text header with page_offset 0) overflows it and seeking to the end fails.
        # The headers are at the start: read them from there.
        f.seek(0)
        elf = ELFFile(io.BytesIO(f.read(HEADERS_READ)))
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
