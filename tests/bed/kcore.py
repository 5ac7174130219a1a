"""The head of an x86_64 /proc/kcore (ELF64 ET_CORE header, program headers, notes).

A snapshot keeps only this head (docs/snapshot-format.md): loaders parse the program headers
to find the kernel text mapping and page_offset_base, and never read memory through kcore.
Offsets follow the kernel's scheme (file offset = vaddr - page_offset_base + data_offset),
so the numbers look like a real kcore's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from construct import Const, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

PT_LOAD, PT_NOTE = 1, 4
ET_CORE, EM_X86_64 = 4, 62
PF_RWX = 7
NT_PRSTATUS, NT_PRPSINFO = 1, 3
PAGE = 4096
MASK64 = (1 << 64) - 1

Elf64_Ehdr = Struct(
    "e_ident" / Struct("magic" / Const(b"\x7fELF"), "ei_class" / Int8ul, "ei_data" / Int8ul,
                       "ei_version" / Int8ul, "ei_osabi" / Int8ul, Padding(8)),
    "e_type" / Int16ul, "e_machine" / Int16ul, "e_version" / Int32ul, "e_entry" / Int64ul,
    "e_phoff" / Int64ul, "e_shoff" / Int64ul, "e_flags" / Int32ul, "e_ehsize" / Int16ul,
    "e_phentsize" / Int16ul, "e_phnum" / Int16ul, "e_shentsize" / Int16ul, "e_shnum" / Int16ul,
    "e_shstrndx" / Int16ul,
)
Elf64_Phdr = Struct(
    "p_type" / Int32ul, "p_flags" / Int32ul, "p_offset" / Int64ul, "p_vaddr" / Int64ul,
    "p_paddr" / Int64ul, "p_filesz" / Int64ul, "p_memsz" / Int64ul, "p_align" / Int64ul,
)
Elf64_Nhdr = Struct("n_namesz" / Int32ul, "n_descsz" / Int32ul, "n_type" / Int32ul)


@dataclass(frozen=True)
class Load:
    """One kcore PT_LOAD: `size` bytes of kernel virtual memory at `vaddr`."""

    vaddr: int
    paddr: Optional[int]   # physical address for RAM and kernel text, None elsewhere
    size: int


def _pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def note(name: str, ntype: int, desc: bytes) -> bytes:
    raw_name = name.encode() + b"\0"
    return (Elf64_Nhdr.build(dict(n_namesz=len(raw_name), n_descsz=len(desc), n_type=ntype))
            + _pad4(raw_name) + _pad4(desc))


def kcore_notes(release: str) -> bytes:
    prstatus = bytes(336)                       # sizeof(struct elf_prstatus) on x86_64
    prpsinfo = bytearray(136)                   # sizeof(struct elf_prpsinfo) on x86_64
    prpsinfo[40:47] = b"vmlinux"                # pr_fname
    vmcoreinfo = f"OSRELEASE={release}\nPAGESIZE=4096\n".encode()
    return (note("CORE", NT_PRSTATUS, prstatus) + note("CORE", NT_PRPSINFO, bytes(prpsinfo))
            + note("VMCOREINFO", 0, vmcoreinfo))


def header_bytes(loads: Sequence[Load], release: str, page_offset: Optional[int] = None) -> bytes:
    """ELF header + PT_NOTE + one PT_LOAD per `loads` + the notes, cut at a 4 KiB boundary."""
    notes = kcore_notes(release)
    phnum = 1 + len(loads)
    ehdr_size, phdr_size = Elf64_Ehdr.sizeof(), Elf64_Phdr.sizeof()
    notes_offset = ehdr_size + phnum * phdr_size
    data_offset = -(-(notes_offset + len(notes)) // PAGE) * PAGE
    base = page_offset if page_offset is not None else min(l.vaddr for l in loads)
    out = bytearray(Elf64_Ehdr.build(dict(
        e_ident=dict(ei_class=2, ei_data=1, ei_version=1, ei_osabi=0),
        e_type=ET_CORE, e_machine=EM_X86_64, e_version=1, e_entry=0, e_phoff=ehdr_size,
        e_shoff=0, e_flags=0, e_ehsize=ehdr_size, e_phentsize=phdr_size, e_phnum=phnum,
        e_shentsize=0, e_shnum=0, e_shstrndx=0)))
    out += Elf64_Phdr.build(dict(p_type=PT_NOTE, p_flags=0, p_offset=notes_offset, p_vaddr=0,
                                 p_paddr=0, p_filesz=len(notes), p_memsz=0, p_align=4))
    for l in loads:
        out += Elf64_Phdr.build(dict(
            p_type=PT_LOAD, p_flags=PF_RWX, p_offset=(l.vaddr - base + data_offset) & MASK64,
            p_vaddr=l.vaddr, p_paddr=MASK64 if l.paddr is None else l.paddr,
            p_filesz=l.size, p_memsz=l.size, p_align=PAGE))
    out += notes
    out += bytes(data_offset - len(out))
    return bytes(out)
