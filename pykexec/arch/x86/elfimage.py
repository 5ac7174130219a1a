"""An ELF vmlinux as kexec segments, and the setup header it lacks (x86_64 and i386)."""

from __future__ import annotations

from typing import List, NamedTuple

from elftools.elf.elffile import ELFFile

from pykexec.cmdline import COMMAND_LINE_MAX
from pykexec.errors import LoadError
from pykexec.ranges import PAGE_SIZE, align_down, align_up
from pykexec.structs import bootparams as bp


class ImageChunk(NamedTuple):
    """A page-aligned piece of the image: one PT_LOAD, or several sharing pages."""

    start: int
    memsz: int
    data: bytes


def image_chunks(elf: ELFFile, path: str) -> List[ImageChunk]:
    """The PT_LOADs at their p_paddr as page-aligned chunks, in address order; PT_LOADs
    that share a page are merged (kexec segments are whole pages and must not overlap)."""
    loads = []
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
            continue
        data = seg.data()
        if len(data) != seg["p_filesz"]:
            raise LoadError(f"{path}: truncated ELF: a PT_LOAD needs {seg['p_filesz']:#x} bytes "
                            f"from offset {seg['p_offset']:#x}")
        loads.append((seg["p_paddr"], seg["p_memsz"], data[:seg["p_memsz"]]))
    loads.sort()
    chunks: List[ImageChunk] = []
    for paddr, memsz, data in loads:
        start, end = align_down(paddr, PAGE_SIZE), align_up(paddr + memsz, PAGE_SIZE)
        if chunks and start < chunks[-1].start + chunks[-1].memsz:
            prev = chunks.pop()
            if paddr < prev.start + len(prev.data):
                raise LoadError(f"{path}: PT_LOADs overlap at {paddr:#x}")
            merged = prev.data + bytes(paddr - prev.start - len(prev.data)) + data
            chunks.append(ImageChunk(prev.start, max(prev.start + prev.memsz, end) - prev.start,
                                     merged))
        else:
            chunks.append(ImageChunk(start, end - start, bytes(paddr - start) + data))
    return chunks


def vmlinux_setup_header(**fields) -> bytes:
    """A setup header for a kernel that came without one (a vmlinux has no bzImage header):
    the boot signature, protocol 2.12, the command-line limit, and `fields`; the rest 0."""
    header = dict.fromkeys((sc.name for sc in bp.SetupHeader.subcons), 0)
    header.update(boot_flag=bp.BOOT_FLAG, header=bp.HDRS_MAGIC, version=0x020C,
                  cmdline_size=COMMAND_LINE_MAX, **fields)
    return bp.SetupHeader.build(header)
