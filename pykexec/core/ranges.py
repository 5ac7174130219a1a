"""Physical memory ranges, typed memory-map entries, and a pure hole finder.

Convention: every `Range` is **half-open**, `[start, end)`: `end` is the first address
*after* the range and `size == end - start`. The kernel's text interfaces
(/proc/iomem, /sys/firmware/memmap) print **inclusive** ends ("00001000-0009fbff");
convert at the edge with `Range.from_inclusive(first, last)` and `Range.last` /
`Range.to_iomem()`, and never carry inclusive ends around inside pykexec.

Three shapes, each for one job:

* `Range`: one interval; arithmetic (intersect, minus, align) and page helpers.
* `RangeSet`: a normalised set of addresses (sorted, disjoint, touching ranges merged),
  for "System RAM minus crash regions" style arithmetic where only coverage matters.
* `MemoryRegion` / `MemType`: one typed memory-map entry ("System RAM", "ACPI Tables",
  ...). Memory maps are kept as plain tuples of regions in the order the kernel gave
  them, because kexec-tools' rules depend on that order and on entries staying separate.

`find_hole` is locate_hole as a pure function: given free pieces, a size, an alignment
and bounds, it answers the lowest (bottom-up) or highest (top-down) aligned base, or
raises `NoHoleError`. `free_pieces` builds its input the way kexec-tools does (each RAM
range minus the segments already placed, pieces not merged across RAM ranges).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Tuple, Union

from pykexec.errors import PykexecError

PAGE_SIZE = 4096
ADDR_LIMIT = 1 << 64  # one past the highest 64-bit physical address


def _check_align(align: int) -> None:
    if not isinstance(align, int) or align <= 0:
        raise ValueError(f"alignment must be a positive integer, not {align!r}")


def align_down(value: int, align: int) -> int:
    """Largest multiple of `align` that is <= value (any positive align, not only 2^n)."""
    _check_align(align)
    return value - value % align


def align_up(value: int, align: int) -> int:
    """Smallest multiple of `align` that is >= value."""
    _check_align(align)
    return -(-value // align) * align


@dataclass(frozen=True, order=True)
class Range:
    """Physical addresses `[start, end)`. Empty ranges (start == end) are allowed."""

    start: int
    end: int

    def __post_init__(self):
        for name in ("start", "end"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"Range.{name} must be an int, not {type(v).__name__}")
        if not 0 <= self.start <= self.end <= ADDR_LIMIT:
            raise ValueError(f"bad range [{self.start:#x}, {self.end:#x})")

    # -- construction and conversion ---------------------------------------------------

    @classmethod
    def from_size(cls, start: int, size: int) -> "Range":
        return cls(start, start + size)

    @classmethod
    def from_inclusive(cls, first: int, last: int) -> "Range":
        """From the inclusive form of /proc/iomem and memmap: `first-last` both included."""
        if last < first:
            raise ValueError(f"inclusive range {first:#x}-{last:#x} ends before it starts")
        return cls(first, last + 1)

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def empty(self) -> bool:
        return self.start == self.end

    @property
    def last(self) -> int:
        """The inclusive end (highest address in the range); undefined for empty ranges."""
        if self.empty:
            raise ValueError(f"empty range at {self.start:#x} has no last address")
        return self.end - 1

    def to_iomem(self) -> str:
        """The range as /proc/iomem prints it: `%08x-%08x`, inclusive end."""
        return f"{self.start:08x}-{self.last:08x}"

    def __str__(self) -> str:
        return f"[{self.start:#x}, {self.end:#x})"

    def __repr__(self) -> str:
        return f"Range({self.start:#x}, {self.end:#x})"

    # -- predicates ----------------------------------------------------------------------

    def contains(self, other: Union[int, "Range"]) -> bool:
        """An address inside the range, or a range wholly inside it (empty ranges: by start)."""
        if isinstance(other, Range):
            return self.start <= other.start and other.end <= self.end
        return self.start <= other < self.end

    def __contains__(self, other) -> bool:
        return self.contains(other)

    def overlaps(self, other: "Range") -> bool:
        """True when the two ranges share at least one address (never for empty ones)."""
        return (self.start < other.end and other.start < self.end
                and not self.empty and not other.empty)

    def touches(self, other: "Range") -> bool:
        """Overlapping or adjacent (so that their union is one range)."""
        return self.start <= other.end and other.start <= self.end

    # -- arithmetic ----------------------------------------------------------------------

    def intersect(self, other: "Range") -> Optional["Range"]:
        """The common part, or None when they share no address."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Range(start, end) if start < end else None

    def minus(self, other: "Range") -> Tuple["Range", ...]:
        """What is left of self after removing `other`: 0, 1 or 2 non-empty ranges, in order."""
        if not self.overlaps(other):
            return (self,) if not self.empty else ()
        pieces = []
        if self.start < other.start:
            pieces.append(Range(self.start, other.start))
        if other.end < self.end:
            pieces.append(Range(other.end, self.end))
        return tuple(pieces)

    def align_in(self, align: int) -> Optional["Range"]:
        """The largest sub-range whose ends are multiples of `align`, or None."""
        start, end = align_up(self.start, align), align_down(self.end, align)
        return Range(start, end) if start < end else None

    def align_out(self, align: int) -> "Range":
        """The smallest range with `align`-multiple ends that covers self."""
        return Range(align_down(self.start, align), min(align_up(self.end, align), ADDR_LIMIT))

    # -- pages ---------------------------------------------------------------------------

    def page_align_in(self) -> Optional["Range"]:
        return self.align_in(PAGE_SIZE)

    def page_align_out(self) -> "Range":
        return self.align_out(PAGE_SIZE)

    @property
    def is_page_aligned(self) -> bool:
        return self.start % PAGE_SIZE == 0 and self.end % PAGE_SIZE == 0

    @property
    def pages(self) -> int:
        """Number of pages the range touches."""
        out = self.page_align_out()
        return out.size // PAGE_SIZE


class RangeSet:
    """An immutable set of physical addresses stored as sorted, disjoint, merged ranges.

    Adjacent and overlapping inputs are merged, empty inputs dropped, so two RangeSets
    covering the same addresses are equal. Iterating gives the ranges in address order.
    """

    __slots__ = ("_ranges",)

    def __init__(self, ranges: Iterable[Range] = ()):
        merged = []
        for r in sorted(r for r in ranges if not r.empty):
            if merged and merged[-1].end >= r.start:
                if r.end > merged[-1].end:
                    merged[-1] = Range(merged[-1].start, r.end)
            else:
                merged.append(r)
        object.__setattr__(self, "_ranges", tuple(merged))

    def __setattr__(self, name, value):
        raise AttributeError("RangeSet is immutable")

    @property
    def ranges(self) -> Tuple[Range, ...]:
        return self._ranges

    def __iter__(self) -> Iterator[Range]:
        return iter(self._ranges)

    def __len__(self) -> int:
        return len(self._ranges)

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __eq__(self, other) -> bool:
        return isinstance(other, RangeSet) and self._ranges == other._ranges

    def __hash__(self) -> int:
        return hash(self._ranges)

    def __repr__(self) -> str:
        return "RangeSet([" + ", ".join(repr(r) for r in self._ranges) + "])"

    @property
    def size(self) -> int:
        """Total number of addresses covered."""
        return sum(r.size for r in self._ranges)

    def contains(self, other: Union[int, Range]) -> bool:
        """An address in the set, or a range wholly covered by one member range."""
        return any(r.contains(other) for r in self._ranges)

    def __contains__(self, other) -> bool:
        return self.contains(other)

    def overlaps(self, other: Range) -> bool:
        return any(r.overlaps(other) for r in self._ranges)

    def union(self, other: Union["RangeSet", Iterable[Range]]) -> "RangeSet":
        return RangeSet(tuple(self._ranges) + tuple(other))

    def minus(self, other: Union["RangeSet", Range, Iterable[Range]]) -> "RangeSet":
        holes = (other,) if isinstance(other, Range) else tuple(other)
        pieces = list(self._ranges)
        for hole in holes:
            pieces = [p for piece in pieces for p in piece.minus(hole)]
        return RangeSet(pieces)

    def intersect(self, other: Union["RangeSet", Range, Iterable[Range]]) -> "RangeSet":
        others = (other,) if isinstance(other, Range) else tuple(other)
        return RangeSet(x for r in self._ranges for o in others
                        for x in (r.intersect(o),) if x is not None)

    def find_hole(self, size: int, align: int = PAGE_SIZE, low: int = 0,
                  high: int = ADDR_LIMIT, top_down: bool = False) -> int:
        """`find_hole` over this set's (merged) ranges."""
        return find_hole(self._ranges, size, align, low, high, top_down)


class NoHoleError(PykexecError, ValueError):
    """No free piece can hold the requested size with the requested alignment and bounds."""


def find_hole(free: Iterable[Range], size: int, align: int = PAGE_SIZE, low: int = 0,
              high: int = ADDR_LIMIT, top_down: bool = False) -> int:
    """The base of a `size`-byte block inside one of the `free` pieces.

    The block `[base, base + size)` lies inside a single piece and inside `[low, high)`,
    and `base` is a multiple of `align`. Bottom-up answers the lowest such base; top-down
    answers the highest, placed as high as the alignment allows within its piece. For
    sorted pieces that is exactly kexec-tools' locate_hole (first fitting piece
    bottom-up, last fitting piece top-down). kexec-tools first raises `align` to the page
    size; callers that want that must pass `max(align, PAGE_SIZE)`.
    """
    if size <= 0:
        raise ValueError(f"hole size must be positive, not {size:#x}")
    _check_align(align)
    best = None
    for piece in free:
        start = align_up(max(piece.start, low), align)
        end = min(piece.end, high)
        if start >= end or end - start < size:
            continue
        base = align_down(end - size, align) if top_down else start
        if best is None or (base > best if top_down else base < best):
            best = base
    if best is None:
        raise NoHoleError(
            f"no free area of {size:#x} bytes aligned to {align:#x} "
            f"in [{low:#x}, {high:#x})")
    return best


def free_pieces(ram: Iterable[Range], used: Iterable[Range]) -> Tuple[Range, ...]:
    """Each RAM range minus every used range, in RAM order, pieces kept separate.

    Pieces are not merged across RAM ranges: kexec-tools never places a segment across
    two memory-map entries, even adjacent ones.
    """
    used = tuple(used)
    out = []
    for r in ram:
        pieces = [r] if not r.empty else []
        for u in used:
            pieces = [p for piece in pieces for p in piece.minus(u)]
        out.extend(pieces)
    return tuple(out)


class MemType(str, enum.Enum):
    """Memory-map entry types, named as the kernel spells them in memmap and iomem.

    These names are every architecture's (/proc/iomem, /sys/firmware/memmap); the numbers
    a boot protocol gives them are the architecture's to declare."""

    RAM = "System RAM"
    RESERVED = "reserved"
    ACPI = "ACPI Tables"
    NVS = "ACPI Non-volatile Storage"
    UNCACHED = "Uncached RAM"
    PMEM = "Persistent Memory"
    PRAM = "Persistent Memory (legacy)"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class MemoryRegion:
    """One typed memory-map entry: a half-open range and what the firmware says it is."""

    range: Range
    type: MemType

    @property
    def start(self) -> int:
        return self.range.start

    @property
    def end(self) -> int:
        return self.range.end

    @property
    def size(self) -> int:
        return self.range.size

    def __str__(self) -> str:
        return f"{self.range.to_iomem()} : {self.type.value}"

    def __repr__(self) -> str:
        return f"MemoryRegion({self.range!r}, {self.type.name})"


def regions_of_type(regions: Iterable[MemoryRegion], *types: MemType) -> Tuple[Range, ...]:
    """The ranges of the regions with one of `types`, in the given order."""
    return tuple(r.range for r in regions if r.type in types)
