"""Segment placement: where each buffer goes, under the kernel's rules.

A loader first reserves space (size, alignment, bounds, direction) and fills the bytes
later, because several buffers point at each other: boot_params holds the command line's
and the initrd's addresses, the command line holds the ELF core header's. `finish()`
checks what `kexec_load` would refuse (more than 16 segments, unaligned or overlapping
segments, bufsz over memsz, anything outside the allowed window) and what it would fail
on later: a crash load must leave free pages in the crash region for the kernel's control
page and its vmcoreinfo copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

from pykexec.errors import PykexecError
from pykexec.core.plan import Segment
from pykexec.core.ranges import (ADDR_LIMIT, PAGE_SIZE, NoHoleError, Range, align_up, find_hole,
                            free_pieces)

KEXEC_SEGMENT_MAX = 16
# The kernel takes a control page and a vmcoreinfo page from the crash region's holes.
CRASH_FREE_PAGES_NEEDED = 2


class LayoutError(PykexecError, ValueError):
    """A placement the kernel would refuse, or no room; the message says which buffer."""

    exit_status = 255


class NoRoomError(LayoutError):
    """No hole for a buffer, or its fixed address is taken: kexec-tools dies (locate_hole
    failed, Invalid memory segment), exit 1."""

    exit_status = 1


@dataclass
class _Slot:
    mem: int
    memsz: int
    kind: str
    source: str
    data: Optional[bytes] = None


class Layout:
    def __init__(self, ram: Iterable[Range], window: Range, crash: bool = False):
        """`ram`: the RAM pieces of the memory map; `window`: where segments may go
        ([mem_min, mem_max] as half-open; the crash region for a crash load)."""
        self.ram = tuple(ram)
        self.window = window
        self.crash = crash
        self._slots: Dict[int, _Slot] = {}

    def _used(self) -> Tuple[Range, ...]:
        return tuple(Range.from_size(s.mem, s.memsz) for s in sorted(self._slots.values(),
                                                                        key=lambda s: s.mem))

    def free(self) -> Tuple[Range, ...]:
        """Free RAM pieces inside the window."""
        inside = [x for r in self.ram for x in (r.intersect(self.window),) if x is not None]
        return free_pieces(inside, self._used())

    def find(self, memsz: int, kind: str, align: int = PAGE_SIZE, low: int = 0,
             high: int = ADDR_LIMIT, top_down: bool = True, source: str = "") -> int:
        """Where `memsz` bytes would go, without reserving them."""
        memsz = align_up(max(memsz, 1), PAGE_SIZE)
        align = max(align, PAGE_SIZE)
        try:
            return find_hole(self.free(), memsz, align, low, high, top_down)
        except NoHoleError:
            what = f"{kind} ({source})" if source else kind
            raise NoRoomError(
                f"no room for the {what}: {memsz:#x} bytes, aligned to {align:#x}, in "
                f"{self.window} between {max(low, self.window.start):#x} and "
                f"{min(high, self.window.end):#x}") from None

    def place(self, memsz: int, kind: str, source: str = "", align: int = PAGE_SIZE,
              low: int = 0, high: int = ADDR_LIMIT, top_down: bool = True) -> int:
        """Reserve `memsz` bytes (rounded up to a page) and return the address."""
        mem = self.find(memsz, kind, align, low, high, top_down, source)
        self._slots[mem] = _Slot(mem, align_up(max(memsz, 1), PAGE_SIZE), kind, source)
        return mem

    def fits_at(self, mem: int, memsz: int) -> bool:
        want = Range.from_size(mem, align_up(max(memsz, 1), PAGE_SIZE))
        return mem % PAGE_SIZE == 0 and any(p.contains(want) for p in self.free())

    def place_at(self, mem: int, memsz: int, kind: str, source: str = "") -> int:
        """Reserve a fixed address (an ELF kernel's PT_LOAD goes where it was linked)."""
        memsz = align_up(max(memsz, 1), PAGE_SIZE)
        if mem % PAGE_SIZE:
            raise LayoutError(f"{kind} at {mem:#x} is not page aligned")
        if not self.fits_at(mem, memsz):
            raise NoRoomError(f"{source or kind} must go at {Range.from_size(mem, memsz)} but that is not "
                              f"free RAM inside {self.window}")
        self._slots[mem] = _Slot(mem, memsz, kind, source)
        return mem

    def fill(self, mem: int, data: bytes) -> None:
        slot = self._slots[mem]
        if len(data) > slot.memsz:
            raise LayoutError(f"{slot.source or slot.kind}: the {slot.kind} grew to "
                              f"{len(data):#x} bytes, more than the {slot.memsz:#x} reserved")
        slot.data = bytes(data)

    def add(self, data: bytes, kind: str, source: str = "", memsz: Optional[int] = None,
            **where) -> int:
        """Place and fill in one step."""
        mem = self.place(max(memsz or 0, len(data)), kind, source, **where)
        self.fill(mem, data)
        return mem

    def finish(self) -> Tuple[Segment, ...]:
        slots = sorted(self._slots.values(), key=lambda s: s.mem)
        if len(slots) > KEXEC_SEGMENT_MAX:
            raise LayoutError(f"{len(slots)} segments; the kernel takes at most {KEXEC_SEGMENT_MAX}")
        for s in slots:
            if s.data is None:
                raise LayoutError(f"the {s.kind} at {s.mem:#x} was reserved but never filled")
        for a, b in zip(slots, slots[1:]):
            if a.mem + a.memsz > b.mem:
                raise LayoutError(f"{a.kind} and {b.kind} overlap at {b.mem:#x}")
        if self.crash:
            free_pages = sum(p.size // PAGE_SIZE for r in self.free()
                             for p in (r.page_align_in(),) if p is not None)
            if free_pages < CRASH_FREE_PAGES_NEEDED:
                raise LayoutError(
                    f"the segments fill the crash region {self.window}; the kernel needs "
                    f"{CRASH_FREE_PAGES_NEEDED} free pages there (reserve more crashkernel memory)")
        return tuple(Segment(s.mem, s.memsz, s.data, s.kind, s.source) for s in slots)
