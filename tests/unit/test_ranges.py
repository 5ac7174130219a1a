"""Range, RangeSet, MemType and the hole finder (pykexec.core.ranges)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykexec.arch.x86.bootparams import e820_type
from pykexec.core.ranges import (
    ADDR_LIMIT, MemoryRegion, MemType, NoHoleError, Range, RangeSet, align_down,
    align_up, find_hole, free_pieces, regions_of_type,
)

R = Range


# -- Range basics ------------------------------------------------------------------------

@pytest.mark.parametrize("first,last,start,end,size", [
    (0x1000, 0x9FBFF, 0x1000, 0x9FC00, 0x9EC00),
    (0x0, 0x0, 0x0, 0x1, 0x1),
    (0x100000, 0x3FFDFFFF, 0x100000, 0x3FFE0000, 0x3FEE0000),
    (0x0, 0xFFFFFFFFFFFFFFFF, 0x0, 1 << 64, 1 << 64),
])
def test_from_inclusive(first, last, start, end, size):
    r = Range.from_inclusive(first, last)
    assert (r.start, r.end, r.size, r.last) == (start, end, size, last)


@pytest.mark.parametrize("args,exc", [
    ((5, 4), ValueError), ((-1, 4), ValueError), ((0, (1 << 64) + 1), ValueError),
    ((0.5, 4), TypeError), ((True, 4), TypeError),
])
def test_bad_ranges(args, exc):
    with pytest.raises(exc):
        Range(*args)


def test_from_inclusive_inverted():
    with pytest.raises(ValueError, match="ends before"):
        Range.from_inclusive(0x2000, 0x1FFF)


def test_empty_range_has_no_last():
    r = R(0x1000, 0x1000)
    assert r.empty and r.size == 0
    with pytest.raises(ValueError):
        r.last


def test_text_forms():
    r = Range.from_inclusive(0x1000, 0x9FBFF)
    assert r.to_iomem() == "00001000-0009fbff"
    assert str(r) == "[0x1000, 0x9fc00)"
    assert repr(r) == "Range(0x1000, 0x9fc00)"


@pytest.mark.parametrize("r,x,inside", [
    (R(0x1000, 0x2000), 0x1000, True),
    (R(0x1000, 0x2000), 0x1FFF, True),
    (R(0x1000, 0x2000), 0x2000, False),
    (R(0x1000, 0x2000), 0xFFF, False),
    (R(0x1000, 0x2000), R(0x1000, 0x2000), True),
    (R(0x1000, 0x2000), R(0x1800, 0x2001), False),
])
def test_contains(r, x, inside):
    assert r.contains(x) is inside
    assert (x in r) is inside


@pytest.mark.parametrize("a,b,overlap,touch", [
    (R(0, 0x1000), R(0x1000, 0x2000), False, True),
    (R(0, 0x1001), R(0x1000, 0x2000), True, True),
    (R(0, 0x1000), R(0x1001, 0x2000), False, False),
    (R(0x100, 0x200), R(0, 0x1000), True, True),
])
def test_overlaps_and_touches(a, b, overlap, touch):
    assert a.overlaps(b) is overlap and b.overlaps(a) is overlap
    assert a.touches(b) is touch and b.touches(a) is touch


@pytest.mark.parametrize("a,b,expected", [
    (R(0, 0x1000), R(0x800, 0x2000), R(0x800, 0x1000)),
    (R(0, 0x1000), R(0x1000, 0x2000), None),
    (R(0x100, 0x200), R(0, 0x1000), R(0x100, 0x200)),
])
def test_intersect(a, b, expected):
    assert a.intersect(b) == expected
    assert b.intersect(a) == expected


@pytest.mark.parametrize("a,b,expected", [
    # kexec-tools 9.10: exclude_region([0x100000-0x3ffdffff], 0x2e000000-0x3dffffff)
    (Range.from_inclusive(0x100000, 0x3FFDFFFF), Range.from_inclusive(0x2E000000, 0x3DFFFFFF),
     (Range.from_inclusive(0x100000, 0x2DFFFFFF), Range.from_inclusive(0x3E000000, 0x3FFDFFFF))),
    (R(0, 0x1000), R(0, 0x1000), ()),
    (R(0, 0x1000), R(0, 0x800), (R(0x800, 0x1000),)),
    (R(0, 0x1000), R(0x800, 0x2000), (R(0, 0x800),)),
    (R(0, 0x1000), R(0x2000, 0x3000), (R(0, 0x1000),)),
    (R(0x1000, 0x1000), R(0, 0x3000), ()),
])
def test_minus(a, b, expected):
    assert a.minus(b) == expected


@pytest.mark.parametrize("r,align,inside,outside", [
    (R(0x1001, 0x2FFF), 0x1000, None, R(0x1000, 0x3000)),
    (R(0x1001, 0x3001), 0x1000, R(0x2000, 0x3000), R(0x1000, 0x4000)),
    (R(0x1000, 0x2000), 0x1000, R(0x1000, 0x2000), R(0x1000, 0x2000)),
    (R(0x1000, 0x9FC00), 0x400, R(0x1000, 0x9FC00), R(0x1000, 0x9FC00)),
    (R(0x3DF61000, 0x3E000000), 0x200000, None, R(0x3DE00000, 0x3E000000)),
])
def test_align_in_out(r, align, inside, outside):
    assert r.align_in(align) == inside
    assert r.align_out(align) == outside


def test_page_helpers():
    r = R(0x1800, 0x3800)
    assert r.page_align_in() == R(0x2000, 0x3000)
    assert r.page_align_out() == R(0x1000, 0x4000)
    assert r.pages == 3
    assert not r.is_page_aligned
    assert R(0x1000, 0x3000).is_page_aligned
    assert R(ADDR_LIMIT - 10, ADDR_LIMIT).page_align_out().end == ADDR_LIMIT


@pytest.mark.parametrize("value,align,down,up", [
    (0x1234, 0x1000, 0x1000, 0x2000), (0x2000, 0x1000, 0x2000, 0x2000), (10, 3, 9, 12), (0, 8, 0, 0),
])
def test_align_functions(value, align, down, up):
    assert align_down(value, align) == down
    assert align_up(value, align) == up


@pytest.mark.parametrize("align", [0, -4096, 1.5])
def test_bad_alignment(align):
    with pytest.raises(ValueError):
        align_up(0x1000, align)


def test_range_is_frozen_and_hashable():
    r = R(0, 0x1000)
    with pytest.raises(Exception):
        r.start = 5
    assert {r, R(0, 0x1000)} == {r}


# -- RangeSet ----------------------------------------------------------------------------

def test_rangeset_normalises():
    s = RangeSet([R(0x3000, 0x4000), R(0, 0x1000), R(0x1000, 0x1800), R(0x500, 0x600), R(7, 7)])
    assert s.ranges == (R(0, 0x1800), R(0x3000, 0x4000))
    assert s.size == 0x2800
    assert len(s) == 2 and bool(s)
    assert RangeSet() == RangeSet([R(5, 5)]) and not RangeSet()
    assert repr(s) == "RangeSet([Range(0x0, 0x1800), Range(0x3000, 0x4000)])"


def test_rangeset_ram_minus_crash():
    ram = RangeSet([Range.from_inclusive(0x1000, 0x9FBFF), Range.from_inclusive(0x100000, 0x3FFDFFFF)])
    crash = Range.from_inclusive(0x2E000000, 0x3DFFFFFF)
    left = ram.minus(crash)
    assert left.ranges == (R(0x1000, 0x9FC00), R(0x100000, 0x2E000000), R(0x3E000000, 0x3FFE0000))
    assert left.intersect(crash) == RangeSet()
    assert left.union([crash]).union(RangeSet()).minus(RangeSet([crash])) == left
    assert ram.intersect(crash) == RangeSet([crash])
    assert ram.contains(0x2E000000) and not left.contains(0x2E000000)
    assert ram.contains(R(0x100000, 0x200000)) and not ram.contains(R(0x9F000, 0x101000))
    assert ram.overlaps(R(0x9F000, 0x101000))


def test_rangeset_is_immutable():
    s = RangeSet([R(0, 1)])
    with pytest.raises(AttributeError):
        s._ranges = ()
    assert hash(s) == hash(RangeSet([R(0, 1)]))


# -- find_hole -------------------------------------------------------------------------------

# The trace's crash region with backup, elfcorehdr, purgatory and setup already placed:
# free is [0x2e000000, 0x3df4dfff] (kexec-tools-x86.md 9.10).
TRACE_FREE = (Range.from_inclusive(0x2E000000, 0x3DF4DFFF),)


@pytest.mark.parametrize("free,size,align,low,high,top_down,expected", [
    (TRACE_FREE, 0x3F98000, 0x200000, 0, ADDR_LIMIT, True, 0x39E00000),   # kernel
    (TRACE_FREE, 0x1000, 0x1000, 0, ADDR_LIMIT, False, 0x2E000000),       # RNG seed
    # initrd below the kernel, top-down, page aligned
    ((Range.from_inclusive(0x2E001000, 0x39DFFFFF),), 0xA07000, 0x1000, 0x1000000, ADDR_LIMIT, True,
     0x393F9000),
    # backup: whole crash region free, 0x9f000 top-down
    ((Range.from_inclusive(0x2E000000, 0x3DFFFFFF),), 0x9F000, 0x1000, 0, ADDR_LIMIT, True, 0x3DF61000),
    # elfcorehdr below it
    ((Range.from_inclusive(0x2E000000, 0x3DF60FFF),), 0x4000, 0x1000, 0, ADDR_LIMIT, True, 0x3DF5D000),
    # bounds
    ((R(0, 0x100000),), 0x1000, 0x1000, 0x3000, 0x9000, True, 0x8000),
    ((R(0, 0x100000),), 0x1000, 0x1000, 0x3001, 0x9000, False, 0x4000),
    # highest piece wins top-down, lowest bottom-up, whatever the order given
    ((R(0x10000, 0x20000), R(0x1000, 0x3000)), 0x1000, 0x1000, 0, ADDR_LIMIT, True, 0x1F000),
    ((R(0x10000, 0x20000), R(0x1000, 0x3000)), 0x1000, 0x1000, 0, ADDR_LIMIT, False, 0x1000),
    # a piece too small after alignment is skipped
    ((R(0x1800, 0x2800), R(0x5000, 0x6000)), 0x1000, 0x1000, 0, ADDR_LIMIT, False, 0x5000),
])
def test_find_hole(free, size, align, low, high, top_down, expected):
    assert find_hole(free, size, align, low, high, top_down) == expected


def test_find_hole_too_big():
    with pytest.raises(NoHoleError, match="no free area of 0x10000000 bytes"):
        find_hole(TRACE_FREE, 0x10000000, 0x1000)


def test_find_hole_outside_bounds():
    with pytest.raises(NoHoleError):
        find_hole((R(0, 0x100000),), 0x1000, 0x1000, low=0x100000)
    with pytest.raises(ValueError):
        find_hole(TRACE_FREE, 0)


def test_rangeset_find_hole():
    s = RangeSet([R(0x1000, 0x2000), R(0x2000, 0x3000)])
    # merged: a 0x2000 block fits across the two inputs
    assert s.find_hole(0x2000) == 0x1000
    # kexec-tools' free list keeps them apart, so it does not
    with pytest.raises(NoHoleError):
        find_hole(free_pieces([R(0x1000, 0x2000), R(0x2000, 0x3000)], []), 0x2000)


def test_free_pieces():
    crash = Range.from_inclusive(0x2E000000, 0x3DFFFFFF)
    used = [R(0x3DF61000, 0x3E000000), R(0x3DF5D000, 0x3DF61000), R(0x2E000000, 0x2E001000)]
    assert free_pieces([crash], used) == (R(0x2E001000, 0x3DF5D000),)
    assert free_pieces([R(0, 0x1000), R(0x1000, 0x2000)], []) == (R(0, 0x1000), R(0x1000, 0x2000))


# -- MemType / MemoryRegion ------------------------------------------------------------------

@pytest.mark.parametrize("kind,e820", [
    (MemType.RAM, 1), (MemType.RESERVED, 2), (MemType.ACPI, 3), (MemType.NVS, 4),
    (MemType.UNCACHED, 2), (MemType.PMEM, 7), (MemType.PRAM, 12),
])
def test_e820_types(kind, e820):
    assert e820_type(kind) == e820


def test_memory_region():
    r = MemoryRegion(Range.from_inclusive(0x1000, 0x9FBFF), MemType.RAM)
    assert str(r) == "00001000-0009fbff : System RAM"
    assert (r.start, r.end, r.size) == (0x1000, 0x9FC00, 0x9EC00)
    regions = [r, MemoryRegion(R(0, 0x1000), MemType.RESERVED)]
    assert regions_of_type(regions, MemType.RESERVED) == (R(0, 0x1000),)


# -- properties ------------------------------------------------------------------------------

addr = st.integers(0, 1 << 40)


@st.composite
def ranges(draw):
    a, b = draw(addr), draw(addr)
    return Range(min(a, b), max(a, b))


@given(ranges(), ranges())
def test_minus_and_intersect_partition(a, b):
    pieces = a.minus(b)
    common = a.intersect(b)
    # the pieces and the intersection are disjoint, inside a, and cover a exactly
    parts = list(pieces) + ([common] if common else [])
    assert sum(p.size for p in parts) == a.size
    for p in parts:
        assert a.contains(p) and not p.empty
    for p in pieces:
        assert not p.overlaps(b)
    assert list(pieces) == sorted(pieces)
    if common:
        assert b.contains(common)


@given(ranges(), ranges())
def test_intersect_symmetric(a, b):
    assert a.intersect(b) == b.intersect(a)
    assert (a.intersect(b) is not None) == a.overlaps(b)


@given(ranges(), st.sampled_from([1, 0x400, 0x1000, 0x200000]))
def test_align_in_out_properties(r, align):
    out = r.align_out(align)
    assert out.contains(r) and out.start % align == 0 and out.end % align == 0
    inside = r.align_in(align)
    if inside is not None:
        assert r.contains(inside) and inside.start % align == 0 and inside.end % align == 0


@given(st.lists(ranges(), max_size=8), st.lists(ranges(), max_size=8))
def test_rangeset_set_algebra(xs, ys):
    a, b = RangeSet(xs), RangeSet(ys)
    for s in (a, b):
        rs = s.ranges
        assert all(x.end < y.start for x, y in zip(rs, rs[1:]))  # sorted, disjoint, merged
    assert a.minus(b).size + a.intersect(b).size == a.size
    assert a.minus(b).intersect(b) == RangeSet()
    assert a.union(b).size == a.size + b.size - a.intersect(b).size
    assert RangeSet(a.minus(b).ranges + a.intersect(b).ranges) == a


@settings(max_examples=300)
@given(st.lists(ranges(), min_size=1, max_size=6), st.integers(1, 1 << 24),
       st.sampled_from([0x1000, 0x10000, 0x200000]), addr, addr, st.booleans())
def test_find_hole_properties(free, size, align, lo, hi, top_down):
    low, high = min(lo, hi), max(lo, hi)
    try:
        base = find_hole(free, size, align, low, high, top_down)
    except NoHoleError:
        # nothing fits: no piece has an aligned base with room
        for p in free:
            start = align_up(max(p.start, low), align)
            assert start + size > min(p.end, high)
        return
    block = Range(base, base + size)
    assert base % align == 0
    assert low <= base and block.end <= high
    assert any(p.contains(block) for p in free)
    # optimal: no aligned candidate is better in the asked direction
    for p in free:
        start = align_up(max(p.start, low), align)
        end = min(p.end, high)
        if start + size <= end:
            best = align_down(end - size, align) if top_down else start
            assert (best <= base) if top_down else (best >= base)


@given(st.lists(ranges(), max_size=5), st.lists(ranges(), max_size=5))
def test_free_pieces_never_overlap_used(ram, used):
    pieces = free_pieces(ram, used)
    for p in pieces:
        assert not p.empty
        assert any(r.contains(p) for r in ram)
        assert not any(p.overlaps(u) for u in used)
    assert RangeSet(pieces) == RangeSet(ram).minus(RangeSet(used))
