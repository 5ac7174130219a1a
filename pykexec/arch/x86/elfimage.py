"""An ELF vmlinux as kexec segments, and the setup header it lacks (x86_64 and i386)."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, NamedTuple

if TYPE_CHECKING:       # pyelftools is imported by the ELF loaders, when a kernel is ELF
    from elftools.elf.elffile import ELFFile

from pykexec.core.cmdline import COMMAND_LINE_MAX
from pykexec.errors import LoadError
from pykexec.core.ranges import PAGE_SIZE, align_down, align_up
from pykexec.arch.x86 import bootparams as bp


class ImageChunk(NamedTuple):
    """A page-aligned piece of the image: one PT_LOAD, or several sharing pages."""

    start: int
    memsz: int
    data: bytes


class LoadSegment(NamedTuple):
    """A PT_LOAD as the loaders use it: checked against the file and the address space."""

    paddr: int
    memsz: int
    filesz: int
    offset: int


def checked_loads(elf: ELFFile, path: str, file_size: int, addr_bits: int) -> List[LoadSegment]:
    """The image's PT_LOADs that occupy memory, each checked against the file and the
    `addr_bits`-bit physical address space; LoadError naming `path` and the segment."""
    loads = []
    try:
        segments = [(i, s.header) for i, s in enumerate(elf.iter_segments())]
    except Exception as err:  # pyelftools raises several types on damaged headers
        raise LoadError(f"{path}: damaged ELF program headers ({err})") from None
    top = 1 << addr_bits
    for index, hdr in segments:
        if hdr["p_type"] != "PT_LOAD":
            continue
        what = f"{path}: PT_LOAD #{index} (p_paddr {hdr['p_paddr']:#x})"
        if hdr["p_filesz"] > hdr["p_memsz"]:
            raise LoadError(f"{what}: p_filesz {hdr['p_filesz']:#x} is larger than p_memsz "
                            f"{hdr['p_memsz']:#x}: the file bytes past p_memsz would be dropped")
        if hdr["p_offset"] + hdr["p_filesz"] > file_size:
            raise LoadError(f"{what}: truncated ELF: the PT_LOAD needs {hdr['p_filesz']:#x} "
                            f"bytes from offset {hdr['p_offset']:#x}, the file has "
                            f"{file_size:#x}")
        if hdr["p_memsz"] == 0:
            continue
        if hdr["p_paddr"] + align_up(hdr["p_memsz"], PAGE_SIZE) > top:
            raise LoadError(f"{what}: p_memsz {hdr['p_memsz']:#x} runs past the end of the "
                            f"{addr_bits}-bit physical address space")
        loads.append(LoadSegment(hdr["p_paddr"], hdr["p_memsz"], hdr["p_filesz"],
                                 hdr["p_offset"]))
    if not loads:
        raise LoadError(f"{path}: no PT_LOAD with memory (p_memsz 0 everywhere): the ELF file "
                        "has no kernel to load")
    loads.sort()
    for a, b in zip(loads, loads[1:]):
        if b.paddr < a.paddr + a.memsz:
            raise LoadError(f"{path}: PT_LOADs overlap: {a.paddr:#x}+{a.memsz:#x} and "
                            f"{b.paddr:#x}+{b.memsz:#x}")
    return loads


def check_entry(entry: int, loads: List[LoadSegment], path: str) -> None:
    """e_entry must be inside a PT_LOAD the image brings, or the kernel starts on nothing."""
    if not any(s.paddr <= entry < s.paddr + s.memsz for s in loads):
        spans = ", ".join(f"{s.paddr:#x}-{s.paddr + s.memsz - 1:#x}" for s in loads[:4])
        raise LoadError(f"{path}: e_entry {entry:#x} is outside every PT_LOAD ({spans})")


def image_chunks(data: bytes, loads: List[LoadSegment], path: str) -> List[ImageChunk]:
    """The checked PT_LOADs as page-aligned chunks, in address order (kexec segments are
    whole pages and must not overlap).

    Two PT_LOADs that share a page share it in one chunk. When the first one's file bytes
    end before that page (its tail is bss), the page starts a new chunk and the first one
    ends below it, so no chunk ever pads a bss gap with zeros: memory stays linear in the
    file, whatever p_memsz says."""
    chunks: List[ImageChunk] = []
    for seg in loads:
        paddr, memsz = seg.paddr, seg.memsz
        body = data[seg.offset:seg.offset + seg.filesz]
        start, end = align_down(paddr, PAGE_SIZE), align_up(paddr + memsz, PAGE_SIZE)
        if chunks and start < chunks[-1].start + chunks[-1].memsz:
            prev = chunks.pop()
            if prev.start + len(prev.data) <= start:
                # prev's file bytes end below the shared page: cut prev there (its bss
                # is zero either way) and let the shared page begin this chunk
                if start > prev.start:
                    chunks.append(ImageChunk(prev.start, start - prev.start, prev.data))
                chunks.append(ImageChunk(start, end - start, bytes(paddr - start) + body))
            else:   # prev's file bytes reach into the shared page: the gap is under a page
                merged = prev.data + bytes(paddr - prev.start - len(prev.data)) + body
                chunks.append(ImageChunk(prev.start,
                                         max(prev.start + prev.memsz, end) - prev.start, merged))
        else:
            chunks.append(ImageChunk(start, end - start, bytes(paddr - start) + body))
    return chunks


def first_misfit(layout, chunks: List[ImageChunk]):
    """The first chunk that is not free RAM in the layout's window, or None."""
    return next((c for c in chunks if not layout.fits_at(c.start, c.memsz)), None)


def vmlinux_setup_header(**fields) -> bytes:
    """A setup header for a kernel that came without one (a vmlinux has no bzImage header):
    the boot signature, protocol 2.12, the command-line limit, and `fields`; the rest 0."""
    header = dict.fromkeys((sc.name for sc in bp.SetupHeader.subcons), 0)
    header.update(boot_flag=bp.BOOT_FLAG, header=bp.HDRS_MAGIC, version=0x020C,
                  cmdline_size=COMMAND_LINE_MAX, **fields)
    return bp.SetupHeader.build(header)
