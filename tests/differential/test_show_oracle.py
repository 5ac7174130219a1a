"""The report and the picture of plans recorded from Debian's kexec on synthetic machines.

Checks the presentation against facts that come from elsewhere: the machine snapshot
(crash regions, CPU crash notes, vmcoreinfo) and the recorded segments themselves.
"""

from __future__ import annotations

import json
import io
import re
import xml.etree.ElementTree as ET

import pytest

from pykexec.machine import Machine
from pykexec.views.show import describe_plan, print_plan
from pykexec.views.svg import render_svg
from tests.bed import synthetic
from tests.bed.fakekernel import make_bzimage, make_initrd
from tests.bed.oracle import run_oracle
from tests.conftest import require_root

pytestmark = pytest.mark.differential
PRESETS = ("qemu_like_1g", "server_64g_numa", "pmem_nvs")
APPEND = "console=ttyS0 irqpoll nr_cpus=1 reset_devices"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    require_root()
    d = tmp_path_factory.mktemp("show-oracle")
    kernel = make_bzimage(str(d / "bzImage"))
    initrd = make_initrd(str(d / "initrd.img"), 64 * 1024)
    out = {}
    for name in PRESETS:
        snap = str(d / name)
        synthetic.make_machine(snap, synthetic.PRESETS[name])
        result = run_oracle(snap, ["-p", kernel, f"--append={APPEND}", f"--initrd={initrd}"])
        assert result.exit_code == 0 and result.plan is not None, result.stderr
        out[name] = (result.plan, Machine.read(snap))
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_window_inferred_from_the_plan_is_the_machines_crash_region(recorded, name):
    plan, machine = recorded[name]
    doc = describe_plan(plan)                       # no machine: inferred from the plan
    region = max((r for r in machine.crash_regions
                  if any(r.start <= s.mem < r.end for s in plan.segments)),
                 key=lambda r: r.start)
    assert (doc["crash_window"]["start"], doc["crash_window"]["end"]) == (region.start, region.end)


@pytest.mark.parametrize("name", PRESETS)
def test_notes_named_after_the_machines_cpus(recorded, name):
    plan, machine = recorded[name]
    phdrs = describe_plan(plan, machine)["elf_core_header"]["program_headers"]
    notes = [p for p in phdrs if p["type"] == "NOTE"]
    cpus = [p["cpu"] for p in notes if p["stands_for"] == "cpu_notes"]
    assert cpus == [c.cpu for c in machine.cpus]
    vmcoreinfo = [p["paddr"] for p in notes if p["stands_for"] == "vmcoreinfo"]
    assert vmcoreinfo == [machine.vmcoreinfo.paddr]
    # Without the machine the size rule finds the same vmcoreinfo note.
    bare = describe_plan(plan)["elf_core_header"]["program_headers"]
    assert [p["paddr"] for p in bare if p["stands_for"] == "vmcoreinfo"] == vmcoreinfo


@pytest.mark.parametrize("name", PRESETS)
def test_json_and_svg_match_the_recorded_segments(recorded, name):
    plan, machine = recorded[name]
    out = io.StringIO()
    print_plan(plan, as_json=True, out=out, machine=machine)
    doc = json.loads(out.getvalue())
    assert [(s["mem"], s["memsz"], s["bufsz"], s["sha256"]) for s in doc["segments"]] == \
        [(s.mem, s.memsz, s.bufsz, s.sha256) for s in plan.segments]
    svg = render_svg(plan, machine)
    root = ET.fromstring(svg)
    labels = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for i, seg in enumerate(plan.segments):
        assert f"#{i} {seg.kind}" in labels
        assert f"{seg.mem:#x}-{seg.mem + seg.memsz - 1:#x}" in labels


def test_big_machine_gets_broken_axes_and_an_enlarged_window(recorded):
    plan, machine = recorded["server_64g_numa"]
    svg = render_svg(plan, machine)
    assert 'stroke-width="7"' in svg                      # a zigzag: the axis is broken
    region = machine.crash_region
    # Every segment box in the enlarged window is tall enough to read.
    boxes = re.findall(r'<rect x="600.0" y="[\d.]+" width="230.0" height="([\d.]+)"[^>]*>'
                       r'<title>segment #', svg)
    assert len(boxes) == len(plan.segments) and min(float(h) for h in boxes) >= 25
    assert f"{region.start:#x}-{region.end - 1:#x} ({region.size >> 20} MiB)" in svg
