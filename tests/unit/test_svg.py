"""The SVG picture: well-formed, self-contained, every segment labelled; and what a
browser makes of it (headless Chromium screenshot, not blank)."""

import os
import re
import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zlib

import pytest

from pykexec.core.plan import Plan, Segment
from pykexec.views.svg import allocate, render_svg, write_svg
from tests.conftest import require
from tests.unit._plans import BACKUP_AT, CRASH, file_load_plan, labelled_plan

SVG_NS = "{http://www.w3.org/2000/svg}"


def texts(svg: str):
    root = ET.fromstring(svg)
    return [el.text or "" for el in root.iter(SVG_NS + "text")]


def test_svg_is_well_formed_and_self_contained():
    svg = render_svg(labelled_plan())
    root = ET.fromstring(svg)
    assert root.tag == SVG_NS + "svg"
    assert not list(root.iter(SVG_NS + "script"))
    assert not list(root.iter(SVG_NS + "image")) and not list(root.iter(SVG_NS + "foreignObject"))
    for attr in re.findall(r'(?:href|src)\s*=\s*"([^"]*)"', svg):
        assert attr.startswith("#"), attr
    assert "@import" not in svg and "url(http" not in svg
    # Every url(#id) points inside the document.
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    for ref in re.findall(r"url\(#([^)]+)\)", svg):
        assert ref in ids


def test_every_segment_has_a_labelled_box():
    plan = labelled_plan()
    labels = texts(render_svg(plan))
    joined = "\n".join(labels)
    for i, seg in enumerate(plan.segments):
        assert f"#{i} {seg.kind}" in labels
        assert f"{seg.mem:#x}-{seg.mem + seg.memsz - 1:#x}" in joined
        assert f"memsz {seg.memsz:#x}, bufsz {seg.bufsz:#x}" in joined
    assert f"{CRASH[0]:#x}-{CRASH[1] - 1:#x}" in joined          # the window's range


def test_backup_arrow_points_at_the_backup_copy():
    svg = render_svg(labelled_plan())
    assert re.search(r'<path [^>]*marker-end="url\(#arrow\)"', svg)
    assert f"to {BACKUP_AT:#x}" in "\n".join(texts(svg))


def test_core_header_ranges_are_bands():
    svg = render_svg(labelled_plan())
    titles = re.findall(r"<title>PT_LOAD ([^<]*)</title>", svg)
    assert len(titles) == 4                        # kernel text, backup, two RAM ranges
    assert sum("backup copy" in t for t in titles) == 1


def test_write_svg(tmp_path):
    path = tmp_path / "plan.svg"
    write_svg(labelled_plan(), None, str(path))
    assert path.read_text() == render_svg(labelled_plan())


def test_file_load_plan_renders():
    labels = texts(render_svg(file_load_plan()))
    assert any("kexec_file_load" in t for t in labels)


def test_allocate_breaks_the_axis_for_huge_ranges_and_enlarges_tiny_ones():
    GiB, MiB = 1 << 30, 1 << 20
    sizes = [64 * GiB, 256 * MiB, 4096, 1 * GiB]
    lengths, broken = allocate(sizes, [3, 3, 20, 3], 800, [1 * GiB] * 4)
    assert sum(lengths) == pytest.approx(800)
    assert broken == [True, False, False, False]
    # Up to the threshold, to scale; the 4 KiB range got its minimum; 64 GiB is drawn
    # longer than 1 GiB but far shorter than 64 times.
    assert lengths[3] / lengths[1] == pytest.approx(4, rel=1e-6)
    assert lengths[2] == pytest.approx(20, rel=1e-6)
    assert lengths[3] < lengths[0] < 16 * lengths[3]


def test_allocate_is_monotone_and_fills_the_space():
    import random
    rng = random.Random(5)
    for _ in range(50):
        sizes = [rng.choice([1 << rng.randrange(12, 40), rng.randrange(1, 1 << 36)])
                 for _ in range(rng.randrange(1, 30))]
        lengths, _broken = allocate(sizes, [3] * len(sizes), 700)
        assert sum(lengths) == pytest.approx(700)
        for (s1, l1), (s2, l2) in zip(sorted(zip(sizes, lengths)), sorted(zip(sizes, lengths))[1:]):
            assert l2 >= l1 - 1e-9


def test_allocate_is_linear_when_everything_fits():
    lengths, broken = allocate([100, 300, 600], [1, 1, 1], 1000, [600] * 3)
    assert lengths == pytest.approx([100, 300, 600]) and not any(broken)


# ------------------------------------------------------------------------------------------
# In a browser

def read_png(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    off, idat, header = 8, b"", None
    while off < len(data):
        length, kind = struct.unpack(">I4s", data[off:off + 8])
        body = data[off + 8:off + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        off += 12 + length
    width, height, depth, colour, _c, _f, interlace = header
    assert depth == 8 and interlace == 0 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    pos = 0
    for _ in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(svg_path, png_path, width=1280, height=1080):
    profile = tempfile.mkdtemp(prefix="pykexec-chromium-")
    try:
        subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--screenshot={png_path}",
                        f"--window-size={width},{height}", f"file://{svg_path}"],
                       check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_chromium_shows_a_picture(tmp_path):
    require(chromium() is not None, "needs Debian's chromium package (headless screenshots)")
    svg_path, png_path = tmp_path / "plan.svg", tmp_path / "plan.png"
    write_svg(labelled_plan(), None, str(svg_path))
    screenshot(str(svg_path), str(png_path))
    width, height, bpp, rows = read_png(str(png_path))
    assert (width, height) == (1280, 1080)
    # Sample a grid of pixels: a blank page has one colour; the picture has many and a
    # real spread of brightness.
    samples = [rows[y][x * bpp:x * bpp + 3] for y in range(0, height, 7) for x in range(0, width, 7)]
    grey = [sum(p) / 3 for p in samples]
    mean = sum(grey) / len(grey)
    variance = sum((g - mean) ** 2 for g in grey) / len(grey)
    assert variance > 200, variance
    assert len(set(samples)) > 30
    # The segment colours are on screen (the crash window panel was drawn).
    colours = {bytes.fromhex(c) for c in ("c8434a", "8a6248")}   # purgatory, backup boxes
    assert colours & set(samples)


@pytest.mark.parametrize("drop", range(7))
def test_plans_missing_a_segment_still_render(drop):
    base = labelled_plan()
    segs = [s for i, s in enumerate(base.segments) if i != drop]
    plan = Plan(base.arch, base.syscall, base.flags, base.entry, None, segs)
    svg = render_svg(plan)
    joined = "\n".join(texts(svg))
    for s in segs:
        assert f"{s.mem:#x}" in joined


def test_unusual_plans_render():
    lone = Plan("x86_64", "kexec_load", 0x3E0000, 0x100000, None,
                [Segment(0x100000, 0x1000, b"x" * 10, "kernel", "k")])
    high = Plan("x86_64", "kexec_load", 0x3E0001, None, None,
                [Segment(0xFFFFFFFFF000, 0x1000, b"x", "unknown", "")])
    empty = Plan("x86_64", "kexec_load", 0x3E0001, None, None, [])
    for plan in (lone, high, empty):
        ET.fromstring(render_svg(plan))
    assert "0x100000" in "\n".join(texts(render_svg(lone)))
