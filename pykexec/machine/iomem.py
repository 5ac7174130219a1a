"""/proc/iomem: the resource tree, its consistency checks, and the facts read from it
(crash regions, the System RAM index that note buffers are checked against)."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, NamedTuple, Optional, Sequence, Tuple

from pykexec.core.ranges import Range
from pykexec.machine.reader import MachineError


@dataclass(frozen=True)
class IomemNode:
    """One /proc/iomem line: its half-open range, name, nesting depth and line number."""

    range: Range
    name: str
    depth: int
    line: int
    children: Tuple["IomemNode", ...] = ()

    def walk(self) -> Iterator["IomemNode"]:
        """This node, then its descendants, in file order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class Iomem:
    """The /proc/iomem resource tree; `top` holds the unindented lines in file order."""

    top: Tuple[IomemNode, ...]

    def walk(self) -> Iterator[IomemNode]:
        """Every line at any depth, in file order (what kexec-tools' sscanf loops see)."""
        for node in self.top:
            yield from node.walk()

    def find(self, name: str) -> Tuple[IomemNode, ...]:
        """Every line, at any depth, whose name is exactly `name`."""
        return tuple(n for n in self.walk() if n.name == name)


_IOMEM_LINE = re.compile(r"^( *)([0-9A-Fa-f]+)-([0-9A-Fa-f]+) : (.*)$")


def parse_iomem(text: str, path: str = "/proc/iomem") -> Iomem:
    """Parse /proc/iomem text; malformed lines raise MachineError naming `path:line`.

    Each nesting level is two more spaces of indentation. Ends are inclusive in the
    file and become half-open ranges here. The kernel's resource tree guarantees that
    siblings are sorted and disjoint and that a child lies inside its parent
    (`check_iomem_nesting`); a file that breaks this is damaged and refused.
    """
    stack = []  # [(depth, name, range, line, children-list)]
    top = []

    def close_to(depth):
        while stack and stack[-1][0] >= depth:
            d, name, rng, lineno, kids = stack.pop()
            node = IomemNode(rng, name, d, lineno, tuple(kids))
            (stack[-1][4] if stack else top).append(node)

    nonzero = False
    count = 0
    damage = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _IOMEM_LINE.match(line)
        if not m:
            raise MachineError(f"{path}:{lineno}: not 'start-end : name': {line.strip()!r}",
                               path, lineno)
        indent, first_s, last_s, name = m.groups()
        if len(indent) % 2:
            raise MachineError(f"{path}:{lineno}: odd indentation ({len(indent)} spaces)",
                               path, lineno)
        depth = len(indent) // 2
        close_to(depth)
        parent_depth = stack[-1][0] if stack else -1
        if depth > parent_depth + 1:
            raise MachineError(f"{path}:{lineno}: indented {depth} levels under a line of "
                               f"level {parent_depth}", path, lineno)
        if len(first_s) > 16 or len(last_s) > 16:
            raise MachineError(f"{path}:{lineno}: address above 64 bits", path, lineno)
        first, last = int(first_s, 16), int(last_s, 16)
        if last < first:
            raise MachineError(f"{path}:{lineno}: end {last:#x} is below start {first:#x}",
                               path, lineno)
        if last >= 1 << 64:
            raise MachineError(f"{path}:{lineno}: address above 64 bits", path, lineno)
        nonzero = nonzero or last != 0
        count += 1
        rng = Range.from_inclusive(first, last)
        siblings = stack[-1][4] if stack else top
        if damage is None:
            try:
                check_iomem_nesting(path, lineno, stack[-1][2:4] if stack else None,
                                    (siblings[-1].range, siblings[-1].line)
                                    if siblings else None, rng)
            except MachineError as e:
                damage = e  # reported after the all-zero test (non-root readers)
        stack.append((depth, name, rng, lineno, []))
    close_to(0)
    if count and not nonzero:
        raise MachineError(f"{path}: every address is zero (the kernel shows /proc/iomem "
                           f"addresses only to root)", path)
    if damage is not None:
        raise damage
    return Iomem(tuple(top))


def check_iomem_nesting(path: str, lineno: int, parent, previous, rng: Range) -> None:
    """Refuse an iomem line that breaks the resource tree's order (the kernel guarantees it).

    `parent` is (range, line) of the enclosing line or None; `previous` is (range, line)
    of the sibling just before, or None. Overlapping or unsorted ranges would
    give overlapping core-header PT_LOADs and a wrong backup area, so they are damage.
    """
    if parent is not None and not parent[0].contains(rng):
        raise MachineError(f"{path}:{lineno}: {rng.to_iomem()} is not inside its parent "
                           f"{parent[0].to_iomem()} (line {parent[1]})", path, lineno)
    if previous is not None:
        prev_range, prev_line = previous
        if rng.start < prev_range.end:
            how = "overlaps" if rng.start >= prev_range.start else "is below"
            raise MachineError(f"{path}:{lineno}: {rng.to_iomem()} {how} "
                               f"{prev_range.to_iomem()} (line {prev_line}): ranges must be "
                               f"sorted and disjoint", path, lineno)


def ram_ranges_of(iomem: "Iomem") -> Tuple[Range, ...]:
    """Top-level "System RAM" ranges of a checked iomem tree, sorted (and disjoint)."""
    return tuple(n.range for n in iomem.top if "System RAM" in n.name)


class RamIndex(NamedTuple):
    """Sorted, disjoint RAM ranges with their starts, for O(log n) containment tests."""

    ranges: Tuple[Range, ...]
    starts: Tuple[int, ...]

    @classmethod
    def of(cls, ranges: Sequence[Range]) -> "RamIndex":
        return cls(tuple(ranges), tuple(r.start for r in ranges))

    def holds(self, what: Range) -> bool:
        """True when `what` lies inside one of the ranges."""
        i = bisect.bisect_right(self.starts, what.start) - 1
        return i >= 0 and self.ranges[i].contains(what)



class IomemFacts:
    """Machine facts from /proc/iomem."""

    @cached_property
    def iomem(self) -> Iomem:
        """The /proc/iomem tree (MachineError if missing, malformed or all zero)."""
        return parse_iomem(self.required_text("proc/iomem"), self.path("proc/iomem"))

    @cached_property
    def crash_regions(self) -> Tuple[Range, ...]:
        """Every "Crash kernel" line at any depth (crashkernel= high and ,low), file order.

        The kernel reserves them inside System RAM and shows each as a child of its
        System RAM line; one that is not is damage (a plan there would not boot).
        """
        out = []
        for parent in self.iomem.top:
            for node in parent.walk():
                if node.name != "Crash kernel":
                    continue
                if node is parent or "System RAM" not in parent.name:
                    raise MachineError(
                        f"{self.path('proc/iomem')}:{node.line}: crash region "
                        f"{node.range.to_iomem()} is not inside a System RAM line",
                        self.path("proc/iomem"), node.line)
                out.append(node.range)
        return tuple(out)

    @property
    def crash_region(self) -> Optional[Range]:
        """The highest crash region: the only destination of a crash load, or None.

        kexec-tools takes the last "Crash kernel" line; /proc/iomem is sorted by address,
        so that is the highest one.
        """
        regions = self.crash_regions
        return max(regions, key=lambda r: r.start) if regions else None

    @cached_property
    def ram_index(self) -> RamIndex:
        """The top-level System RAM ranges of /proc/iomem, for containment checks."""
        return RamIndex.of(ram_ranges_of(self.iomem))
