"""ELF notes of a vmcore's PT_NOTE segments, read strictly.

A note whose name or descriptor runs past its segment is an error, not silently cut:
a lying n_descsz would otherwise turn the next note's header into data. The note header
layout comes from pykexec.abi.elf (declared once).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

from pykexec.abi.elf import ELFCLASS64, elf_structs

NOTE_HEADER = elf_structs(ELFCLASS64).Nhdr   # the same 12 bytes in ELF32 and ELF64
NOTE_HEADER_SIZE = NOTE_HEADER.sizeof()


class Note(NamedTuple):
    name: str
    type: int
    desc: bytes
    offset: int        # file offset of the note header


def _align4(n: int) -> int:
    return (n + 3) & ~3


def iter_segment_notes(data: bytes, file_offset: int = 0) -> Iterator[Note]:
    """Each note of one PT_NOTE segment's bytes; ValueError for a note past its segment.

    An all-zero header ends the list (the kernel's per-CPU note buffers are zero filled
    after their last note); so does a tail too short for a header, if it is zeros.
    """
    off = 0
    size = len(data)
    while off < size:
        if off + NOTE_HEADER_SIZE > size:
            if any(data[off:]):
                raise ValueError(f"{size - off} stray bytes after the last note at offset "
                                 f"{file_offset + off:#x}")
            return
        h = NOTE_HEADER.parse(data[off:off + NOTE_HEADER_SIZE])
        if h.n_namesz == 0 and h.n_descsz == 0 and h.n_type == 0:
            return
        name_at = off + NOTE_HEADER_SIZE
        desc_at = name_at + _align4(h.n_namesz)
        end = desc_at + _align4(h.n_descsz)
        if desc_at + h.n_descsz > size:
            raise ValueError(f"note at offset {file_offset + off:#x} says it holds "
                             f"{h.n_namesz}+{h.n_descsz} bytes, past the end of its PT_NOTE "
                             f"({size} bytes at {file_offset:#x})")
        name = bytes(data[name_at:name_at + h.n_namesz]).rstrip(b"\0").decode("latin-1")
        yield Note(name, h.n_type, bytes(data[desc_at:desc_at + h.n_descsz]), file_offset + off)
        off = min(end, size)
