"""A picture of a plan: physical memory, the crashkernel window enlarged, every segment labelled.

`render_svg(plan, machine=None)` returns a self-contained SVG document (no scripts, no
external fonts, images or style sheets) that a browser shows as:

- left, "physical memory": the whole address space as a vertical bar (high addresses at
  the top), coloured by the firmware map (/proc/iomem of the machine when given, else what
  the plan itself says: the capture e820 and the ELF core header). Ranges are to scale
  where that helps; a range too big for the picture is shortened and drawn with a broken
  axis (a zigzag), and a range too small to see is given a minimum height. Beside it, the
  ranges the ELF core header describes (what /proc/vmcore will hold) as bands, with its
  PT_NOTEs as ticks;
- middle, the crashkernel window enlarged: each segment a box (kind and size inside,
  address range, buffer size and source beside it), its loaded bytes solid and the
  zero-filled rest (memsz beyond bufsz) pale; free space between them shortened;
- bottom, the first 1 MiB enlarged, with an arrow from the low RAM that purgatory backs
  up to its copy in the window;
- bottom left (below everything when the first MiB is drawn), for a plan that passes a
  device tree, the properties the loader changed in it, beside its segment's colour.

`write_svg(plan, machine, path)` writes the same text to a file.

(Longer than 400 lines: one drawing, whose bands, labels and legend are placed against
each other.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape, quoteattr

from pykexec.core.plan import Plan
from pykexec.views.show import describe_plan, hex_range, human_size

WIDTH = 1280
TOP = 126                 # y of the top of the bars
BOTTOM = 850             # y of the bottom of the bars
LOW_Y = 930              # the first-MiB strip
LOW_H = 46
HEIGHT = 1080
MIB = 1 << 20
LOW_END = MIB
MAX_BLOCKS = 24

FONT = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"
MONO = "DejaVu Sans Mono, Liberation Mono, Consolas, monospace"

# memory map categories: (fill, label)
CATEGORY = {
    "ram": ("#cfe8c9", "System RAM"),
    "reserved": ("#c9c9c9", "reserved"),
    "acpi": ("#f5d9a8", "ACPI tables"),
    "nvs": ("#f2b37e", "ACPI NVS"),
    "pmem": ("#cdb8e8", "persistent memory"),
    "unusable": ("#eaa0a0", "unusable"),
    "device": ("#b9cfe3", "device / MMIO"),
    "hole": ("#ffffff", "no memory (hole)"),
    "crash": ("#ffe9a8", "crashkernel window"),
    "low": ("#e6f2e3", "first 1 MiB"),
}
SEGMENT_COLOUR = {
    "kernel": "#3b6ea8", "elf_load": "#3b6ea8", "initrd": "#4d9a44", "boot_params": "#e0801f",
    "param_block": "#e0801f", "purgatory": "#c8434a", "elfcorehdr": "#8c5fa8",
    "backup": "#8a6248", "setup_data": "#2c9c96", "dtb": "#b5893a", "unknown": "#8d8680",
}
DT_LINE = 15              # height of one device tree edit line
DT_MAX_LINES = 12         # edits listed; the rest counted


# ------------------------------------------------------------------------------------------
# Scale: heights for a list of sizes, to scale where possible

def allocate(sizes: Sequence[int], mins: Sequence[float], total: float,
             thresholds: Optional[Sequence[float]] = None) -> Tuple[List[float], List[bool]]:
    """Pixel lengths for `sizes` summing to `total`.

    Up to its threshold a size is drawn to one common linear scale; beyond it only the
    logarithm of the excess counts (T * (1 + log2(size / T))), and the size is marked
    broken: drawn with a broken axis. Every length is at least its `mins` (sizes too small
    to see are enlarged). Bigger sizes with the same threshold are never drawn shorter.
    The default threshold is an eighth of the largest size."""
    n = len(sizes)
    if n == 0:
        return [], []
    if thresholds is None:
        thresholds = [max(max(sizes) / 8, 1)] * n
    weights = []
    for size, t in zip(sizes, thresholds):
        t = max(t, 1)
        weights.append(size if size <= t else t * (1 + math.log2(size / t)))
    min_total = sum(mins)
    if min_total >= total:
        f = total / min_total
        return [m * f for m in mins], [False] * n

    def fill(k):
        return sum(max(m, k * w) for w, m in zip(weights, mins))

    lo, hi = 0.0, 1.0
    while fill(hi) < total and hi < 1e300:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if fill(mid) < total:
            lo = mid
        else:
            hi = mid
    lengths = [max(m, hi * w) for w, m in zip(weights, mins)]
    scale = total / sum(lengths)
    return ([x * scale for x in lengths],
            [size > max(t, 1) * 1.0001 for size, t in zip(sizes, thresholds)])


# ------------------------------------------------------------------------------------------
# The memory map as blocks

@dataclass
class Block:
    start: int
    end: int
    cat: str
    label: str
    parts: Dict[str, int] = field(default_factory=dict)   # cat -> bytes merged in
    protected: bool = False
    y0: float = 0.0     # top (high address)
    y1: float = 0.0     # bottom (low address)
    broken: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start


def _category(name: str) -> str:
    low = name.lower()
    if name == "System RAM":
        return "ram"
    if low == "reserved":
        return "reserved"
    if name == "ACPI Tables":
        return "acpi"
    if name == "ACPI Non-volatile Storage":
        return "nvs"
    if low.startswith("persistent memory"):
        return "pmem"
    if low.startswith("unusable"):
        return "unusable"
    return "device"


# by the names the plan's decoder gives its memory-map types (views.show's "type_name")
_MEMMAP_CAT = {"RAM": "ram", "reserved": "reserved", "ACPI": "acpi", "NVS": "nvs",
               "unusable": "unusable", "PMEM": "pmem", "PRAM": "pmem"}


def _typed_ranges(facts: Dict[str, Any], machine) -> List[Tuple[int, int, str, str]]:
    """(start, end, category, name) of the memory map, from the machine or from the plan."""
    out = []
    if machine is not None:
        try:
            for node in machine.iomem.top:
                out.append((node.range.start, node.range.end, _category(node.name), node.name))
        except Exception:  # noqa: BLE001 - fall back to what the plan says
            out = []
    if out:
        return out
    windows = facts["crash_windows"]
    for e in facts["e820"]:
        if e["in_crash_window"]:
            continue
        cat = _MEMMAP_CAT.get(e["type_name"], "reserved")
        out.append((e["addr"], e["end"], cat, e["type_name"]))
    core = facts["elf_core_header"]
    if core is not None:
        for p in core["program_headers"]:
            if p["type"] == "LOAD" and p["stands_for"] in ("ram", "ram_backup"):
                out.append((p["paddr"], p["paddr"] + p["memsz"], "ram", "System RAM"))
    for w in windows:
        out.append((w["start"], w["end"], "ram", "System RAM"))
    return out


def memory_blocks(facts: Dict[str, Any], machine=None, fold_low: bool = True) -> List[Block]:
    """The address space from 0 to the top of the map as non-overlapping blocks."""
    ranges = _typed_ranges(facts, machine)
    windows = [(w["start"], w["end"]) for w in facts["crash_windows"]]
    seg_top = max((s["end"] for s in facts["segments"] if s["mem"] is not None), default=0)
    if not ranges:
        if not seg_top:
            return []
        ranges = [(0, seg_top, "hole", "not described by the plan")]
    top = max(max(e for _s, e, _c, _n in ranges), seg_top)
    # Paint in order of priority on a list of boundaries: later wins.
    priority = {"hole": 0, "device": 1, "ram": 2, "pmem": 2, "reserved": 3, "unusable": 3,
                "acpi": 4, "nvs": 4}
    points = sorted({0, top, *[s for s, *_ in ranges], *[e for _s, e, *_ in ranges],
                     *[a for w in windows for a in w], LOW_END if top > LOW_END else top})
    points = [p for p in points if 0 <= p <= top]
    blocks: List[Block] = []
    for a, b in zip(points, points[1:]):
        best, best_name, best_p = "hole", "", -1
        for s, e, cat, name in ranges:
            if s <= a and b <= e and priority.get(cat, 1) > best_p:
                best, best_name, best_p = cat, name, priority.get(cat, 1)
        if any(ws <= a and b <= we for ws, we in windows):
            best, best_name = "crash", "Crash kernel"
        blocks.append(Block(a, b, best, best_name or CATEGORY[best][1], {best: b - a}))
    # The first MiB becomes one block (shown enlarged at the bottom).
    if not fold_low:
        for b in blocks:
            b.protected = b.start < LOW_END
    elif top > LOW_END:
        low = [b for b in blocks if b.end <= LOW_END]
        rest = [b for b in blocks if b.end > LOW_END]
        parts: Dict[str, int] = {}
        for b in low:
            parts[b.cat] = parts.get(b.cat, 0) + b.size
        blocks = [Block(0, LOW_END, "low", "first 1 MiB", parts, protected=True)] + rest
    # Merge neighbours of one category.
    merged: List[Block] = []
    for b in blocks:
        same_window = b.cat != "crash" or any(ws <= merged[-1].start and b.end <= we
                                              for ws, we in windows) if merged else False
        if merged and merged[-1].cat == b.cat and merged[-1].label == b.label and same_window \
                and not b.protected and not merged[-1].protected:
            merged[-1].end = b.end
            merged[-1].parts[b.cat] = merged[-1].parts.get(b.cat, 0) + b.size
        else:
            merged.append(b)
    for b in merged:
        if b.cat == "crash":
            b.protected = True
    # Too many to draw: fold the smallest into a neighbour until few enough.
    while len(merged) > MAX_BLOCKS:
        candidates = [i for i, b in enumerate(merged) if not b.protected]
        if not candidates:
            break
        i = min(candidates, key=lambda i: merged[i].size)
        nbrs = [j for j in (i - 1, i + 1) if 0 <= j < len(merged) and not merged[j].protected]
        if not nbrs:
            merged[i].protected = True
            continue
        j = max(nbrs, key=lambda j: (merged[j].cat == merged[i].cat, merged[j].size))
        a, b = (merged[j], merged[i]) if j < i else (merged[i], merged[j])
        keep = merged[j]
        folded = merged[i]
        for cat, n in folded.parts.items():
            keep.parts[cat] = keep.parts.get(cat, 0) + n
        keep.start, keep.end = a.start, b.end
        del merged[i]
    # Folding can leave neighbours of one kind: join them.
    joined: List[Block] = []
    for b in merged:
        p = joined[-1] if joined else None
        if p is not None and p.cat == b.cat and not p.protected and not b.protected:
            p.end = b.end
            for cat, n in b.parts.items():
                p.parts[cat] = p.parts.get(cat, 0) + n
        else:
            joined.append(b)
    merged = joined
    return merged


def _block_caption(b: Block) -> str:
    if b.cat == "crash":
        return f"crashkernel {human_size(b.size)}"
    if b.cat == "low":
        return "first 1 MiB (below)"
    main = CATEGORY.get(b.cat, ("", b.cat))[1] if b.cat != "device" else b.label
    others = {c: n for c, n in b.parts.items() if c != b.cat and n}
    text = f"{main} {human_size(b.size)}"
    if others:
        text += " (with " + ", ".join(f"{human_size(n)} {CATEGORY.get(c, ('', c))[1]}"
                                      for c, n in sorted(others.items(), key=lambda kv: -kv[1])[:2]) + ")"
    return text


# ------------------------------------------------------------------------------------------
# SVG helpers

class _Svg:
    def __init__(self):
        self.parts: List[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def rect(self, x, y, w, h, fill, stroke="none", sw=1.0, extra="", title=None):
        body = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
                f'fill="{fill}" stroke="{stroke}" stroke-width="{sw}" {extra}')
        if title:
            self.add(body + f"><title>{escape(title)}</title></rect>")
        else:
            self.add(body + "/>")

    def text(self, x, y, s, size=12, anchor="start", weight="normal", fill="#222",
             family=FONT, extra=""):
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-family={quoteattr(family)} '
                 f'font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
                 f'fill="{fill}" {extra}>{escape(s)}</text>')

    def line(self, x1, y1, x2, y2, stroke="#444", sw=1.0, extra=""):
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                 f'stroke="{stroke}" stroke-width="{sw}" {extra}/>')


def _zigzag(svg: _Svg, x0: float, x1: float, y: float) -> None:
    """A broken-axis mark across [x0, x1] at height y."""
    pts = []
    steps = max(4, int((x1 - x0) / 8))
    for i in range(steps + 1):
        x = x0 + (x1 - x0) * i / steps
        pts.append(f"{x:.1f},{y + (-3 if i % 2 else 3):.1f}")
    path = " ".join(pts)
    svg.add(f'<polyline points="{path}" fill="none" stroke="#ffffff" stroke-width="7"/>')
    svg.add(f'<polyline points="{" ".join(p for p in pts)}" fill="none" stroke="#555" '
            f'stroke-width="1" transform="translate(0,-3.5)"/>')
    svg.add(f'<polyline points="{path}" fill="none" stroke="#555" stroke-width="1" '
            f'transform="translate(0,3.5)"/>')


def _lay_out(blocks: List[Block], top: float, bottom: float, mins, thresholds) -> None:
    heights, broken = allocate([b.size for b in blocks], mins, bottom - top, thresholds)
    y = bottom
    for b, h, br in zip(blocks, heights, broken):
        b.y1, b.y0, b.broken = y, y - h, br
        y -= h


def _y_of(blocks: List[Block], addr: int) -> float:
    """y of a physical address through the piecewise scale (clamped to the bar)."""
    for b in blocks:
        if b.start <= addr <= b.end:
            f = (addr - b.start) / b.size if b.size else 0
            return b.y1 - f * (b.y1 - b.y0)
    return blocks[-1].y0 if blocks and addr > blocks[-1].end else (blocks[0].y1 if blocks else 0)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


# ------------------------------------------------------------------------------------------
# The picture

def render_svg(plan: Plan, machine=None) -> str:
    facts = describe_plan(plan, machine)
    svg = _Svg()
    svg.add(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family={quoteattr(FONT)}>')
    svg.add(f"<title>pykexec plan: {escape(plan.syscall)} for {escape(plan.arch)}</title>")
    svg.add('<defs>'
            '<pattern id="zero" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff" '
            'fill-opacity="0.55"/><line x1="0" y1="0" x2="0" y2="6" stroke="#ffffff" '
            'stroke-width="2"/></pattern>'
            '<pattern id="crash" width="8" height="8" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="8" height="8" fill="#ffe9a8"/>'
            '<line x1="0" y1="0" x2="0" y2="8" stroke="#f3c14b" stroke-width="3"/></pattern>'
            '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
            'markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            'fill="#8a6248"/></marker>'
            '</defs>')
    background = len(svg.parts)
    svg.rect(0, 0, WIDTH, HEIGHT, "#fbfbf8")
    _title(svg, plan, facts)
    placed = [s for s in facts["segments"] if s["mem"] is not None]
    if not placed:
        svg.text(40, 140, "kexec_file_load: the kernel chooses where the segments go; "
                 "no physical addresses to draw.", size=15)
        _segment_list(svg, facts, 40, 180)
        svg.add("</svg>")
        return "\n".join(svg.parts) + "\n"
    blocks = memory_blocks(facts, machine)
    if not blocks:
        svg.text(40, 140, "Nothing to draw: the plan has no segments.", size=15)
        svg.add("</svg>")
        return "\n".join(svg.parts) + "\n"
    mins = [34 if b.cat == "crash" else (22 if b.cat == "low" else 3) for b in blocks]
    largest = max(b.size for b in blocks)
    crash = max((b.size for b in blocks if b.cat == "crash"), default=0)
    to_scale = max(crash, largest / 16)
    thresholds = [to_scale / 8 if b.cat in ("hole", "device", "pmem") else to_scale
                  for b in blocks]
    _lay_out(blocks, TOP, BOTTOM, mins, thresholds)
    _overview(svg, blocks, facts)
    window = _main_window(facts)
    seg_boxes = {}
    if window is not None:
        seg_boxes = _window_panel(svg, plan, facts, blocks, window)
    else:
        _segment_list(svg, facts, 600, TOP + 20)
    _low_strip(svg, facts, blocks, seg_boxes, machine)
    _legend(svg, facts)
    if facts.get("device_tree") is not None:
        has_low = any(b.cat == "low" for b in blocks)
        bottom = _device_tree_panel(svg, facts["device_tree"], facts["segments"],
                                    HEIGHT + 10 if has_low else LOW_Y - 16)
        if bottom > HEIGHT:
            # grow the picture (its opening tag and background are the first parts)
            height = math.ceil(bottom + 20)
            svg.parts[0] = svg.parts[0].replace(f'height="{HEIGHT}"', f'height="{height}"') \
                .replace(f'viewBox="0 0 {WIDTH} {HEIGHT}"', f'viewBox="0 0 {WIDTH} {height}"')
            svg.parts[background] = svg.parts[background].replace(
                f'height="{HEIGHT:.1f}"', f'height="{height:.1f}"')
    svg.add("</svg>")
    return "\n".join(svg.parts) + "\n"


def _device_tree_panel(svg: _Svg, dt: Dict[str, Any], segments, y: float) -> float:
    """The device tree edits from `y` down, one line each; returns the bottom."""
    from pykexec.views.show import device_tree_heading, device_tree_lines
    x = 40
    # the segment's colour beside the heading, as its box in the window has it
    if dt["segment"] is not None:
        kind = segments[dt["segment"]]["kind"]
        svg.rect(x - 18, y - 11, 12, 12, SEGMENT_COLOUR.get(kind, "#888"), "#ffffff", 1,
                 title=f"segment #{dt['segment']} {kind}")
    svg.text(x, y, device_tree_heading(dt), size=13, weight="bold")
    lines = device_tree_lines(dt)
    shown = lines[:DT_MAX_LINES]
    if len(lines) > DT_MAX_LINES:
        shown.append(f"... and {len(lines) - DT_MAX_LINES} more (pykexec --json lists them)")
    for line in shown:
        y += DT_LINE
        svg.text(x + 8, y, line if len(line) <= 88 else line[:87] + "…", size=11, family=MONO,
                 fill="#333", extra='xml:space="preserve"')
    return y


def write_svg(plan: Plan, machine, path: str) -> None:
    """Write `render_svg(plan, machine)` to `path`."""
    text = render_svg(plan, machine)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:     # a failed write or close names no file: name it
        if err.filename is None:
            raise OSError(err.errno, err.strerror, path) from None
        raise


def _title(svg: _Svg, plan: Plan, facts) -> None:
    what = "crash (kdump) load" if "KEXEC_ON_CRASH" in facts["flag_names"] \
        or "KEXEC_FILE_ON_CRASH" in facts["flag_names"] else "load"
    svg.text(24, 34, f"Where the {what} puts every byte", size=22, weight="bold")
    line = (f"{plan.syscall} for {plan.arch}, flags {plan.flags:#x} "
            f"({' | '.join(facts['flag_names'])}), {len(plan.segments)} segments, "
            f"{human_size(facts['total_memsz'])} in memory")
    if plan.entry is not None:
        line += f", entry {plan.entry:#x}"
    svg.text(24, 56, line, size=13, fill="#444")
    core = facts["elf_core_header"]
    if core is not None:
        loads = sum(1 for p in core["program_headers"] if p["type"] == "LOAD")
        notes = sum(1 for p in core["program_headers"] if p["type"] == "NOTE")
        svg.text(24, 74, f"The ELF core header describes {human_size(core['dumped_bytes'])} of "
                 f"RAM in {loads} PT_LOADs and {notes} PT_NOTEs: that is what /proc/vmcore "
                 f"will show after the panic.", size=13, fill="#444")


def _overview(svg: _Svg, blocks: List[Block], facts) -> None:
    x0, w = 120, 56
    bx0, bw = x0 + w + 5, 14          # the ELF core header band column
    svg.text(x0 + w / 2, TOP - 8, "physical memory", size=13, anchor="middle", weight="bold")
    svg.text(bx0 + bw / 2, BOTTOM + 16, "vmcore", size=10, anchor="middle", fill="#555")
    for b in blocks:
        fill = "url(#crash)" if b.cat == "crash" else CATEGORY.get(b.cat, ("#ddd",))[0]
        stroke = "#c58a00" if b.cat == "crash" else "#888"
        svg.rect(x0, b.y0, w, b.y1 - b.y0, fill, stroke, 0.6,
                 title=f"{hex_range(b.start, b.end)} {_block_caption(b)}")
    svg.rect(x0, TOP, w, BOTTOM - TOP, "none", "#555", 1)
    svg.rect(bx0, TOP, bw, BOTTOM - TOP, "#f3f3f0", "#999", 0.6)
    # ELF core header bands.
    core = facts["elf_core_header"]
    if core is not None:
        for p in core["program_headers"]:
            if p["type"] != "LOAD" or p["stands_for"] == "kernel_text":
                continue
            ya, yb = _y_of(blocks, p["paddr"] + p["memsz"]), _y_of(blocks, p["paddr"])
            colour = "#8a6248" if p["stands_for"] == "ram_backup" else "#4f9a5a"
            svg.rect(bx0 + 2, ya, bw - 4, max(yb - ya, 1.2), colour,
                     title=f"PT_LOAD {p['what']}")
        for p in core["program_headers"]:
            if p["type"] == "LOAD" and p["stands_for"] == "kernel_text":
                ya, yb = _y_of(blocks, p["paddr"] + p["memsz"]), _y_of(blocks, p["paddr"])
                svg.rect(bx0 + 4, ya, bw - 8, max(yb - ya, 2), "#23415f",
                         title=f"PT_LOAD {p['what']}")
            if p["type"] == "NOTE":
                y = _y_of(blocks, p["paddr"])
                svg.add(f'<path d="M{bx0 + bw:.1f},{y:.1f} l6,-3 v6 z" fill="#c8434a">'
                        f'<title>PT_NOTE {escape(p["what"])} at {p["paddr"]:#x}</title></path>')
    # Segments at their true place inside the crash window(s).
    for seg in facts["segments"]:
        if seg["mem"] is None:
            continue
        ya, yb = _y_of(blocks, seg["end"]), _y_of(blocks, seg["mem"])
        svg.rect(x0 + 6, ya, w - 12, max(yb - ya, 1.5), SEGMENT_COLOUR.get(seg["kind"], "#888"),
                 title=f"segment #{seg['index']} {seg['kind']} {hex_range(seg['mem'], seg['end'])}")
    # Broken axes.
    for b in blocks:
        if b.broken:
            _zigzag(svg, x0 - 4, bx0 + bw + 4, (b.y0 + b.y1) / 2)
    # Address ticks on the left (from the top down), captions on the right.
    ticks = [(blocks[-1].end, blocks[-1].y0)] + [(b.start, b.y1) for b in reversed(blocks)]
    last_y = -1e9
    for i, (addr, y) in enumerate(ticks):
        svg.line(x0 - 5, y, x0, y, "#555")
        if y - last_y >= 12 and (i == len(ticks) - 1 or ticks[-1][1] - y >= 12):
            svg.text(x0 - 8, y + 4, f"{addr:#x}", size=10, anchor="end", family=MONO,
                     fill="#333")
            last_y = y
    last = 1e9
    for b in blocks:
        h = b.y1 - b.y0
        y = (b.y0 + b.y1) / 2 + 4
        if (h >= 11 or b.cat == "crash") and last - y >= 12:
            weight = "bold" if b.cat in ("crash", "low") else "normal"
            caption = _block_caption(b)
            caption = caption if len(caption) <= 52 else caption[:51] + "…"
            svg.text(bx0 + bw + 12, y, caption, size=11, weight=weight,
                     fill="#8a5a00" if b.cat == "crash" else "#333")
            last = y


def _main_window(facts):
    windows = [w for w in facts["crash_windows"] if w["segments"]]
    if not windows:
        return None
    return max(windows, key=lambda w: len(w["segments"]))


def _window_panel(svg: _Svg, plan: Plan, facts, blocks, window) -> Dict[int, Tuple[float, float]]:
    px0, pw = 600, 230
    lx = px0 + pw + 14             # labels
    start, end = window["start"], window["end"]
    # Items: segments in the window and the free gaps between them.
    segs = sorted((facts["segments"][i] for i in window["segments"]), key=lambda s: s["mem"])
    items = []   # (start, end, segment or None)
    cur = start
    for s in segs:
        if s["mem"] > cur:
            items.append((cur, s["mem"], None))
        items.append((s["mem"], s["end"], s))
        cur = max(cur, s["end"])
    if cur < end:
        items.append((cur, end, None))
    mins = [30 if s is not None else 14 for _a, _b, s in items]
    top, bottom = TOP + 8, BOTTOM - 8
    biggest = max((b - a for a, b, s in items if s is not None), default=1)
    heights, broken = allocate([b - a for a, b, _s in items], mins, bottom - top,
                               [biggest if s is not None else biggest / 4 for _a, _b, s in items])
    # Zoom lines from the window in the overview.
    wblock = next((b for b in blocks if b.cat == "crash" and b.start <= start < b.end), None)
    if wblock is not None:
        zx = 120 + 56 + 5 + 14
        svg.add(f'<polygon points="{zx:.1f},{wblock.y0:.1f} {px0:.1f},{top:.1f} '
                f'{px0:.1f},{bottom:.1f} {zx:.1f},{wblock.y1:.1f}" fill="#ffd966" '
                f'fill-opacity="0.22" stroke="#d9a300" stroke-width="0.8" '
                f'stroke-dasharray="4 3"/>')
    svg.text(px0 + pw / 2, TOP - 24, "crashkernel window, enlarged", size=13, anchor="middle",
             weight="bold")
    svg.text(px0 + pw / 2, TOP - 8, f"{hex_range(start, end)} ({human_size(end - start)})",
             size=11, anchor="middle", family=MONO, fill="#8a5a00")
    svg.rect(px0 - 3, top - 3, pw + 6, bottom - top + 6, "url(#crash)", "#c58a00", 1.2)
    boxes: Dict[int, Tuple[float, float]] = {}
    y = bottom
    placed: List[Tuple[float, float, float, Dict[str, Any], str]] = []
    for (a, b, s), h, br in zip(items, heights, broken):
        y1, y0 = y, y - h
        y = y0
        if s is None:
            svg.rect(px0, y0, pw, h, "#fffdf4", "#d8c48a", 0.5,
                     title=f"free {hex_range(a, b)} {human_size(b - a)}")
            if h >= 14:
                svg.text(px0 + pw / 2, (y0 + y1) / 2 + 4, f"free {human_size(b - a)}", size=10,
                         anchor="middle", fill="#8a7a4a")
            if br:
                _zigzag(svg, px0 - 6, px0 + pw + 6, (y0 + y1) / 2 - (7 if h >= 14 else 0))
            continue
        colour = SEGMENT_COLOUR.get(s["kind"], "#888")
        tip = (f"segment #{s['index']} {s['kind']} {hex_range(a, b)} memsz {s['memsz']:#x} "
               f"bufsz {s['bufsz']:#x} sha256 {s['sha256']} source {s['source']}")
        svg.rect(px0, y0, pw, h, colour, "#ffffff", 1, title=tip)
        if s["bufsz"] < s["memsz"]:
            filled = h * s["bufsz"] / s["memsz"] if s["memsz"] else 0
            svg.rect(px0 + 1, y0 + 0.5, pw - 2, max(h - filled - 1, 0), "url(#zero)")
        boxes[s["index"]] = (y0, y1)
        if br:
            _zigzag(svg, px0 - 6, px0 + pw + 6, y0 + h / 4)
        halo = f'stroke="{colour}" stroke-width="3" paint-order="stroke"'
        svg.text(px0 + 10, (y0 + y1) / 2 + 5, f"#{s['index']} {s['kind']}", size=13,
                 weight="bold", fill="#ffffff", extra=halo)
        svg.text(px0 + pw - 10, (y0 + y1) / 2 + 5, human_size(s["memsz"]), size=12,
                 anchor="end", fill="#ffffff", extra=halo)
        placed.append(((y0 + y1) / 2, y0, y1, s, colour))
    # Labels beside the boxes: at the box when there is room, else moved apart (with a
    # leader line), kept inside the panel's height.
    gap = 40
    wanted = [p[0] for p in placed]          # bottom to top (y decreasing)
    ys = []
    for w in wanted:
        ys.append(min(w, ys[-1] - gap) if ys else w)
    if ys and ys[-1] < top:
        ys[-1] = top
        for i in range(len(ys) - 2, -1, -1):
            ys[i] = max(ys[i], ys[i + 1] + gap)
    for (cy, y0, y1, s, colour), ly in zip(placed, ys):
        a, b = s["mem"], s["end"]
        svg.line(px0 + pw, cy, lx - 4, ly - 4, colour, 1)
        svg.text(lx, ly, f"{hex_range(a, b)}", size=12, family=MONO, weight="bold",
                 fill="#222")
        detail = f"memsz {s['memsz']:#x}, bufsz {s['bufsz']:#x}"
        if s["bufsz"] < s["memsz"]:
            detail += f" (+{human_size(s['memsz'] - s['bufsz'])} zero-filled)"
        svg.text(lx, ly + 13, detail, size=10, fill="#444")
        source = s["source"] if len(s["source"]) <= 70 else s["source"][:69] + "…"
        svg.text(lx, ly + 25, source, size=10, fill="#666", extra='font-style="italic"')
    # Top and bottom address of the window.
    svg.text(px0 - 8, bottom + 4, f"{start:#x}", size=10, anchor="end", family=MONO)
    svg.text(px0 - 8, top + 4, f"{end:#x}", size=10, anchor="end", family=MONO)
    return boxes


def _low_strip(svg: _Svg, facts, blocks: List[Block], seg_boxes, machine) -> None:
    """The first MiB, to scale with a minimum width, and the backup arrow."""
    low = next((b for b in blocks if b.cat == "low"), None)
    if low is None:
        return
    x0, x1 = 120, 560
    y0 = LOW_Y
    # Pieces of the first MiB from the memory map.
    pieces = []
    for s, e, cat, name in _low_pieces(facts, machine):
        pieces.append((s, e, cat, name))
    widths, _ = allocate([e - s for s, e, _c, _n in pieces], [26] * len(pieces), x1 - x0,
                         [LOW_END] * len(pieces))
    svg.text(x0, y0 - 10, "first 1 MiB, enlarged", size=13, weight="bold")
    # Zoom lines from the overview's low block.
    svg.add(f'<polygon points="{120:.1f},{low.y1:.1f} {176:.1f},{low.y1:.1f} {x1:.1f},{y0:.1f} '
            f'{x0:.1f},{y0:.1f}" fill="#9cc79a" fill-opacity="0.18" stroke="#7aa97a" '
            f'stroke-width="0.8" stroke-dasharray="4 3"/>')
    x = x0
    ram_x = None
    last_tick = -1e9
    for (s, e, cat, name), wd in zip(pieces, widths):
        svg.rect(x, y0, wd, LOW_H, CATEGORY.get(cat, ("#ddd",))[0], "#888", 0.6,
                 title=f"{hex_range(s, e)} {name} {human_size(e - s)}")
        if wd >= 60:
            svg.text(x + wd / 2, y0 + 20, _short(name, int(wd / 7)), size=11, anchor="middle")
            svg.text(x + wd / 2, y0 + 36, human_size(e - s), size=10, anchor="middle",
                     fill="#555")
        svg.line(x, y0 + LOW_H, x, y0 + LOW_H + 5, "#555")
        if x - last_tick >= 52 and x1 - x >= 52:
            svg.text(x, y0 + LOW_H + 17, f"{s:#x}", size=9, anchor="middle", family=MONO)
            last_tick = x
        if cat == "ram" and ram_x is None:
            ram_x = x + wd / 2
        x += wd
    svg.line(x1, y0 + LOW_H, x1, y0 + LOW_H + 5, "#555")
    svg.text(x1 + 4, y0 + LOW_H + 17, f"{LOW_END:#x}", size=9, anchor="middle", family=MONO)
    # The backup copy: arrow from the low RAM to its copy.
    core = facts["elf_core_header"]
    backup = None
    if core is not None:
        backup = next((p for p in core["program_headers"] if p["stands_for"] == "ram_backup"), None)
    if backup is None or ram_x is None:
        return
    target = next((s for s in facts["segments"] if s["mem"] == backup["backup_copy"]), None)
    if target is None or target["index"] not in seg_boxes:
        return
    ty0, ty1 = seg_boxes[target["index"]]
    ty = (ty0 + ty1) / 2
    tx = 600 - 4
    sx, sy = ram_x, y0 - 2
    svg.add(f'<path d="M{sx:.1f},{sy:.1f} C{sx:.1f},{sy - 160:.1f} {tx - 200:.1f},{ty:.1f} '
            f'{tx:.1f},{ty:.1f}" fill="none" stroke="#8a6248" stroke-width="2.4" '
            f'marker-end="url(#arrow)"/>')
    mx, my = sx + 40, sy - 40
    svg.add(f'<rect x="{mx - 4:.1f}" y="{my - 13:.1f}" width="226" height="34" rx="3" '
            f'fill="#ffffff" fill-opacity="0.85"/>')
    svg.text(mx, my, f"backup: purgatory copies {hex_range(backup['paddr'], backup['paddr'] + backup['memsz'])}",
             size=11, fill="#5b3b28", weight="bold")
    svg.text(mx, my + 14, f"to {backup['backup_copy']:#x}; vmcore reads it there",
             size=11, fill="#5b3b28")


def _low_pieces(facts, machine) -> List[Tuple[int, int, str, str]]:
    """The first MiB as contiguous (start, end, category, name) pieces."""
    pieces = [(b.start, min(b.end, LOW_END), b.cat, b.label)
              for b in memory_blocks(facts, machine, fold_low=False) if b.start < LOW_END]
    return pieces or [(0, LOW_END, "ram", "System RAM")]


def _segment_list(svg: _Svg, facts, x, y) -> None:
    for s in facts["segments"]:
        where = f"{s['mem']:#x}" if s["mem"] is not None else "(file descriptor)"
        svg.text(x, y, f"#{s['index']} {s['kind']} {where} {human_size(s['memsz'])} "
                 f"{_short(s['source'], 60)}", size=12, family=MONO)
        y += 18


def _legend(svg: _Svg, facts) -> None:
    x, y = 700, LOW_Y - 16
    svg.text(x, y, "legend", size=12, weight="bold")
    y += 8
    items = [(CATEGORY[c][0], CATEGORY[c][1]) for c in
             ("ram", "reserved", "acpi", "nvs", "pmem", "device", "hole")]
    items.append(("url(#crash)", "crashkernel window"))
    items.append(("#4f9a5a", "RAM in the ELF core header (PT_LOAD)"))
    items.append(("#8a6248", "PT_LOAD read from the backup copy"))
    items.append(("#23415f", "kernel text PT_LOAD"))
    col = 0
    for i, (fill, name) in enumerate(items):
        cx = x + (i % 2) * 250
        cy = y + (i // 2) * 17
        svg.rect(cx, cy, 14, 11, fill, "#888", 0.6)
        svg.text(cx + 20, cy + 10, name, size=10, fill="#333")
        col = cy
    cy = col + 17
    svg.add(f'<path d="M{x:.1f},{cy + 5:.1f} l8,-4 v8 z" fill="#c8434a"/>')
    svg.text(x + 20, cy + 9, "PT_NOTE (CPU registers, vmcoreinfo)", size=10, fill="#333")
    svg.rect(x + 250, cy, 14, 11, "#3b6ea8", "#888", 0.6)
    svg.rect(x + 250, cy, 14, 6, "url(#zero)")
    svg.text(x + 270, cy + 9, "pale: zero-filled (memsz > bufsz)", size=10, fill="#333")
