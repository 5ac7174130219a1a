"""Which pages a dump level leaves out, from the kernel's `struct page` array (numpy, in bulk).

The dump level has makedumpfile's meaning (`-d` bits). The rules are the ones makedumpfile
applies (its `__exclude_unnecessary_pages`), in the same order, for the same page:
a compound tail page is decided by its head; then free (buddy) blocks, non-private cache,
all cache, user data (anonymous or hugetlbfs); hardware-poisoned and logically offline
pages are left out at every level whenever the kernel exports their markers. An excluded
head takes its whole block (buddy order from `page.private`, compound order from the
first tail page). Zero pages (bit 1) are decided later from the page contents.

Everything here works on whole arrays of struct pages; nothing loops per page.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from pykexec.errors import PykexecError

# dump-level bits (makedumpfile -d)
DL_ZERO, DL_CACHE, DL_CACHE_PRIVATE, DL_USER, DL_FREE = 1, 2, 4, 8, 16
MAX_DUMP_LEVEL = 31
BATCH_PAGES = 8192            # struct pages classified at once (temporaries of 64 KiB)


class Reason(enum.IntEnum):
    """Why a page is left out (KEEP: it is not)."""
    KEEP = 0
    ZERO = 1
    CACHE = 2
    CACHE_PRIVATE = 3
    USER = 4
    FREE = 5
    HWPOISON = 6
    OFFLINE = 7


class PageClassError(PykexecError, ValueError):
    """VMCOREINFO lacks what a dump level needs; the message says which key."""


def _test_bit(flags: np.ndarray, nr: int) -> np.ndarray:
    # makedumpfile tests bit (nr mod 32) of page.flags
    return (flags >> np.uint64(nr & 0x1F)) & np.uint64(1) != 0


def _as_int32(value: int) -> np.int32:
    # VMCOREINFO prints these as a signed long; _mapcount is an int
    return np.array(value & 0xFFFFFFFF, np.uint32).view(np.int32)[()]


def kernel_version(osrelease: str) -> Tuple[int, int, int]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", osrelease or "")
    if not m:
        raise PageClassError(f"VMCOREINFO OSRELEASE {osrelease!r} is not a kernel version")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class PageRules:
    """The struct page layout and page-flag numbers of one kernel, from VMCOREINFO."""
    word: int                       # bytes in an unsigned long (4 or 8)
    size_page: int
    off_flags: int
    off_mapping: int
    off_mapcount: Optional[int]
    off_private: Optional[int]
    off_compound_head: Optional[int]
    off_order: Optional[int]        # in the first tail page
    order_size: int
    off_dtor: Optional[int]         # in the first tail page
    dtor_size: int
    pg_lru: int
    pg_private: int
    pg_swapcache: int
    pg_swapbacked: Optional[int]
    pg_slab: Optional[int]
    pg_hwpoison: Optional[int]
    pg_buddy: Optional[int]
    head_mask: int
    buddy_mapcount: Optional[int]
    offline_mapcount: Optional[int]
    hugetlb_dtor: Optional[int]
    max_order: Optional[int]        # LENGTH(zone.free_area)

    @classmethod
    def from_vmcoreinfo(cls, info: Dict[str, str], word: int) -> "PageRules":
        def num(key, default=None, required=False):
            if key in info:
                try:
                    return int(info[key], 10)
                except ValueError:
                    raise PageClassError(f"VMCOREINFO {key}={info[key]!r} is not a number")
            if required:
                raise PageClassError(f"VMCOREINFO has no {key}")
            return default

        version = kernel_version(info.get("OSRELEASE", ""))
        off_order = num("OFFSET(page.compound_order)")
        off_dtor = num("OFFSET(page.compound_dtor)")
        if version < (4, 4, 0):   # before 4.4 both lived in the first tail page's lru
            lru, nxt, prv = (num("OFFSET(page.lru)"), num("OFFSET(list_head.next)"),
                             num("OFFSET(list_head.prev)"))
            if off_order is None and None not in (lru, prv):
                off_order = lru + prv
            if off_dtor is None and None not in (lru, nxt):
                off_dtor = lru + nxt
        new_layout = version >= (4, 16, 0)
        return cls(
            word=word,
            size_page=num("SIZE(page)", required=True),
            off_flags=num("OFFSET(page.flags)", required=True),
            off_mapping=num("OFFSET(page.mapping)", required=True),
            off_mapcount=num("OFFSET(page._mapcount)"),
            off_private=num("OFFSET(page.private)"),
            off_compound_head=num("OFFSET(page.compound_head)"),
            off_order=off_order, order_size=1 if new_layout else 2,
            off_dtor=off_dtor,
            dtor_size=1 if new_layout else (2 if version >= (4, 4, 0) else word),
            pg_lru=num("NUMBER(PG_lru)", required=True),
            pg_private=num("NUMBER(PG_private)", required=True),
            pg_swapcache=num("NUMBER(PG_swapcache)", required=True),
            pg_swapbacked=num("NUMBER(PG_swapbacked)"),
            pg_slab=num("NUMBER(PG_slab)"),
            pg_hwpoison=num("NUMBER(PG_hwpoison)"),
            pg_buddy=num("NUMBER(PG_buddy)"),
            head_mask=num("NUMBER(PG_head_mask)", 0),
            buddy_mapcount=num("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)"),
            offline_mapcount=num("NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)"),
            hugetlb_dtor=num("NUMBER(HUGETLB_PAGE_DTOR)"),
            max_order=num("LENGTH(zone.free_area)"),
        )

    @property
    def finds_buddies(self) -> bool:
        if self.off_private is None:
            return False
        if self.pg_buddy is not None:
            return True
        return self.buddy_mapcount is not None and self.off_mapcount is not None

    def needs_struct_pages(self, level: int) -> bool:
        """Whether `level` (or the always-on hwpoison rule) needs the struct page array."""
        return bool(level & (DL_CACHE | DL_CACHE_PRIVATE | DL_USER)
                    or self.pg_hwpoison is not None
                    or (level & DL_FREE and self.finds_buddies))

    def check_level(self, level: int) -> None:
        if level & DL_FREE and not self.finds_buddies:
            raise PageClassError("dump level 16 (free pages): VMCOREINFO has neither NUMBER(PG_buddy) "
                                 "nor NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE) with OFFSET(page._mapcount) "
                                 "and OFFSET(page.private)")

    def dtype(self) -> np.dtype:
        """A numpy view of one struct page with the fields the rules read."""
        u = np.uint64 if self.word == 8 else np.uint32
        fields = [("flags", u, self.off_flags), ("mapping", u, self.off_mapping)]
        if self.off_mapcount is not None:
            fields.append(("mapcount", np.int32, self.off_mapcount))
        if self.off_private is not None:
            fields.append(("private", u, self.off_private))
        if self.off_compound_head is not None:
            fields.append(("compound_head", u, self.off_compound_head))
        small = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
        if self.off_order is not None:
            fields.append(("order", small[self.order_size], self.off_order))
        if self.off_dtor is not None:
            fields.append(("dtor", small[self.dtor_size], self.off_dtor))
        names, formats, offsets = zip(*fields)
        return np.dtype({"names": list(names), "formats": list(formats),
                         "offsets": list(offsets), "itemsize": self.size_page}).newbyteorder("<")


class Classifier:
    """Classifies struct page arrays in ascending PFN order, carrying multi-page blocks over.

    `classify(first_pfn, raw, in_dump)` gives one Reason per page of `raw` (n * SIZE(page)
    bytes, the struct pages of PFNs first_pfn..first_pfn+n-1). Pages outside the dump
    (`in_dump` False) start nothing, as in makedumpfile; a block an excluded head starts
    covers its pages even past the end of `raw` (carried into the next call).
    """

    def __init__(self, rules: PageRules, level: int):
        rules.check_level(level)
        self.rules, self.level = rules, level
        self.dtype = rules.dtype()
        self.covered_until = 0          # PFN where the last effective block ends
        self.covered_reason = Reason.KEEP

    def _start_reasons(self, pages: np.ndarray, next_order: np.ndarray,
                       next_dtor: np.ndarray, pfns: np.ndarray):
        """(reason, block length) each page would start if makedumpfile examined it."""
        r, level = self.rules, self.level
        n = len(pages)
        flags = pages["flags"].astype(np.uint64)
        mapping = pages["mapping"].astype(np.uint64)
        mapcount = pages["mapcount"] if r.off_mapcount is not None else np.zeros(n, np.int32)
        private = (pages["private"].astype(np.uint64) if r.off_private is not None
                   else np.zeros(n, np.uint64))

        is_head = (flags & np.uint64(r.head_mask)) != 0 if r.head_mask else np.zeros(n, bool)
        order = np.where(is_head, next_order, 0).astype(np.uint64)
        dtor = np.where(is_head, next_dtor, 0).astype(np.uint64)
        bits = 8 * r.word
        bad = (order >= bits) | ((pfns.astype(np.uint64) & ((np.uint64(1) << np.minimum(order, 63)) - np.uint64(1))) != 0)
        order[bad] = 0

        anon = (mapping & np.uint64(1)) != 0
        private_flag = _test_bit(flags, r.pg_private)
        cache = _test_bit(flags, r.pg_lru)
        swapcache = _test_bit(flags, r.pg_swapcache)
        if r.pg_swapbacked is not None:
            swapcache &= _test_bit(flags, r.pg_swapbacked)
        cache |= swapcache
        slab = _test_bit(flags, r.pg_slab) if r.pg_slab is not None else np.zeros(n, bool)

        false = np.zeros(n, bool)
        if level & DL_FREE and r.finds_buddies:
            if r.pg_buddy is not None:
                buddy = _test_bit(flags, r.pg_buddy)
            else:
                buddy = ~slab & (mapcount == _as_int32(r.buddy_mapcount))
            if r.max_order is not None:     # an impossible order: makedumpfile keeps the page
                buddy_ok = buddy & (private < np.uint64(r.max_order))
                skip_buddy = buddy & ~buddy_ok
            else:
                buddy_ok, skip_buddy = buddy, false
        else:
            buddy_ok = skip_buddy = false
        hugetlb = (dtor == np.uint64(r.hugetlb_dtor)) if r.hugetlb_dtor is not None else false
        cache_np = (cache & ~private_flag & ~anon) if level & DL_CACHE else false
        cache_all = (cache & ~anon) if level & DL_CACHE_PRIVATE else false
        user = (anon | hugetlb) if level & DL_USER else false
        hwpoison = _test_bit(flags, r.pg_hwpoison) if r.pg_hwpoison is not None else false
        offline = ((~slab & (mapcount == _as_int32(r.offline_mapcount)))
                   if r.offline_mapcount is not None and r.off_mapcount is not None else false)

        # the order of makedumpfile's if/else chain; the first true condition wins, so they
        # are written last to first (a rule the level or the kernel does not have is skipped)
        chain = [(skip_buddy, Reason.KEEP), (buddy_ok, Reason.FREE), (cache_np, Reason.CACHE),
                 (cache_all & private_flag, Reason.CACHE_PRIVATE), (cache_all, Reason.CACHE),
                 (user, Reason.USER), (hwpoison, Reason.HWPOISON), (offline, Reason.OFFLINE)]
        reason = np.zeros(n, np.uint8)
        for condition, why in reversed(chain):
            if condition is not false:
                reason[condition] = why
        length_order = np.where(buddy_ok, np.minimum(private, np.uint64(63)), order)
        length = np.uint64(1) << length_order
        if r.off_compound_head is not None:   # a tail page (compound_head bit 0): decided by its head
            tail = (pages["compound_head"].astype(np.uint64) & np.uint64(1)) != 0
            reason[tail] = Reason.KEEP
        return reason, length

    def classify(self, first_pfn: int, raw, in_dump: Optional[np.ndarray] = None) -> np.ndarray:
        pages = np.frombuffer(raw, dtype=self.dtype)
        if len(pages) <= BATCH_PAGES:
            return self._classify(first_pfn, pages, in_dump)
        # in batches: the temporaries stay small enough for malloc to reuse (larger ones are
        # fresh mappings, faulted in page by page every time). A batch starts at a multiple
        # of BATCH_PAGES, so a compound head and its first tail page (the order) share one,
        # and a block longer than a batch is carried over as it is between calls.
        out = np.empty(len(pages), np.uint8)
        b0 = 0
        while b0 < len(pages):
            b1 = min(len(pages), b0 + BATCH_PAGES - (first_pfn + b0) % BATCH_PAGES)
            out[b0:b1] = self._classify(first_pfn + b0, pages[b0:b1],
                                        None if in_dump is None else in_dump[b0:b1])
            b0 = b1
        return out

    def _classify(self, first_pfn: int, pages: np.ndarray, in_dump: Optional[np.ndarray]):
        n = len(pages)
        pfns = np.arange(first_pfn, first_pfn + n, dtype=np.int64)
        names = self.dtype.names
        next_order = np.zeros(n, np.uint64)
        next_dtor = np.zeros(n, np.uint64)
        if n > 1:
            if "order" in names:
                next_order[:-1] = pages["order"][1:]
            if "dtor" in names:
                next_dtor[:-1] = pages["dtor"][1:]
        start_reason, length = self._start_reasons(pages, next_order, next_dtor, pfns)
        if in_dump is not None:
            start_reason[~in_dump] = Reason.KEEP

        out = np.zeros(n, np.uint8)
        carried = pfns < self.covered_until
        out[carried] = self.covered_reason

        starts_idx = np.flatnonzero(start_reason)
        if len(starts_idx):
            starts = pfns[starts_idx]
            ends = starts + length[starts_idx].astype(np.int64)
            # a block that starts inside an earlier one is never examined (makedumpfile skips it)
            before = np.maximum.accumulate(np.concatenate(([self.covered_until], ends[:-1])))
            effective = starts >= before
            starts, ends = starts[effective], ends[effective]
            reasons = start_reason[starts_idx[effective]]
            # effective blocks do not overlap: each page's block is the last one starting
            # at or before it (a running count of starts), if that one reaches the page
            block = np.cumsum(np.bincount(starts - first_pfn, minlength=n)[:n]) - 1
            covered = block >= 0
            covered[covered] = pfns[covered] < ends[block[covered]]
            out[covered] = reasons[block[covered]]
            last = int(np.argmax(ends))
            if ends[last] > self.covered_until:
                self.covered_until = int(ends[last])
                self.covered_reason = Reason(int(reasons[last]))
        return out
