"""`pykexec vmcore save OUT [-d LEVEL] [FILE]`: copy a vmcore, leaving out pages by dump level.

The output is an ELF vmcore of the input's class and machine with the input's notes, whose
PT_LOADs hold only the pages the level keeps: a PT_LOAD is split where a run of left-out
pages starts, each piece keeping p_vaddr - p_paddr of its source (so virtual addresses still
work), p_memsz == p_filesz (a left-out page is absent, never silently zeros). As makedumpfile
does for ELF output, a run of fewer than MIN_HOLE_PAGES left-out pages between kept ones is
written anyway (a PT_LOAD costs a header, and the table must stay small), and the program
headers follow the ELF header (makedumpfile reads them there).

Two passes, both streaming: the struct page arrays (one memory section at a time, one read
a mapping) give each page's class (pageclass.py); then each PT_LOAD, WINDOW_PAGES at a time:
the pages the classes keep are scanned for zeros through the mapped input (numpy, CHUNK_PAGES
at a time, unmapped after), and each output segment is copied by the kernel
(copy_file_range), never through Python. Memory: one byte per page of the dump for the
classes, plus a window's arrays and one mapped chunk. The output is written to a temporary
file beside OUT and renamed over it only when complete.

(Longer than 400 lines: the window loop, the copy thread and the ELF writer share one
output file's state; the page classes live in pageclass.py.)
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# numpy's OpenBLAS starts a thread per CPU when it loads, for linear algebra this command
# never does: one thread cuts tens of ms off every save (a user's own setting still wins)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

from pykexec.abi.elf import PT_LOAD, PT_NOTE, elf_structs  # noqa: E402
from pykexec.vmcore.dump import Vmcore  # noqa: E402
from pykexec.vmcore.error import VmcoreError  # noqa: E402
from pykexec.vmcore.pageclass import (DL_ZERO, MAX_DUMP_LEVEL, Classifier,  # noqa: E402
                                      PageClassError, PageRules, Reason)

MIN_HOLE_PAGES = 256          # shorter runs of left-out pages are written (makedumpfile's rule)
MAX_PHNUM = 65000             # e_phnum is 16 bits (PN_XNUM 0xffff is an escape few readers know)
CHUNK_PAGES = 4096            # 16 MiB pieces scanned for zero pages: bounded memory (RSS)
GATHER_PAGES = 256            # pages copied together for the whole-page zero test
WINDOW_PAGES = 1 << 14        # pages laid out at once (64 MiB of the dump; copies overlap the next)
COPY_BUFFER = 4 << 20         # bytes a read+write copy moves at once
# errnos by which copy_file_range / sendfile say "not for these two files": try another way
COPY_UNSUPPORTED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
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


def _read_virt_into(dump: Vmcore, addr: int, out: memoryview, fd: Optional[int]) -> bool:
    """Fill `out` with kernel virtual memory from `addr`, one read per mapping (a section's
    struct pages sit in one or a few 2 MiB pages); False if some of it is not mapped."""
    at, size = 0, len(out)
    while at < size:
        found = dump.kvtop_extent(addr + at)
        if found is None:
            return False
        pa, take = found.paddr, min(size - at, found.size)
        piece = out[at:at + take]
        load = dump.find_load(pa)
        if fd is not None and load is not None and pa + take <= load.paddr + load.filesz:
            # pread, not the dump's mmap: mapped pages would stay in this process's RSS
            if os.preadv(fd, [piece], load.offset + pa - load.paddr) != take:
                return False
        else:
            try:
                piece[:] = dump.read_phys(pa, take)
            except VmcoreError:
                return False
        at += take
    return True


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
    buffer = bytearray()                 # one section's struct pages, reused
    for first, count, addr in _mem_map_chunks(dump, rules, max_pfn, page):
        count = min(count, max_pfn - first)
        in_dump = _in_dump_mask(dump, first, count, page)
        if not in_dump.any():
            continue
        raw = None
        if addr is not None:
            size = count * rules.size_page
            if len(buffer) < size:
                buffer = bytearray(size)
            raw = memoryview(buffer)[:size]
            if not _read_virt_into(dump, addr, raw, fd):
                raw = None
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
    """Appends byte ranges of the input to the output, in the kernel where it can:
    copy_file_range (page cache to page cache), else sendfile (/proc/vmcore is no regular
    file for copy_file_range), else pread + pwrite through one reused buffer.

    With `background`, copies run in a worker thread, in order, while the caller scans
    the next pages for zeros (both wait in the kernel or in numpy, without the GIL);
    `offset`, where the next copy lands, is known at once. `finish()` waits for them and
    raises what one met; `stop()` (in a finally) ends the worker either way."""

    def __init__(self, src_fd: int, dst_fd: int, offset: int, background: bool = False):
        self.src, self.dst, self.offset = src_fd, dst_fd, offset
        self.ways = [self._copy_file_range, self._sendfile, self._read_write]
        self.buffer: Optional[bytearray] = None
        self.failure: Optional[BaseException] = None
        self.cancelled = False
        self.jobs: Optional[queue.SimpleQueue] = None
        if background:
            self.jobs = queue.SimpleQueue()
            self.worker = threading.Thread(target=self._work, name="vmcore-copy", daemon=True)
            self.worker.start()

    def write(self, data) -> None:
        """Append `data` now (headers and notes: never while copies are queued before it)."""
        view = memoryview(data)
        while len(view):
            n = os.pwrite(self.dst, view, self.offset)
            self.offset += n
            view = view[n:]

    def copy(self, src_offset: int, size: int) -> None:
        dst_offset = self.offset
        self.offset += size
        if self.jobs is None:
            self._copy(src_offset, dst_offset, size)
            return
        if self.failure is not None:
            raise self.failure
        self.jobs.put((src_offset, dst_offset, size))

    def finish(self) -> None:
        self._join()
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        """After an error (or ^C) in the caller: the copies still queued are dropped."""
        self.cancelled = True
        self._join()

    def _join(self) -> None:
        if self.jobs is not None:
            self.jobs.put(None)
            self.worker.join()
            self.jobs = None

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self.failure is None and not self.cancelled:
                try:
                    self._copy(*job)
                except BaseException as e:  # noqa: BLE001 - handed to the caller by finish()
                    self.failure = e

    def _copy(self, src_offset: int, dst_offset: int, size: int) -> None:
        while size > 0:
            try:
                n = self.ways[0](src_offset, dst_offset, size)
            except OSError as e:
                if len(self.ways) == 1 or e.errno not in COPY_UNSUPPORTED:
                    raise
                self.ways.pop(0)         # this way does not work for these files: the next
                continue
            if n <= 0:
                raise OSError(errno.EIO, f"unexpected end of input at offset {src_offset:#x}")
            src_offset += n
            dst_offset += n
            size -= n

    def _copy_file_range(self, src_offset: int, dst_offset: int, size: int) -> int:
        return os.copy_file_range(self.src, self.dst, size, src_offset, dst_offset)

    def _sendfile(self, src_offset: int, dst_offset: int, size: int) -> int:
        os.lseek(self.dst, dst_offset, os.SEEK_SET)
        return os.sendfile(self.dst, self.src, src_offset, size)

    def _read_write(self, src_offset: int, dst_offset: int, size: int) -> int:
        if self.buffer is None:
            self.buffer = bytearray(COPY_BUFFER)
        view = memoryview(self.buffer)[:min(size, COPY_BUFFER)]
        n = os.preadv(self.src, [view], src_offset)
        done = 0
        while done < n:
            done += os.pwrite(self.dst, view[done:n], dst_offset + done)
        return n


class _ChunkSource:
    """The input's bytes of one chunk at a time, for the zero-page test.

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

    def window(self, offset: int, n: int) -> np.ndarray:
        """Pages as an (n, page/8) uint64 array of file bytes at offset (call fill first)."""
        self.offset, self.size = offset, n * self.page
        if self.map is not None:
            if offset + self.size > len(self.map):
                raise OSError(errno.EIO, f"unexpected end of input at offset {offset:#x}")
            view = memoryview(self.map)[offset:offset + self.size]
        else:
            view = memoryview(self.buf)[:self.size]
        return np.frombuffer(view, np.uint64).reshape(n, self.page // 8)

    def fill(self, first: int, end: int) -> None:
        """Make pages first..end-1 of the window hold the file's bytes."""
        if self.map is None:
            view = memoryview(self.buf)[first * self.page:end * self.page]
            at = self.offset + first * self.page
            if os.preadv(self.fd, [view], at) != len(view):
                raise OSError(errno.EIO, f"short read of the input at offset {at:#x}")

    def release(self) -> None:
        if self.map is not None and hasattr(self.map, "madvise"):
            start = self.offset - self.offset % mmap.PAGESIZE
            self.map.madvise(mmap.MADV_DONTNEED, start, self.offset + self.size - start)

    def close(self) -> None:
        if self.map is not None:
            try:
                self.map.close()
            except BufferError:      # a view is still alive (an error mid-scan): the GC closes it
                pass


def _runs(mask: np.ndarray):
    """[(start, end)] of the True runs of a bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return edges.reshape(-1, 2)


def _mark_zero_pages(source: "_ChunkSource", offset: int, why: np.ndarray, page: int,
                     bar: "_Progress") -> None:
    """Mark Reason.ZERO on the kept pages of `why` (pages of the file from `offset`) that
    hold only zeros. Only those pages are read: one the classes leave out never is."""
    gather = np.empty((GATHER_PAGES, page // 8), np.uint64)
    for c0 in range(0, len(why), CHUNK_PAGES):
        c1 = min(len(why), c0 + CHUNK_PAGES)
        maybe = why[c0:c1] == Reason.KEEP
        if maybe.any():
            pages = source.window(offset + c0 * page, c1 - c0)
            for r0, r1 in _runs(maybe).tolist():
                source.fill(r0, r1)
            # most kept pages show a non-zero first word: only the others are read whole,
            # gathered a few at a time into one reused buffer (no new memory per chunk)
            candidates = np.flatnonzero(maybe)
            candidates = candidates[pages[candidates, 0] == 0]
            for g0 in range(0, len(candidates), GATHER_PAGES):
                group = candidates[g0:g0 + GATHER_PAGES]
                # mode="clip": the indices are valid, and "raise" would buffer `out` anew
                gathered = np.take(pages, group, axis=0, out=gather[:len(group)], mode="clip")
                why[c0 + group[~gathered.any(axis=1)]] = Reason.ZERO
            del pages                    # no view of the mapping left: it can be released
            source.release()
        bar.add((c1 - c0) * page)


class _LoadLayout:
    """The output segments of one whole-page PT_LOAD, built as the runs of kept pages come
    (ascending, window by window) and copied at once: a segment ends where a run of
    MIN_HOLE_PAGES or more left-out pages starts; a shorter run between kept pages (or
    before the first, from the PT_LOAD's start) is written anyway; a trailing one is not.
    Pages are counted from the PT_LOAD's first."""

    def __init__(self, copier: _Copier, src_offset: int, paddr: int, page: int,
                 min_hole: int, add_segment):
        self.copier, self.src_offset, self.paddr, self.page = copier, src_offset, paddr, page
        self.min_hole, self.add_segment = min_hole, add_segment
        self.start: Optional[int] = None   # first page of the open segment
        self.out_offset = 0                # where it starts in the output
        self.done = 0                      # page up to which it is written
        self.last_kept = 0                 # page after the last kept one: a gap starts there
        self.filled = 0                    # left-out pages written anyway

    def add_runs(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Kept pages starts[i]..ends[i]-1, after all the runs added before."""
        if not len(starts):
            return
        gaps = starts - np.concatenate(([self.last_kept], ends[:-1]))
        short = gaps < self.min_hole
        self.filled += int(gaps[short].sum())
        new = ~short
        if self.start is None:
            new[0] = True
        for i in np.flatnonzero(new).tolist():
            if self.start is not None:
                self._extend(int(ends[i - 1]) if i else self.last_kept)
                self._close()
            # before the first kept run, a short gap from the PT_LOAD's start is written
            self.start = self.last_kept if i == 0 and short[0] else int(starts[i])
            self.out_offset, self.done = self.copier.offset, self.start
        self.last_kept = int(ends[-1])
        self._extend(self.last_kept)

    def finish(self) -> None:
        if self.start is not None:
            self._close()

    def _extend(self, to: int) -> None:
        if to > self.done:
            self.copier.copy(self.src_offset + self.done * self.page, (to - self.done) * self.page)
            self.done = to

    def _close(self) -> None:
        self.add_segment(self.paddr + self.start * self.page, self.out_offset,
                         (self.done - self.start) * self.page)
        self.start = None


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


def _create_beside(out_path: str, out_dir: str):
    """(fd, path) of a new file `.OUT.PID.N` in out_dir, mode 0600 (what tempfile.mkstemp
    does, without the ~5 ms its import costs every save)."""
    base = f".{os.path.basename(out_path)}.{os.getpid()}"
    for n in range(1000):
        path = os.path.join(out_dir, f"{base}.{n}")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", f"{out_dir}/{base}.*")


def _save_to(dump, src_fd, out_path, out_dir, reasons, level, page, progress) -> SaveResult:
    """Write the output into a temporary file beside OUT, renamed to OUT when complete."""
    try:
        fd, tmp = _create_beside(out_path, out_dir)
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


def _write_kept_pages(p, reasons: np.ndarray, level: int, page: int, min_hole: int,
                      copier: _Copier, source: _ChunkSource, counts: np.ndarray,
                      bar: _Progress, add_segment) -> int:
    """Copy the pages of the whole-page PT_LOAD `p` that `level` keeps, WINDOW_PAGES at a
    time; count each page's Reason into `counts`. Returns the left-out pages written anyway."""
    first_pfn, npages = p.p_paddr // page, p.p_filesz // page
    layout = _LoadLayout(copier, p.p_offset, p.p_paddr, page, min_hole, add_segment)
    for w0 in range(0, npages, WINDOW_PAGES):
        n = min(WINDOW_PAGES, npages - w0)
        pfn0 = first_pfn + w0
        lo, hi = min(pfn0, len(reasons)), min(pfn0 + n, len(reasons))
        why = np.zeros(n, np.uint8)
        why[:hi - lo] = reasons[lo:hi]
        if level & DL_ZERO:
            _mark_zero_pages(source, p.p_offset + w0 * page, why, page, bar)
        counts += np.bincount(why, minlength=len(Reason))
        runs = _runs(why == Reason.KEEP) + w0
        layout.add_runs(runs[:, 0], runs[:, 1])
        bar.add(n * page)
    layout.finish()
    return layout.filled


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
    copier = _Copier(src_fd, out_fd, notes_at, background=True)
    for p in notes:
        copier.write(bytes(dump._file(p.p_offset, p.p_filesz)))
    copier.offset = data_at

    result = SaveResult(loads_in=len(loads_in))
    counts = np.zeros(len(Reason), np.int64)
    scans = bool(level & DL_ZERO)
    # bytes to go through: each PT_LOAD is scanned for zero pages (if asked), then copied
    bar = _Progress(sum(p.p_filesz for p in loads_in) * (2 if scans else 1), progress)
    load_phdrs: List[dict] = []
    source = _ChunkSource(src_fd, page)
    try:
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
                bar.add(p.p_filesz * (2 if scans else 1))
                continue
            result.pages += p.p_filesz // page
            result.kept_in_short_holes += _write_kept_pages(
                p, reasons, level, page, min_hole, copier, source, counts, bar, add_segment)
            if p.p_memsz > p.p_filesz:     # the input's own zero tail stays a zero tail
                add_segment(p.p_paddr + p.p_filesz, 0, 0, p.p_memsz - p.p_filesz)
        copier.finish()                # every copy done (or its error raised)
    finally:
        copier.stop()
        source.close()
    bar.close()

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
