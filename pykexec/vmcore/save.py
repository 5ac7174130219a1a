"""`pykexec vmcore save OUT [-d LEVEL] [FILE]`: copy a vmcore, leaving out pages by dump level.

The output is an ELF vmcore of the input's class and machine with the input's notes, whose
PT_LOADs hold only the pages the level keeps: a PT_LOAD is split where a run of left-out
pages starts, each piece keeping p_vaddr - p_paddr of its source (so virtual addresses still
work), p_memsz == p_filesz (a left-out page is absent, never silently zeros). As makedumpfile
does for ELF output, a run of fewer than MIN_HOLE_PAGES left-out pages between kept ones is
written anyway (a PT_LOAD costs a header, and the table must stay small), and the program
headers follow the ELF header (makedumpfile reads them there).

Two passes, both streaming: the struct page arrays (one memory section at a time) give
each page's class (pageclass.py); then each PT_LOAD is copied in CHUNK_PAGES pieces,
zero pages found with numpy on the piece just read. Memory: one byte per page of the dump
for the classes, plus a few chunk buffers. The output is written to a temporary file beside
OUT and renamed over it only when complete.
"""

from __future__ import annotations

import mmap
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from pykexec.abi.elf import PT_LOAD, PT_NOTE, elf_structs
from pykexec.vmcore.dump import Vmcore
from pykexec.vmcore.error import VmcoreError
from pykexec.vmcore.pageclass import (DL_ZERO, MAX_DUMP_LEVEL, Classifier, PageClassError,
                                      PageRules, Reason)

MIN_HOLE_PAGES = 256          # shorter runs of left-out pages are written (makedumpfile's rule)
MAX_PHNUM = 65000             # e_phnum is 16 bits (PN_XNUM 0xffff is an escape few readers know)
CHUNK_PAGES = 1024            # 4 MiB pieces: the copy's memory does not grow with the dump
SECTION_MAP_FLAG_BITS = 0x3F  # low bits of mem_section.section_mem_map that are flags
SECTION_HAS_MEM_MAP = 0x2


@dataclass
class SaveResult:
    pages: int = 0                       # whole pages in the input's PT_LOADs
    written: int = 0                     # pages in the output
    excluded: Dict[str, int] = field(default_factory=dict)    # reason -> pages the level leaves out
    kept_in_short_holes: int = 0         # of those, written anyway (runs < MIN_HOLE_PAGES)
    unclassified: int = 0                # pages without a readable struct page (kept)
    loads_in: int = 0
    loads_out: int = 0
    size: int = 0


# --- struct pages ------------------------------------------------------------------------

def _max_pfn(dump: Vmcore, page: int) -> int:
    return max((ld.paddr + ld.filesz) // page for ld in dump.loads) if dump.loads else 0


def _in_dump_mask(dump: Vmcore, first: int, count: int, page: int) -> np.ndarray:
    """Which PFNs first..first+count-1 start inside a PT_LOAD's file bytes."""
    mask = np.zeros(count, bool)
    for ld in dump.loads:
        lo = max(first, -(-ld.paddr // page))
        hi = min(first + count, (ld.paddr + ld.filesz) // page)
        if lo < hi:
            mask[lo - first:hi - first] = True
    return mask


def _mem_map_chunks(dump: Vmcore, rules: PageRules, max_pfn: int, page: int):
    """(first_pfn, count, mem_map address of first_pfn or None), ascending, to max_pfn."""
    info = dump.need_info()
    word = rules.word
    if info.symbol("mem_section") is not None:
        section_bits = dump.need("number", "SECTION_SIZE_BITS")
        per_section = 1 << (section_bits - page.bit_length() + 1)
        sym = dump.need("symbol", "mem_section")
        size = dump.need("size", "mem_section")
        off = dump.need("offset", "mem_section.section_mem_map")
        length = info.length("mem_section")
        phys_bits = info.number("MAX_PHYSMEM_BITS")
        per_root = page // size
        if phys_bits is not None:
            nr_sections = 1 << (phys_bits - section_bits)
            extreme = length is None or length == -(-nr_sections // per_root)
        else:
            extreme = length is None or length * per_root > max_pfn // per_section
        roots: Dict[int, Optional[int]] = {}
        for nr in range(-(-max_pfn // per_section)):
            first = nr * per_section
            try:
                if extreme:
                    root = nr // per_root
                    if root not in roots:
                        roots[root] = dump.read_ulong(sym + root * word) or None
                    if roots[root] is None:
                        yield first, per_section, None
                        continue
                    entry = roots[root] + (nr % per_root) * size
                else:
                    entry = sym + nr * size
                coded = dump.read_ulong(entry + off)
            except VmcoreError:
                yield first, per_section, None
                continue
            if not coded & SECTION_HAS_MEM_MAP:
                yield first, per_section, None
                continue
            # the kernel stores mem_map minus the section's first PFN, flags in the low bits
            base = (coded & ~SECTION_MAP_FLAG_BITS) & ((1 << (8 * word)) - 1)
            yield first, per_section, (base + first * rules.size_page) & ((1 << (8 * word)) - 1)
    elif info.symbol("mem_map") is not None:        # FLATMEM: one array from PFN 0
        mem_map = dump.read_ulong(info.symbol("mem_map"))
        step = 1 << 15
        for first in range(0, max_pfn, step):
            yield first, min(step, max_pfn - first), mem_map + first * rules.size_page
    else:
        raise dump.error("VMCOREINFO has neither SYMBOL(mem_section) nor SYMBOL(mem_map): "
                         "cannot find the struct page array")


def _read_virt_range(dump: Vmcore, addr: int, size: int, page: int, fd: Optional[int]):
    """Kernel virtual [addr, addr+size) as bytes, one physical read per contiguous run
    (a section's struct pages are one run under a 2 MiB mapping); None if unmapped."""
    runs = []                            # [physical start, length]
    at, end = addr, addr + size
    while at < end:
        take = min(end - at, page - at % page)
        pa = dump.kvtop(at)
        if pa is None:
            return None
        if runs and runs[-1][0] + runs[-1][1] == pa:
            runs[-1][1] += take
        else:
            runs.append([pa, take])
        at += take
    parts = []
    for pa, n in runs:
        load = dump.find_load(pa)
        if fd is not None and load is not None and pa + n <= load.paddr + load.filesz:
            # pread, not the dump's mmap: mapped pages would stay in this process's RSS
            data = os.pread(fd, n, load.offset + pa - load.paddr)
            if len(data) != n:
                return None
            parts.append(data)
            continue
        try:
            parts.append(bytes(dump.read_phys(pa, n)))
        except VmcoreError:
            return None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def classify_pages(dump: Vmcore, level: int, page: int, fd: Optional[int] = None):
    """(uint8 Reason per PFN up to the dump's last page, pages without a struct page);
    `fd`, the dump open for reading, is used for the struct page arrays."""
    max_pfn = _max_pfn(dump, page)
    reasons = np.zeros(max_pfn, np.uint8)
    info = dump.vmcoreinfo
    if info is None:
        if level & ~DL_ZERO:
            dump.need_info()
        return reasons, 0
    try:
        rules = PageRules.from_vmcoreinfo(dict(info), dump.pointer_size)
        if not rules.needs_struct_pages(level):
            return reasons, 0
        classifier = Classifier(rules, level)
    except PageClassError as e:
        raise dump.error(str(e)) from None
    unclassified = 0
    for first, count, addr in _mem_map_chunks(dump, rules, max_pfn, page):
        count = min(count, max_pfn - first)
        in_dump = _in_dump_mask(dump, first, count, page)
        if not in_dump.any():
            continue
        raw = None
        if addr is not None:
            raw = _read_virt_range(dump, addr, count * rules.size_page, page, fd)
        if raw is None:
            unclassified += int(in_dump.sum())
            # a block carried over from the previous section still covers its pages
            carried = min(count, max(0, classifier.covered_until - first))
            reasons[first:first + carried] = classifier.covered_reason
            continue
        reasons[first:first + count] = classifier.classify(first, raw, in_dump)
    return reasons, unclassified


# --- the copy ----------------------------------------------------------------------------

class _Copier:
    """Appends file bytes of the input to the output: from the chunk buffer when it has
    them, else with copy_file_range (pread + write where the kernel cannot)."""

    def __init__(self, src_fd: int, dst_fd: int, offset: int):
        self.src, self.dst, self.offset = src_fd, dst_fd, offset
        self.can_splice = hasattr(os, "copy_file_range")

    def write(self, data) -> None:
        view = memoryview(data)
        while len(view):
            n = os.pwrite(self.dst, view, self.offset)
            self.offset += n
            view = view[n:]

    def copy(self, src_offset: int, size: int) -> None:
        while size > 0:
            n = 0
            if self.can_splice:
                try:
                    n = os.copy_file_range(self.src, self.dst, size, src_offset, self.offset)
                except OSError:
                    self.can_splice = False
            if n <= 0:
                data = os.pread(self.src, min(size, CHUNK_PAGES * 4096), src_offset)
                if not data:
                    raise OSError(5, "unexpected end of input")
                self.write(data)
                n = len(data)
            else:
                self.offset += n
            src_offset += n
            size -= n


class _ChunkSource:
    """The input's bytes of one chunk at a time, for the zero-page test and the copy.

    Mapped (no copy, and the chunk's pages are unmapped again after use, so the RSS stays
    bounded), or read into one reused buffer where the input cannot be mapped."""

    def __init__(self, fd: int, page: int):
        self.page = page
        self.map = None
        try:
            self.map = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        except (OSError, ValueError, OverflowError):
            self.fd = fd
            self.buf = bytearray(CHUNK_PAGES * page)

    def window(self, offset: int, n: int):
        """(memoryview, pages as an (n, page/8) uint64 array) of file bytes at offset."""
        self.offset, self.size = offset, n * self.page
        if self.map is not None:
            if offset + self.size > len(self.map):
                raise OSError(5, f"unexpected end of input at offset {offset:#x}")
            view = memoryview(self.map)[offset:offset + self.size]
        else:
            view = memoryview(self.buf)[:self.size]
        return view, np.frombuffer(view, np.uint64).reshape(n, self.page // 8)

    def fill(self, first: int, end: int) -> None:
        """Make pages first..end-1 of the window hold the file's bytes."""
        if self.map is None:
            view = memoryview(self.buf)[first * self.page:end * self.page]
            at = self.offset + first * self.page
            if os.preadv(self.fd, [view], at) != len(view):
                raise OSError(5, f"short read of the input at offset {at:#x}")

    def release(self) -> None:
        if self.map is not None and hasattr(self.map, "madvise"):
            start = self.offset - self.offset % mmap.PAGESIZE
            self.map.madvise(mmap.MADV_DONTNEED, start, self.offset + self.size - start)

    def close(self) -> None:
        if self.map is not None:
            self.map.close()


def _runs(mask: np.ndarray):
    """[(start, end)] of the True runs of a bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return edges.reshape(-1, 2)


def _segments_bound(dump: Vmcore, page: int, min_hole: int) -> int:
    n = 0
    for p in dump.phdrs:
        if p.p_type == PT_LOAD:
            n += p.p_filesz // page // (min_hole + 1) + 3
    return n


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.shown = max(total, 1), 0, -1
        self.enabled = enabled

    def add(self, n: int) -> None:
        self.done += n
        if self.enabled:
            pct = self.done * 100 // self.total
            if pct != self.shown:
                self.shown = pct
                bar = "#" * (pct // 4)
                sys.stderr.write(f"\rsaving [{bar:<25}] {pct:3d}%")
                sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.shown >= 0:
            sys.stderr.write("\n")


def save_vmcore(src_path: str, out_path: str, level: int, progress: bool = False) -> SaveResult:
    """Write `src_path`'s dump filtered by `level` to `out_path` (atomically)."""
    if not 0 <= level <= MAX_DUMP_LEVEL:
        raise VmcoreError(f"-d {level}: the dump level is 0..{MAX_DUMP_LEVEL}")
    out_dir = os.path.dirname(os.path.abspath(out_path))
    if os.path.isdir(out_path):
        raise VmcoreError(f"{out_path}: is a directory")
    if not os.path.isdir(out_dir):
        raise VmcoreError(f"{out_path}: directory {out_dir} does not exist")
    with Vmcore.open(src_path) as dump:
        try:
            if os.path.exists(out_path) and os.path.samefile(out_path, src_path):
                raise VmcoreError(f"{out_path}: is the input file")
        except OSError:
            pass
        for ld, short in dump.missing():
            raise dump.error(f"PT_LOAD {ld.index} ({ld.paddr:#x}-{ld.paddr + ld.filesz:#x}) ends "
                             f"at file offset {ld.offset + ld.filesz:#x}, past the end of the file "
                             f"({dump.file_size:#x} bytes): truncated dump, {short} bytes missing")
        page = (dump.vmcoreinfo.page_size if dump.vmcoreinfo else None) or 4096
        try:
            src_fd = os.open(src_path, os.O_RDONLY)
        except OSError as e:
            raise VmcoreError(f"{src_path}: {e.strerror or e}") from None
        try:
            reasons, unclassified = classify_pages(dump, level, page, src_fd)
            result = _save_to(dump, src_fd, out_path, out_dir, reasons, level, page, progress)
        finally:
            os.close(src_fd)
        result.unclassified = unclassified
        return result


def _save_to(dump, src_fd, out_path, out_dir, reasons, level, page, progress) -> SaveResult:
    """Write the output into a temporary file beside OUT, renamed to OUT when complete."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out_path)}.", dir=out_dir)
    except OSError as e:
        raise VmcoreError(f"{out_path}: cannot create a file in {out_dir}: "
                          f"{e.strerror or e}") from None
    try:
        result = _write(dump, src_fd, fd, reasons, level, page, progress)
        os.close(fd)       # no fsync, as makedumpfile: kdump scripts sync before rebooting
        fd = -1
        os.chmod(tmp, 0o600)
        os.replace(tmp, out_path)
    except OSError as e:
        raise VmcoreError(f"{out_path}: {e.strerror or e}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return result


def _write(dump: Vmcore, src_fd: int, out_fd: int, reasons: np.ndarray, level: int,
           page: int, progress: bool) -> SaveResult:
    s = elf_structs(dump.ehdr.e_ident.elfclass)
    notes = [p for p in dump.phdrs if p.p_type == PT_NOTE]
    loads_in = [p for p in dump.phdrs if p.p_type == PT_LOAD]
    min_hole = MIN_HOLE_PAGES
    while _segments_bound(dump, page, min_hole) + len(notes) > MAX_PHNUM:
        min_hole *= 2
    reserve = _segments_bound(dump, page, min_hole) + len(notes)
    notes_at = s.ehdr_size + reserve * s.phdr_size
    note_phdrs, at = [], notes_at
    for p in notes:
        note_phdrs.append(dict(p_type=PT_NOTE, p_flags=p.p_flags, p_offset=at, p_vaddr=0,
                               p_paddr=0, p_filesz=p.p_filesz, p_memsz=p.p_filesz,
                               p_align=p.p_align))
        at += p.p_filesz
    data_at = -(-at // page) * page
    copier = _Copier(src_fd, out_fd, notes_at)
    for p in notes:
        copier.write(bytes(dump._file(p.p_offset, p.p_filesz)))
    copier.offset = data_at

    result = SaveResult(loads_in=len(loads_in))
    counts = np.zeros(len(Reason), np.int64)
    bar = _Progress(sum(p.p_filesz for p in loads_in), progress)
    source = _ChunkSource(src_fd, page)
    load_phdrs: List[dict] = []
    for p in loads_in:
        # a piece keeps its source's p_vaddr - p_paddr; "no virtual address" (all ones, as
        # kexec-tools writes for highmem above a direct map) stays that on every piece
        delta = None if p.p_vaddr == s.addr_max else p.p_vaddr - p.p_paddr

        def add_segment(paddr, offset, size, memsz=None, _p=p, _delta=delta):
            load_phdrs.append(dict(p_type=PT_LOAD, p_flags=_p.p_flags, p_offset=offset,
                                   p_vaddr=s.addr_max if _delta is None else (paddr + _delta) & s.addr_max,
                                   p_paddr=paddr, p_filesz=size,
                                   p_memsz=size if memsz is None else memsz, p_align=_p.p_align))

        if p.p_paddr % page or p.p_filesz % page:
            # not whole pages: copied as it is
            add_segment(p.p_paddr, copier.offset, p.p_filesz, p.p_memsz)
            copier.copy(p.p_offset, p.p_filesz)
            bar.add(p.p_filesz)
            continue
        first_pfn, npages = p.p_paddr // page, p.p_filesz // page
        result.pages += npages
        seg_start = None          # first PFN of the open segment
        seg_offset = 0
        last_kept = first_pfn     # PFN after the last page written (the gap starts there)
        for c0 in range(0, npages, CHUNK_PAGES):
            n = min(CHUNK_PAGES, npages - c0)
            pfn0 = first_pfn + c0
            lo, hi = min(pfn0, len(reasons)), min(pfn0 + n, len(reasons))
            why = np.zeros(n, np.uint8)
            why[:hi - lo] = reasons[lo:hi]
            keep = why == Reason.KEEP
            src_chunk = p.p_offset + c0 * page
            have_buf = False
            if level & DL_ZERO and keep.any():
                # only the candidates are read; a page the classes leave out never is
                have_buf = True
                data, pages = source.window(src_chunk, n)
                nonzero = np.zeros(n, bool)
                for r0, r1 in _runs(keep):
                    r0, r1 = int(r0), int(r1)
                    source.fill(r0, r1)
                    nonzero[r0:r1] = pages[r0:r1].any(axis=1)
                why[keep & ~nonzero] = Reason.ZERO
                keep &= nonzero
            counts += np.bincount(why, minlength=len(Reason))

            def emit(a, b):
                """Append kept pages a..b-1 (PFNs of this chunk)."""
                if have_buf:
                    copier.write(data[(a - pfn0) * page:(b - pfn0) * page])
                else:
                    copier.copy(p.p_offset + (a - first_pfn) * page, (b - a) * page)

            def emit_hole(a, b):
                """Append pages a..b-1 of a short hole (never read into the buffer)."""
                copier.copy(p.p_offset + (a - first_pfn) * page, (b - a) * page)

            for r0, r1 in _runs(keep):
                a, b = pfn0 + int(r0), pfn0 + int(r1)
                gap = a - last_kept
                if seg_start is not None and 0 < gap < min_hole:
                    emit_hole(last_kept, a)            # a short hole: written anyway
                    result.kept_in_short_holes += gap
                elif seg_start is None and 0 < gap < min_hole:
                    seg_start, seg_offset = last_kept, copier.offset
                    emit_hole(last_kept, a)
                    result.kept_in_short_holes += gap
                elif gap:
                    if seg_start is not None:
                        add_segment(seg_start * page, seg_offset, copier.offset - seg_offset)
                    seg_start, seg_offset = a, copier.offset
                elif seg_start is None:
                    seg_start, seg_offset = a, copier.offset
                emit(a, b)
                last_kept = b
            if have_buf:
                del data, pages
                source.release()
            bar.add(n * page)
        if seg_start is not None:
            add_segment(seg_start * page, seg_offset, copier.offset - seg_offset)
        if p.p_memsz > p.p_filesz:     # the input's own zero tail stays a zero tail
            add_segment(p.p_paddr + p.p_filesz, 0, 0, p.p_memsz - p.p_filesz)
    bar.close()
    source.close()

    phdrs = note_phdrs + load_phdrs
    assert len(phdrs) <= reserve
    e = dump.ehdr
    ehdr = s.Ehdr.build(dict(
        e_ident=dict(data=e.e_ident.data, version=e.e_ident.version, osabi=e.e_ident.osabi,
                     abiversion=e.e_ident.abiversion),
        e_type=e.e_type, e_machine=e.e_machine, e_version=e.e_version, e_entry=e.e_entry,
        e_phoff=s.ehdr_size, e_shoff=0, e_flags=e.e_flags, e_ehsize=s.ehdr_size,
        e_phentsize=s.phdr_size, e_phnum=len(phdrs), e_shentsize=0, e_shnum=0, e_shstrndx=0))
    table = ehdr + b"".join(s.Phdr.build(ph) for ph in phdrs)
    end = copier.offset
    copier.offset = 0
    copier.write(table)
    os.ftruncate(out_fd, end)

    result.excluded = {r.name.lower(): int(counts[r]) for r in Reason
                       if r != Reason.KEEP and counts[r]}
    result.written = sum(ph["p_filesz"] for ph in load_phdrs) // page
    result.loads_out = len(load_phdrs)
    result.size = end
    return result



def report(result: SaveResult, src: str, out: str) -> None:
    w = sys.stderr.write
    w(f"{src}: {result.pages} pages, {result.written} written to {out} "
      f"({result.loads_out} PT_LOADs, {result.size} bytes)\n")
    for reason, n in result.excluded.items():
        w(f"  left out by the level: {n:>9} {reason}\n")
    if result.kept_in_short_holes:
        w(f"  written anyway (runs under {MIN_HOLE_PAGES} pages): {result.kept_in_short_holes}\n")
    if result.unclassified:
        w(f"  without a readable struct page (kept): {result.unclassified}\n")
