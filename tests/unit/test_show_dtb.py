"""The plan note `dtb_edits` in every view: the report (--dry-run text), --json and --svg.

The plan is the presentation tests' hand-built one with one more segment: a real device
tree for a new kernel (boot_dtb of a snapshot's tree), and the note a loader records.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from pykexec.arch.arm64.dtb import boot_dtb
from pykexec.core.plan import Plan, Segment
from pykexec.views.show import describe_plan, plan_report, print_plan
from pykexec.views.svg import HEIGHT, render_svg
from tests.conftest import require
from tests.unit._plans import labelled_plan

FDT = Path(__file__).resolve().parents[1] / "snapshots/qemu-arm64-2g-1cpu/sys/firmware/fdt"
DTB_AT = 0x2E100000
SVG_NS = "{http://www.w3.org/2000/svg}"


def built():
    require(FDT.is_file(), f"{FDT} is missing")
    return boot_dtb(FDT.read_bytes(), "/sys/firmware/fdt", cmdline="console=ttyAMA0 nr_cpus=1",
                    initrd=None, elfcorehdr=(0x3DF5D000, 0x400),
                    usable_memory=((0x2E000000, 0x10000000),), random_bytes=lambda n: bytes(n))


def plan_with_dtb(address_note=True, edits=None) -> Plan:
    base = labelled_plan()
    dtb = built()
    notes = {"dtb_edits": edits if edits is not None else [
        {"node": e.node, "property": e.property, "action": e.action, "value": e.shown}
        for e in dtb.edits]}
    if address_note:
        notes.update(dtb=DTB_AT, dtb_source="/sys/firmware/fdt")
    segs = list(base.segments) + [Segment(DTB_AT, 0x2000, dtb.data, "unknown",
                                          "/sys/firmware/fdt, /chosen edited")]
    return Plan(base.arch, base.syscall, base.flags, base.entry, base.cmdline, segs, notes)


EXPECTED_LINES = [
    'set    /chosen/bootargs = "console=ttyAMA0 nr_cpus=1"',
    "set    /chosen/kaslr-seed = 8 random bytes",
    "set    /chosen/linux,elfcorehdr = <0x0 0x3df5d000 0x0 0x400>",
    "set    /chosen/linux,usable-memory-range = <0x0 0x2e000000 0x0 0x10000000>",
    "delete /chosen/linux,initrd-start",
    "delete /chosen/linux,initrd-end",
]


def test_report_lists_every_edit_beside_its_segment():
    plan = plan_with_dtb()
    size = len(built().data)
    text = plan_report(plan)
    head = (f"device tree for the new kernel (segment #7 at {DTB_AT:#x}, {size} bytes) from "
            f"/sys/firmware/fdt: 6 properties changed:")
    lines = text.splitlines()
    at = lines.index(head)
    assert lines[at + 1:at + 7] == ["  " + line for line in EXPECTED_LINES]


def test_json_has_the_edits_and_the_segment():
    plan = plan_with_dtb(address_note=False)      # found by the FDT magic alone
    doc = json.loads(json.dumps(describe_plan(plan)))
    dt = doc["device_tree"]
    assert (dt["segment"], dt["address"], dt["size"], dt["source"]) == (
        7, DTB_AT, len(built().data), None)
    assert [e["action"] for e in dt["edits"]] == ["set"] * 4 + ["delete"] * 2
    assert dt["edits"][0] == {"node": "/chosen", "property": "bootargs", "action": "set",
                              "value": '"console=ttyAMA0 nr_cpus=1"'}
    assert doc["notes"]["dtb_edits"] == plan.notes["dtb_edits"]
    # a plan without the note keeps its JSON as it was
    assert "device_tree" not in describe_plan(labelled_plan())


def test_a_recorded_note_cannot_break_the_report():
    """A plan read back from a file may hold anything in its notes: each edit stays one
    line, control characters escaped."""
    plan = plan_with_dtb(edits=[{"node": "/chosen", "property": "bad\nname", "action": "set",
                                 "value": "a\x1b[2Jb"}, "not a dict", {"node": 5}])
    text = plan_report(plan)
    assert "set    /chosen/bad\\nname = a\\x1b[2Jb" in text
    assert "\x1b" not in text
    assert "3 properties changed" in text
    out = []

    class Sink:
        def write(self, s):
            out.append(s)
    print_plan(plan, as_json=True, out=Sink())
    assert json.loads("".join(out))["device_tree"]["edits"][1]["value"] == "not a dict"


def test_svg_shows_the_edits_with_the_segment():
    svg = render_svg(plan_with_dtb())
    root = ET.fromstring(svg)
    texts = [el.text or "" for el in root.iter(SVG_NS + "text")]
    assert any(t.startswith("device tree for the new kernel (segment #7") for t in texts)
    for line in EXPECTED_LINES:
        assert line in texts
    # the x86 test plan draws the first MiB at the bottom: the panel goes below, and the
    # picture grows to hold it
    height = int(root.get("height"))
    assert height > HEIGHT and root.get("viewBox") == f"0 0 1280 {height}"
    ys = [float(el.get("y")) for el in root.iter(SVG_NS + "text") if el.text in EXPECTED_LINES]
    assert min(ys) > HEIGHT and max(ys) < height
    # the DTB's segment colour (of its kind, "unknown" in this plan) beside the heading
    assert re.search(r'<rect [^>]*fill="#8d8680"[^>]*><title>segment #7 unknown</title>', svg)
    plain = render_svg(labelled_plan())
    assert f'height="{HEIGHT}"' in plain and "device tree" not in plain
