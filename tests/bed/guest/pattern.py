"""Memory pattern for the "memory survives the crash" check (guest side, also host-testable).

Filler (first kernel, `python pattern.py fill --mib N --out DIR`): maps N MiB of anonymous
memory (MAP_POPULATE, MADV_NOHUGEPAGE, mlock), writes into every page a 32-byte block
(an 8-byte tag, the page index and two functions of it) repeated 128 times, reads
/proc/self/pagemap (bit 63 = present, bits 0-54 = PFN; needs root), writes
DIR/pattern.txt (`tag <hex> pages <n>` then one `index pfn` line per page), prints
`ready` and sleeps until the kernel panics.

Checker (capture kernel, `check_pattern`): maps every recorded PFN through the vmcore's
PT_LOADs (`p_paddr <= pa < p_paddr + p_filesz` → `p_offset + pa - p_paddr`) and compares
the whole page. `shift=1` checks every PFN + 1 instead: the negative control, which must
mismatch every page.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import struct
import sys
import time
from typing import Iterable, List, Optional, Sequence, Tuple

PAGE = 4096
BLOCK = 32
M64 = (1 << 64) - 1
PFN_MASK = (1 << 55) - 1
PRESENT = 1 << 63


def page_bytes(tag: bytes, index: int) -> bytes:
    """The expected contents of page `index` for a run tagged `tag` (8 bytes)."""
    a = (index * 0x9E3779B97F4A7C15 + 0x0123456789ABCDEF) & M64
    b = ((index ^ 0xA5A5A5A5A5A5A5A5) * 0xBF58476D1CE4E5B9) & M64
    return struct.pack("<8sQQQ", tag, index, a, b) * (PAGE // BLOCK)


def read_records(path: str) -> Tuple[bytes, List[Tuple[int, int]]]:
    """(tag, [(index, pfn), ...]) from a pattern.txt file; pfn 0 means "not present"."""
    with open(path) as f:
        head = f.readline().split()
        if len(head) < 4 or head[0] != "tag" or head[2] != "pages":
            raise ValueError(f"{path}: bad header {head!r}")
        tag = bytes.fromhex(head[1])
        records = []
        for line in f:
            if line.strip():
                i, pfn = line.split()
                records.append((int(i), int(pfn)))
    if len(records) != int(head[3]):
        raise ValueError(f"{path}: header says {head[3]} pages, found {len(records)} lines")
    return tag, records


def write_records(path: str, tag: bytes, records: Sequence[Tuple[int, int]]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"tag {tag.hex()} pages {len(records)}\n")
        f.write("".join(f"{i} {pfn}\n" for i, pfn in records))
    os.rename(tmp, path)


# --- filler ---------------------------------------------------------------------------

def fill(mib: int, out_dir: str, tag: Optional[bytes] = None):
    """Fill `mib` MiB, record the PFNs; returns the mmap (keep it alive) and the records."""
    tag = tag or os.urandom(8)
    size = mib << 20
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0x8000)
    buf = mmap.mmap(-1, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        try:
            buf.madvise(mmap.MADV_NOHUGEPAGE)
        except OSError:
            pass
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlock(ctypes.c_void_p(addr), ctypes.c_size_t(size)) != 0:
        raise OSError(ctypes.get_errno(), "mlock failed")
    npages = size // PAGE
    for i in range(npages):
        buf[i * PAGE:(i + 1) * PAGE] = page_bytes(tag, i)
    with open("/proc/self/pagemap", "rb") as pm:
        raw = os.pread(pm.fileno(), npages * 8, (addr // PAGE) * 8)
    entries = struct.unpack(f"<{npages}Q", raw)
    records = [(i, (e & PFN_MASK) if e & PRESENT else 0) for i, e in enumerate(entries)]
    write_records(os.path.join(out_dir, "pattern.txt"), tag, records)
    return buf, records


def _main_fill(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="pattern.py fill")
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    buf, records = fill(args.mib, args.out)
    zero = sum(1 for _, pfn in records if pfn == 0)
    print(f"ready pages={len(records)} unmapped={zero}", flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:  # stay alive (and keep `buf` mapped) until the panic
        time.sleep(3600)


# --- checker --------------------------------------------------------------------------

def load_ranges(phdrs: Iterable[dict]) -> List[Tuple[int, int, int]]:
    """[(paddr, filesz, offset)] of the PT_LOADs, sorted by paddr."""
    return sorted((p["paddr"], p["filesz"], p["offset"]) for p in phdrs
                  if p["type"] in ("PT_LOAD", 1))


def translate(ranges: Sequence[Tuple[int, int, int]], pa: int, size: int = PAGE) -> Optional[int]:
    """File offset of physical [pa, pa+size) in the core file, or None if not all covered."""
    for paddr, filesz, offset in ranges:
        if paddr <= pa and pa + size <= paddr + filesz:
            return offset + pa - paddr
    return None


def check_pattern(fd: int, phdrs: Iterable[dict], tag: bytes,
                  records: Sequence[Tuple[int, int]], shift: int = 0) -> dict:
    """Compare every recorded page with its copy in the core file open as `fd`.

    Returns counts: recorded, checked (pages found in a PT_LOAD), matched, mismatched,
    missing (no PFN recorded, or PFN not covered by any PT_LOAD), unreadable (covered, but
    the core file cannot be read at that offset), and up to 5 examples.
    """
    ranges = load_ranges(phdrs)
    stats = {"recorded": len(records), "checked": 0, "matched": 0, "mismatched": 0,
             "missing": 0, "unreadable": 0, "shift": shift, "examples": []}
    t0 = time.monotonic()
    for index, pfn in sorted(records, key=lambda r: r[1]):
        if pfn == 0:
            stats["missing"] += 1
            continue
        off = translate(ranges, (pfn + shift) * PAGE)
        if off is None:
            stats["missing"] += 1
            continue
        try:
            data = os.pread(fd, PAGE, off)
        except (OverflowError, OSError):
            # an offset past 2**63: /proc/vmcore's offsets overflowed (a bogus PT_LOAD before)
            stats["unreadable"] += 1
            continue
        stats["checked"] += 1
        if data == page_bytes(tag, index):
            stats["matched"] += 1
        else:
            stats["mismatched"] += 1
            if len(stats["examples"]) < 5:
                stats["examples"].append({"index": index, "pfn": pfn + shift,
                                          "got": data[:BLOCK].hex()})
    stats["seconds"] = round(time.monotonic() - t0, 3)
    return stats


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "fill":
        _main_fill(sys.argv[2:])
    else:
        sys.exit("usage: pattern.py fill --mib N --out DIR")
