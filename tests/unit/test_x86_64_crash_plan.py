"""Invariants of pykexec's x86_64 crash plans, checked from the plan's bytes (no oracle).

Every check reads the plan the way the kernel, purgatory or the capture kernel will:
segment rules from kexec_load, the zero page through fixed boot-protocol offsets, the
command line through cmd_line_ptr, the ELF core header through its own headers.
"""

from __future__ import annotations

import os
import struct

import pytest

from pykexec.arch import plan_load
from pykexec.machine import Machine
from pykexec.arch import parse_args
from pykexec.arch.x86.crashfacts import backup_area as x86_backup_area
from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes, make_initrd
from tests.conftest import require

SNAPSHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "snapshots")
APPEND = "console=ttyS0 irqpoll nr_cpus=1 reset_devices"
PAGE = 4096


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    d = tmp_path_factory.mktemp("machines")
    out = {}
    for name, spec in synthetic.PRESETS.items():
        synthetic.make_machine(str(d / name), spec)
        out[name] = str(d / name)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    kernel = d / "bzImage"
    kernel.write_bytes(bzimage_bytes(FakeKernel()))
    return {"kernel": str(kernel), "initrd": make_initrd(str(d / "initrd"), 200 * 1024),
            "vmlinux": str(write_vmlinux(d / "vmlinux"))}


def write_vmlinux(path, paddr=0x1000000, entry=0x1000000):
    """A small ELF64 x86_64 executable: two PT_LOADs linked at 16 MiB like a vmlinux."""
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 62, 1,
                       entry, 64, 0, 0, 64, 56, 2, 0, 0, 0)
    ph = [struct.pack("<IIQQQQQQ", 1, 5, 0x1000, 0xFFFFFFFF81000000, paddr, 0x3000, 0x3000, 0x200000),
          struct.pack("<IIQQQQQQ", 1, 6, 0x4000, 0xFFFFFFFF81400000, paddr + 0x400000, 0x1000,
                      0x5000, 0x200000)]
    body = ehdr + b"".join(ph)
    body += bytes(0x1000 - len(body)) + b"T" * 0x3000 + b"D" * 0x1000
    path.write_bytes(body)
    return path


def plan_for(snapshot, argv):
    machine = Machine.read(snapshot)
    request = parse_args(argv + ["--sysroot", snapshot, "--dry-run"])
    return plan_load(request, machine, random_bytes=lambda n: b"\xab" * n), machine


def u32(data, off):
    return struct.unpack_from("<I", data, off)[0]


def u64(data, off):
    return struct.unpack_from("<Q", data, off)[0]


def check_kernel_rules(plan, machine):
    region = machine.crash_region
    segs = plan.segments
    assert len(segs) <= 16
    for s in segs:
        assert s.mem % PAGE == 0 and s.memsz % PAGE == 0 and s.bufsz <= s.memsz
        assert region.start <= s.mem and s.mem + s.memsz <= region.end
    for a, b in zip(segs, segs[1:]):
        assert a.mem + a.memsz <= b.mem
    assert region.start <= plan.entry < region.end
    used = sum(s.memsz for s in segs)
    assert region.size - used >= 2 * PAGE  # control page + vmcoreinfo copy
    assert plan.flags == 0x3E0001


def boot_params_of(plan):
    (bp,) = [s for s in plan.segments if s.kind in ("boot_params", "param_block")]
    return bp


def check_boot_params(plan, initrd_len=None):
    bp = boot_params_of(plan)
    data = bp.data
    assert data[0x202:0x206] == b"HdrS"
    assert data[0x210] == 0xD0  # kexec's loader id
    cmd = u32(data, 0x228) | (u32(data, 0xC8) << 32)
    seg = plan.segment_at(cmd)
    text = seg.read(cmd, 2048).split(b"\0")[0].decode()
    assert text == plan.cmdline
    (core,) = plan.segments_of("elfcorehdr")
    assert f"elfcorehdr={core.mem // 1024}K" in text.split()
    assert core.mem % 1024 == 0
    if initrd_len is None:
        assert u32(data, 0x218) == 0 and u32(data, 0x21C) == 0
    else:
        (initrd,) = plan.segments_of("initrd")
        assert u32(data, 0x218) | (u32(data, 0xC0) << 32) == initrd.mem
        assert u32(data, 0x21C) == initrd_len
    # The capture e820 must not hand out the header or the backup copy as RAM.
    n = data[0x1E8]
    e820 = [struct.unpack_from("<QQI", data, 0x2D0 + 20 * i) for i in range(n)]
    ram = [(a, a + s) for a, s, t in e820 if t == 1]
    for kind in ("elfcorehdr", "backup"):
        (seg,) = plan.segments_of(kind)
        for lo, hi in ram:
            assert hi <= seg.mem or lo >= seg.mem + seg.bufsz, (kind, hex(lo), hex(hi))
    return data


def registers(plan):
    regs = plan.notes["purgatory_symbols"]["registers"]
    (purg,) = plan.segments_of("purgatory")
    at = plan.notes["purgatory_symbols"]["symbol_addresses"]["entry64_regs"] - purg.mem
    block = struct.unpack_from("<17Q", purg.data, at)
    assert block[4] == regs["rsi"] and block[16] == regs["rip"] and block[6] == regs["rsp"]
    return regs


@pytest.mark.parametrize("name", list(synthetic.PRESETS))
@pytest.mark.parametrize("with_initrd", [False, True])
def test_bzimage_plan_obeys_the_rules(machines, files, name, with_initrd):
    argv = ["-p", files["kernel"], f"--append={APPEND}"]
    if with_initrd:
        argv.append(f"--initrd={files['initrd']}")
    plan, machine = plan_for(machines[name], argv)
    check_kernel_rules(plan, machine)
    check_boot_params(plan, os.path.getsize(files["initrd"]) if with_initrd else None)
    regs = registers(plan)
    (kernel,) = plan.segments_of("kernel")
    assert regs["rip"] == kernel.mem + 0x200
    assert regs["rsi"] == boot_params_of(plan).mem and regs["rbx"] == 0
    assert kernel.mem % 0x200000 == 0
    assert plan.cmdline.startswith(APPEND + " ")


def test_backup_header_points_at_the_copy(machines, files):
    plan, machine = plan_for(machines["qemu_like_1g"], ["-p", files["kernel"]])
    (core,) = plan.segments_of("elfcorehdr")
    (backup,) = plan.segments_of("backup")
    e_phoff, phnum = u64(core.data, 32), struct.unpack_from("<H", core.data, 56)[0]
    loads = [struct.unpack_from("<IIQQQQQQ", core.data, e_phoff + 56 * i) for i in range(phnum)]
    moved = [p for p in loads if p[0] == 1 and p[2] != p[4]]
    assert len(moved) == 1 and moved[0][2] == backup.mem
    low = x86_backup_area(machine)
    assert moved[0][4] == low.start and moved[0][5] == low.size
    symbols = plan.notes["purgatory_symbols"]
    assert (symbols["backup_start"], symbols["backup_src_start"], symbols["backup_src_size"]) == \
        (backup.mem, low.start, low.size)
    assert symbols["panic_kernel"] == 1


def test_vmlinux_is_moved_into_the_crash_region_when_its_link_address_is_not_free(machines, files):
    plan, machine = plan_for(machines["qemu_like_1g"],
                             ["-p", files["vmlinux"], "--args-linux", f"--append={APPEND}"])
    check_kernel_rules(plan, machine)
    check_boot_params(plan)
    loads = plan.segments_of("elf_load")
    assert len(loads) == 2
    delta = loads[0].mem - 0x1000000
    assert delta % 0x200000 == 0 and delta != 0
    assert loads[1].mem - loads[0].mem == 0x400000  # the image keeps its shape
    assert loads[0].data == b"T" * 0x3000 and loads[1].data[:0x1000] == b"D" * 0x1000
    assert registers(plan)["rip"] == 0x1000000 + delta
    assert any("relocate" in w for w in plan.notes["warnings"])


def test_vmlinux_stays_at_its_link_address_when_the_region_is_there(files):
    snap = os.path.join(SNAPSHOTS, "qemu-x86_64-1g-2cpu-at16m")
    require(os.path.isdir(snap), "the crashkernel=256M@16M guest snapshot is missing")
    plan, machine = plan_for(snap, ["-p", files["vmlinux"], "--args-linux"])
    check_kernel_rules(plan, machine)
    loads = plan.segments_of("elf_load")
    assert [s.mem for s in loads] == [0x1000000, 0x1400000]
    assert registers(plan)["rip"] == 0x1000000
    assert plan.notes["kernel_relocated_by"] == 0


def test_skip_checks_leaves_no_digest(machines, files):
    plan, _ = plan_for(machines["qemu_like_1g"], ["-p", files["kernel"], "-i"])
    symbols = plan.notes["purgatory_symbols"]
    assert symbols["skip_checks"] == 1 and symbols["sha256_regions"] == []


def test_too_many_crash_ranges_overflow_into_setup_data(machines, files):
    plan, _ = plan_for(machines["server_64g_numa"], ["-p", files["kernel"]])
    data = boot_params_of(plan).data
    assert data[0x1E8] == 128
    head = u64(data, 0x250)
    kinds = []
    while head:
        seg = plan.segment_at(head)
        nxt, typ, length = struct.unpack("<QII", seg.read(head, 16))
        kinds.append((typ, length))
        head = nxt
    assert kinds[0] == (9, 32)                      # the RNG seed is the head
    assert kinds[1][0] == 1 and kinds[1][1] % 20 == 0  # then the e820 extension
