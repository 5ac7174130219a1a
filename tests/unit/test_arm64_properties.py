"""Hypothesis over arm64 loads: any Image header (text_offset, image_size, flags, file
size), initrd size, --mem-min/--mem-max window and snapshot gives either a plan that the
arm64 boot protocol and kexec_load accept, or one PykexecError of one line. The plan's
checks are written here from booting.rst and the kernel's rules, not from the loader."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pykexec.arch import parse_args, plan_load
from pykexec.arch.arm64.fdt import Fdt
from pykexec.errors import PykexecError
from pykexec.machine import Machine
from tests.bed.arm64guest import ARM64_MACHINES, SNAPSHOTS_DIR

MACHINES = {m.name: Machine.read(str(SNAPSHOTS_DIR / m.name)) for m in ARM64_MACHINES}
MiB = 1 << 20


def image(text_offset, image_size, flags, size):
    head = struct.pack("<IIQQQQQQ4sI", 0, 0, text_offset, image_size, flags, 0, 0, 0,
                       b"ARM\x64", 0)
    return head + bytes(max(0, size - len(head)))


def crash_region(machine):
    return machine.crash_region


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(MACHINES)),
       text_offset=st.sampled_from([0, 0x80000, 0x1000, 0x200000, 0x123456]),
       image_size=st.sampled_from([0, 0x100000, 0x2010000, 0x8000000, 0x20000000]),
       flags=st.integers(0, 15),
       size=st.integers(64, 0x40000),
       initrd=st.one_of(st.none(), st.integers(1, 64 * MiB)),
       crash=st.booleans(),
       window=st.one_of(st.none(), st.tuples(st.integers(0, 64), st.integers(0, 64))))
def test_a_plan_keeps_the_boot_protocol_or_one_line(tmp_path_factory, name, text_offset,
                                                     image_size, flags, size, initrd, crash,
                                                     window):
    machine = MACHINES[name]
    tmp = tmp_path_factory.mktemp("p")
    kernel = tmp / "Image"
    kernel.write_bytes(image(text_offset, image_size, flags, size))
    argv = ["-p" if crash else "-l", str(kernel), "--append=console=ttyAMA0"]
    if initrd is not None:
        (tmp / "initrd").write_bytes(bytes(initrd))
        argv.append(f"--initrd={tmp / 'initrd'}")
    region = crash_region(machine)
    if window is not None:
        lo, hi = sorted(window)
        argv += [f"--mem-min={region.start + lo * 4 * MiB:#x}",
                 f"--mem-max={region.start + hi * 4 * MiB + 4 * MiB - 1:#x}"]
    try:
        plan = plan_load(parse_args(argv), machine, random_bytes=bytes)
    except PykexecError as err:
        assert "\n" not in str(err) and str(err)
        event(f"refused: {type(err).__name__}")
        return
    event("planned")
    segs = {s.kind: s for s in plan.segments}
    k = segs["kernel"]
    legacy = image_size == 0
    offset = 0x80000 if legacy else text_offset
    # booting.rst: the Image at a 2 MiB aligned base + text_offset, image_size (BSS) free
    assert (k.mem - offset) % (2 * MiB) == 0
    assert k.memsz >= (image_size or 16 * MiB) and k.data == kernel.read_bytes()
    assert not flags & 1                                 # a big-endian Image is refused
    # kexec_load: page-aligned, no overlap, bufsz <= memsz, at most 16 segments
    ordered = sorted(plan.segments, key=lambda s: s.mem)
    assert len(ordered) <= 16
    for a, b in zip(ordered, ordered[1:]):
        assert a.mem + a.memsz <= b.mem
    for s in ordered:
        assert s.mem % 4096 == 0 and len(s.data) <= s.memsz
    if crash:
        for s in ordered:
            assert region.start <= s.mem and s.mem + s.memsz <= region.end
    # the entry is purgatory's; initrd, tree and purgatory above the image
    p = segs["purgatory"]
    assert p.mem <= plan.entry < p.mem + p.memsz
    for kind in ("initrd", "dtb", "purgatory"):
        if kind in segs:
            assert segs[kind].mem >= k.mem + (image_size or 16 * MiB)
    tree = Fdt.parse(segs["dtb"].data)
    assert tree.get_string("/chosen", "bootargs") == "console=ttyAMA0"
    assert (tree.get("/chosen", "linux,elfcorehdr") is not None) == crash
    if initrd is not None:
        start = int.from_bytes(tree.get("/chosen", "linux,initrd-start"), "big")
        end = int.from_bytes(tree.get("/chosen", "linux,initrd-end"), "big")
        assert (start, end) == (segs["initrd"].mem, segs["initrd"].mem + initrd)
