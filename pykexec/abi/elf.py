"""ELF core-file layouts (ELF32 and ELF64) declared once, for building and parsing.

`elf_structs(elfclass)` gives the header, program header and note header for one class;
both classes come from the same declaration, so the i386 ELF32 core header and the x86_64
ELF64 one cannot drift apart. Reading kernels and objects is pyelftools' job; these are
for what pykexec writes (elfcorehdr) and decodes (plans, vmcore headers).
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

from construct import Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
EV_CURRENT = 1
ET_REL = 1
ET_EXEC = 2
ET_DYN = 3
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PF_X, PF_W, PF_R = 1, 2, 4
# e_machine values live with no construct import (abi.machines), for the light paths
from pykexec.abi.machines import EM_386, EM_AARCH64, EM_X86_64  # noqa: E402,F401
NT_PRSTATUS = 1
# core-file note types (elf.h), by the names a report gives them
NOTE_TYPE_NAMES = {NT_PRSTATUS: "NT_PRSTATUS", 2: "NT_PRFPREG", 3: "NT_PRPSINFO",
                   4: "NT_TASKSTRUCT", 6: "NT_AUXV", 0x202: "NT_X86_XSTATE"}
ELF_MAGIC = b"\x7fELF"


# What both classes share at the start of the header: enough to tell a file's kind.
ElfHead = Struct("e_ident" / Bytes(16), "e_type" / Int16ul, "e_machine" / Int16ul)


@lru_cache(maxsize=None)
def elf_structs(elfclass: int) -> SimpleNamespace:
    """Ehdr, Phdr and Nhdr for ELFCLASS32 or ELFCLASS64 (little endian)."""
    if elfclass not in (ELFCLASS32, ELFCLASS64):
        raise ValueError(f"bad ELF class {elfclass}")
    word = Int64ul if elfclass == ELFCLASS64 else Int32ul  # addresses and offsets

    ident = Struct(
        "magic" / Const(ELF_MAGIC),
        "elfclass" / Const(elfclass, Int8ul),
        "data" / Int8ul,
        "version" / Int8ul,
        "osabi" / Int8ul,
        "abiversion" / Int8ul,
        Padding(7),
    )
    ehdr = Struct(
        "e_ident" / ident,
        "e_type" / Int16ul,
        "e_machine" / Int16ul,
        "e_version" / Int32ul,
        "e_entry" / word,
        "e_phoff" / word,
        "e_shoff" / word,
        "e_flags" / Int32ul,
        "e_ehsize" / Int16ul,
        "e_phentsize" / Int16ul,
        "e_phnum" / Int16ul,
        "e_shentsize" / Int16ul,
        "e_shnum" / Int16ul,
        "e_shstrndx" / Int16ul,
    )
    if elfclass == ELFCLASS64:
        # ELF64 moves p_flags up next to p_type for alignment.
        phdr = Struct(
            "p_type" / Int32ul, "p_flags" / Int32ul, "p_offset" / word, "p_vaddr" / word,
            "p_paddr" / word, "p_filesz" / word, "p_memsz" / word, "p_align" / word,
        )
    else:
        phdr = Struct(
            "p_type" / Int32ul, "p_offset" / word, "p_vaddr" / word, "p_paddr" / word,
            "p_filesz" / word, "p_memsz" / word, "p_flags" / Int32ul, "p_align" / word,
        )
    nhdr = Struct("n_namesz" / Int32ul, "n_descsz" / Int32ul, "n_type" / Int32ul)
    return SimpleNamespace(elfclass=elfclass, Ehdr=ehdr, Phdr=phdr, Nhdr=nhdr,
                           ehdr_size=ehdr.sizeof(), phdr_size=phdr.sizeof(),
                           addr_max=(1 << (64 if elfclass == ELFCLASS64 else 32)) - 1)


def elf_class_of(data: bytes) -> int:
    """The EI_CLASS byte of an ELF image, or ValueError if `data` is not ELF."""
    if len(data) < 5 or data[:4] != ELF_MAGIC:
        raise ValueError("not an ELF file")
    return data[4]


def parse_core_header(data: bytes):
    """Parse an ELF header and its program headers from `data` (a core header blob)."""
    s = elf_structs(elf_class_of(data))
    ehdr = s.Ehdr.parse(data)
    end = ehdr.e_phoff + ehdr.e_phnum * ehdr.e_phentsize
    if ehdr.e_phentsize != s.phdr_size or end > len(data):
        raise ValueError("program headers do not fit the buffer")
    # Each header is parsed from its own slice: slicing to the end of the buffer would copy
    # the rest of it per header (memory and time quadratic in the number of ranges).
    offsets = range(ehdr.e_phoff, end, s.phdr_size)
    phdrs = [s.Phdr.parse(data[at:at + s.phdr_size]) for at in offsets]
    return ehdr, phdrs


def iter_notes(data: bytes):
    """Yield (name, type, desc) for each note in a note segment's bytes (4-byte padded)."""
    nhdr = elf_structs(ELFCLASS64).Nhdr  # note headers are the same in both classes
    off = 0
    while off + 12 <= len(data):
        h = nhdr.parse(data[off:off + 12])
        if h.n_namesz == 0 and h.n_descsz == 0 and h.n_type == 0:
            break
        off += 12
        name = data[off:off + h.n_namesz].rstrip(b"\0").decode("latin-1")
        off += (h.n_namesz + 3) & ~3
        desc = data[off:off + h.n_descsz]
        off += (h.n_descsz + 3) & ~3
        yield name, h.n_type, desc
