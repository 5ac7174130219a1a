"""The bundled machines in examples/: each renders the table, the JSON and the SVG of a
crash load, and what they show is the plan's own numbers (issue 6's acceptance).

Every machine is planned through the command line a user types (`pykexec -c -p ...
--sysroot examples/NAME --dry-run`), with the committed stand-in kernels. One run prints
the table and also saves the plan (`--save-plan`) and draws the picture (`--svg`), so the
three come from the same plan (the RNG seed is fresh on every run); a second run prints
`--json` and saves its plan. The generated examples (the server snapshot, the stand-in
kernels) are regenerated and compared, so they cannot drift from their generators.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pykexec.views import planfacts
from pykexec.core.plan import load_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
KERNELS = EXAMPLES / "kernels"
APPEND = "console=ttyS0 irqpoll nr_cpus=1 reset_devices"
SVG_NS = "{http://www.w3.org/2000/svg}"

X86_64 = ["qemu-x86_64-1g-1cpu", "qemu-x86_64-1g-2cpu", "qemu-x86_64-4g-2cpu",
          "qemu-x86_64-1g-2cpu-at16m", "qemu-x86_64-4g-2cpu-high", "server-64g-2socket",
          "vmcore-1g-2cpu/machine"]
I386 = ["kdump-2006-i386/machine"]
ARM64 = ["qemu-arm64-2g-2cpu"]


def load_args(name):
    if name in I386:
        return ["-p", str(KERNELS / "stand-in-vmlinux-i386"), "--args-linux",
                "--elf32-core-headers", "--append=root=/dev/hda1 init 1 irqpoll maxcpus=1"]
    return ["-p", str(KERNELS / "stand-in-bzImage"), f"--initrd={KERNELS / 'stand-in-initrd'}",
            f"--append={APPEND}"]


def pykexec(*argv):
    proc = subprocess.run([sys.executable, "-m", "pykexec", *argv], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


ROW = re.compile(r"^\s*(\d+)\s+(\w+)\s+0x([0-9a-f]+)-0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)"
                 r"\s+([0-9a-f]{12})\s+(.*)$")
PHDR = re.compile(r"^\s+(\d+)\s+(NOTE|LOAD)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+\S")
E820 = re.compile(r"^  0x([0-9a-f]{16})-0x([0-9a-f]{16})\s+0x([0-9a-f]+)\s+\S+ \S+\s+(\w+)")


@pytest.fixture(scope="module", params=X86_64 + I386)
def machine(request, tmp_path_factory):
    """(name, table text, plan, svg text, json doc, plan of the json run)"""
    name = request.param
    tmp = tmp_path_factory.mktemp(name.replace("/", "-"))
    sysroot = str(EXAMPLES / name)
    table = pykexec("-c", *load_args(name), "--sysroot", sysroot, "--dry-run",
                    f"--save-plan={tmp / 'plan'}", f"--svg={tmp / 'plan.svg'}")
    doc = json.loads(pykexec("-c", *load_args(name), "--sysroot", sysroot, "--dry-run",
                             "--json", f"--save-plan={tmp / 'json-plan'}"))
    return (name, table, load_plan(str(tmp / "plan")), (tmp / "plan.svg").read_text(), doc,
            load_plan(str(tmp / "json-plan")))


def test_every_machine_has_a_readme_that_says_what_it_exercises():
    names = [n.split("/")[0] for n in X86_64 + I386 + ARM64]
    for name in names:
        text = (EXAMPLES / name / "README.md").read_text()
        if name not in ("kdump-2006-i386",):        # that one tells the document's story
            assert re.search(r"\bexercises\b", text, re.I), name
    index = (EXAMPLES / "README.md").read_text()
    for name in names:
        assert f"`{name}" in index, name


def test_table_numbers_are_the_plans(machine):
    name, table, plan, _svg, _doc, _p = machine
    rows = [m for m in map(ROW.match, table.splitlines()) if m]
    assert len(rows) == len(plan.segments)
    for m, seg in zip(rows, plan.segments):
        index, kind, first, last, memsz, bufsz, sha, source = m.groups()
        assert plan.segments[int(index)] is seg
        assert kind == seg.kind and source.strip() == seg.source
        assert (int(first, 16), int(last, 16) + 1) == (seg.mem, seg.end)
        assert (int(memsz, 16), int(bufsz, 16)) == (seg.memsz, seg.bufsz)
        assert seg.sha256.startswith(sha)
    flags = re.search(r"flags (0x[0-9a-f]+)", table).group(1)
    assert int(flags, 16) == plan.flags
    assert f"entry {plan.entry:#x}" in table.splitlines()[0]
    facts = planfacts.decode_plan(plan)
    # the core header's program headers, as the table lists them
    phdrs = [m.groups() for m in map(PHDR.match, table.splitlines()) if m]
    assert [(t, int(p, 16), int(n, 16), int(o, 16)) for _i, t, p, n, o in phdrs] == \
        [(p.type, p.paddr, p.memsz, p.offset) for p in facts.program_headers]
    # the capture kernel's e820 map
    e820 = [m.groups() for m in map(E820.match, table.splitlines()) if m]
    assert [(int(a, 16), int(b, 16) + 1 - int(a, 16)) for a, b, _n, _t in e820] == \
        [(a, n) for a, n, _t in facts.e820]
    assert [int(n, 16) for _a, _b, n, _t in e820] == [n for _a, n, _t in facts.e820]
    # the command line and its elfcorehdr= pointing at the core header segment
    assert facts.cmdline in table
    core = planfacts.core_header_segment(plan)
    assert f"elfcorehdr={core.mem // 1024}K" in facts.cmdline


def test_json_is_the_plans(machine):
    name, _table, _plan, _svg, doc, plan = machine
    assert doc["flags"] == plan.flags and doc["entry"] == plan.entry
    assert [(s["kind"], s["mem"], s["memsz"], s["bufsz"], s["sha256"], s["source"])
            for s in doc["segments"]] == [(s.kind, s.mem, s.memsz, s.bufsz, s.sha256, s.source)
                                          for s in plan.segments]
    facts = planfacts.decode_plan(plan)
    assert [(e["addr"], e["size"], e["type"]) for e in doc["e820"]] == list(facts.e820)
    assert [(p["type"], p["paddr"], p["memsz"], p["offset"])
            for p in doc["elf_core_header"]["program_headers"]] == \
        [(p.type, p.paddr, p.memsz, p.offset) for p in facts.program_headers]
    assert doc["cmdline"] == facts.cmdline
    window = doc["crash_window"]
    assert all(window["start"] <= s.mem and s.end <= window["end"] for s in plan.segments)


def test_svg_labels_are_the_segments(machine):
    name, _table, plan, svg, _doc, _p = machine
    root = ET.fromstring(svg)
    assert not list(root.iter(SVG_NS + "script"))
    texts = [el.text or "" for el in root.iter(SVG_NS + "text")]
    joined = "\n".join(texts)
    titles = "\n".join(el.text or "" for el in root.iter(SVG_NS + "title"))
    for i, seg in enumerate(plan.segments):
        assert f"#{i} {seg.kind}" in texts, (name, i)
        assert f"{seg.mem:#x}-{seg.end - 1:#x}" in joined, (name, i)
        assert f"memsz {seg.memsz:#x}, bufsz {seg.bufsz:#x}" in joined, (name, i)
        assert seg.sha256 in titles, (name, i)          # the picture is of this very plan
    backup = plan.segments_of("backup")[0]
    assert f"to {backup.mem:#x}" in joined


@pytest.mark.parametrize("name", ARM64)
def test_arm64_machine_table_json_and_svg_are_the_plans(name, tmp_path):
    """An arm64 machine: no e820 and no command-line parameters (the device tree carries
    them); the table, JSON and SVG still show the plan's own numbers."""
    args = ["-c", "-p", str(KERNELS / "stand-in-Image-arm64"),
            f"--initrd={KERNELS / 'stand-in-initrd'}", "--append=console=ttyAMA0 nr_cpus=1",
            "--sysroot", str(EXAMPLES / name), "--dry-run"]
    table = pykexec(*args, f"--save-plan={tmp_path / 'plan'}", f"--svg={tmp_path / 'p.svg'}")
    plan = load_plan(str(tmp_path / "plan"))
    rows = [m.groups() for m in map(ROW.match, table.splitlines()) if m]
    assert [(k, int(a, 16), int(b, 16) + 1, int(n, 16), int(z, 16)) for _i, k, a, b, n, z, _s, _r
            in rows] == [(s.kind, s.mem, s.end, s.memsz, s.bufsz) for s in plan.segments]
    assert [s.kind for s in plan.segments] == ["kernel", "initrd", "dtb", "purgatory",
                                               "elfcorehdr"]
    assert plan.arch == "arm64" and f"flags {plan.flags:#x}" in table
    doc = json.loads(pykexec(*args, "--json", f"--save-plan={tmp_path / 'json-plan'}"))
    again = load_plan(str(tmp_path / "json-plan"))
    assert [(s["kind"], s["mem"], s["sha256"]) for s in doc["segments"]] == \
        [(s.kind, s.mem, s.sha256) for s in again.segments]
    texts = "\n".join(el.text or "" for el in
                      ET.fromstring((tmp_path / "p.svg").read_text()).iter(SVG_NS + "text"))
    for i, seg in enumerate(plan.segments):
        assert f"#{i} {seg.kind}" in texts and f"{seg.mem:#x}-{seg.end - 1:#x}" in texts


def test_the_server_has_two_sockets_worth_of_notes():
    doc = json.loads(pykexec("-c", *load_args("server-64g-2socket"), "--sysroot",
                             str(EXAMPLES / "server-64g-2socket"), "--dry-run", "--json"))
    notes = [p for p in doc["elf_core_header"]["program_headers"] if p["stands_for"] == "cpu_notes"]
    assert [p["cpu"] for p in notes] == list(range(32))
    high = {p["cpu"] for p in notes if p["paddr"] >= 34 << 30}
    assert high == set(range(8, 16)) | set(range(24, 32))
    # the capture kernel goes into the high region, in node 1; neither region is dumped
    assert doc["crash_window"]["start"] >= 34 << 30
    low = (0x6D000000, 0x7D000000)
    ram = [(p["paddr"], p["paddr"] + p["memsz"]) for p in doc["elf_core_header"]["program_headers"]
           if p["stands_for"] == "ram"]
    for start, end in ram:
        assert end <= low[0] or start >= low[1]
        assert end <= doc["crash_window"]["start"] or start >= doc["crash_window"]["end"]


def regenerate(script, tmp_path):
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, cwd=REPO,
                   capture_output=True, timeout=120)
    return {str(p.relative_to(tmp_path)): p.read_bytes()
            for p in tmp_path.rglob("*") if p.is_file()}


def test_the_server_snapshot_is_what_its_generator_writes(tmp_path):
    made = regenerate(EXAMPLES / "server-64g-2socket" / "generate", tmp_path)
    folder = EXAMPLES / "server-64g-2socket"
    committed = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
                 if p.is_file() and p.name not in ("README.md", "generate")}
    assert made == committed


def test_the_stand_in_kernels_are_what_their_generator_writes(tmp_path):
    made = regenerate(KERNELS / "make-stand-ins", tmp_path)
    assert set(made) == {"stand-in-bzImage", "stand-in-initrd", "stand-in-vmlinux-i386",
                         "stand-in-Image-arm64"}
    for rel, data in made.items():
        assert (KERNELS / rel).read_bytes() == data, rel


def test_vmcore_example_is_consistent():
    """The saved head of /proc/vmcore is the capture kernel's view of the planned header."""
    from pykexec.abi.elf import PT_LOAD, PT_NOTE, parse_core_header
    folder = EXAMPLES / "vmcore-1g-2cpu"
    _e, planned = parse_core_header((folder / "elfcorehdr.bin").read_bytes())
    _e, vmcore = parse_core_header((folder / "vmcore-head").read_bytes())
    assert sum(p.p_type == PT_NOTE for p in planned) == 3
    assert sum(p.p_type == PT_NOTE for p in vmcore) == 1        # merged by the capture kernel
    loads_planned = [(p.p_paddr, p.p_memsz) for p in planned if p.p_type == PT_LOAD]
    loads_vmcore = [(p.p_paddr, p.p_memsz) for p in vmcore if p.p_type == PT_LOAD]
    assert loads_planned == loads_vmcore
    note = next(p for p in vmcore if p.p_type == PT_NOTE)
    assert note.p_offset + note.p_filesz <= os.path.getsize(folder / "vmcore-head")


@pytest.mark.parametrize("name", ["qemu-x86_64-1g-2cpu", "server-64g-2socket"])
def test_the_tutorials_pictures_show_in_a_browser(name, tmp_path):
    """docs/img (drawn from examples by the tutorial) in headless Chromium: not blank, and
    the crash window panel with its segment boxes is on screen."""
    from tests.conftest import require
    from tests.unit.test_svg import chromium, read_png, screenshot
    require(chromium() is not None, "needs Debian's chromium package (headless screenshots)")
    png = tmp_path / f"{name}.png"
    screenshot(str(REPO / "docs" / "img" / f"{name}.svg"), str(png))
    width, height, bpp, rows = read_png(str(png))
    samples = [rows[y][x * bpp:x * bpp + 3] for y in range(0, height, 5) for x in range(0, width, 5)]
    assert len(set(samples)) > 30
    colours = {bytes.fromhex(c) for c in ("3b6ea8", "c8434a", "8a6248", "8c5fa8")}
    assert len(colours & set(samples)) >= 3, "segment colours missing from the screenshot"
