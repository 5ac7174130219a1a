"""An independent checker for saved vmcores: its own ELF reader (struct, no pykexec code).

`page_table(path)` lists, for every whole page a core file's PT_LOADs hold in the file,
its PFN and file offset. `check_saved(source, saved, may_drop)` proves page by page that
the saved file holds only pages of the source, byte for byte, and that every source page
missing from it is either all zeros (checked here) or in `may_drop` (PFN -> reason, what
the caller knows the level leaves out); it reports each dropped page's reason.
`kept_pfns(path)` gives the set of PFNs in a file, for comparing two tools' outputs.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

PAGE = 4096
PT_LOAD = 1


def _phdrs(f):
    ident = f.read(64)
    if ident[:4] != b"\x7fELF":
        raise ValueError(f"{f.name}: not ELF")
    if ident[4] == 2:
        phoff, = struct.unpack_from("<Q", ident, 32)
        phentsize, phnum = struct.unpack_from("<HH", ident, 54)
        fmt, names = "<IIQQQQQQ", ("type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align")
    else:
        phoff, = struct.unpack_from("<I", ident, 28)
        phentsize, phnum = struct.unpack_from("<HH", ident, 42)
        fmt, names = "<IIIIIIII", ("type", "offset", "vaddr", "paddr", "filesz", "memsz", "flags", "align")
    f.seek(phoff)
    raw = f.read(phentsize * phnum)
    return [dict(zip(names, struct.unpack_from(fmt, raw, i * phentsize))) for i in range(phnum)]


def loads(path: str) -> List[dict]:
    with open(path, "rb") as f:
        return [p for p in _phdrs(f) if p["type"] == PT_LOAD]


def page_table(path: str) -> Dict[int, int]:
    """PFN -> file offset of every whole page in a PT_LOAD's file bytes (first PT_LOAD wins)."""
    table: Dict[int, int] = {}
    for p in loads(path):
        first = -(-p["paddr"] // PAGE)
        end = (p["paddr"] + p["filesz"]) // PAGE
        for pfn in range(first, end):
            table.setdefault(pfn, p["offset"] + pfn * PAGE - p["paddr"])
    return table


def kept_pfns(path: str) -> set:
    return set(page_table(path))


@dataclass
class CheckReport:
    source_pages: int = 0
    saved_pages: int = 0
    identical: int = 0
    dropped: Counter = field(default_factory=Counter)       # reason -> pages
    problems: List[str] = field(default_factory=list)      # empty when the file is sound

    @property
    def ok(self) -> bool:
        return not self.problems


def check_saved(source: str, saved: str, may_drop: Optional[Dict[int, str]] = None,
                max_problems: int = 20) -> CheckReport:
    src_table, out_table = page_table(source), page_table(saved)
    rep = CheckReport(source_pages=len(src_table), saved_pages=len(out_table))
    may_drop = may_drop or {}

    def problem(msg):
        if len(rep.problems) < max_problems:
            rep.problems.append(msg)

    with open(source, "rb") as s, open(saved, "rb") as o:
        for pfn in sorted(out_table):
            if pfn not in src_table:
                problem(f"pfn {pfn:#x} is in the saved file but not in the source")
                continue
            a = os.pread(s.fileno(), PAGE, src_table[pfn])
            b = os.pread(o.fileno(), PAGE, out_table[pfn])
            if a == b:
                rep.identical += 1
            else:
                problem(f"pfn {pfn:#x}: bytes differ")
        for pfn in sorted(set(src_table) - set(out_table)):
            data = np.frombuffer(os.pread(s.fileno(), PAGE, src_table[pfn]), np.uint8)
            if pfn in may_drop:
                rep.dropped[may_drop[pfn]] += 1
            elif not data.any():
                rep.dropped["zero"] += 1
            else:
                problem(f"pfn {pfn:#x} is missing from the saved file and is neither zeros "
                        f"nor a page the level leaves out")
    return rep
