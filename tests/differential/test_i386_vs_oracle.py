"""pykexec's i386 crash plans against Debian's i386 kexec (kexec-tools:i386 2.0.25).

Debian's 32-bit kexec runs on this host (libc6:i386) in the oracle's mount namespace with
a 32-bit shim (tests/bed/oracle_i386.py), under `setarch i686` as on the guests the
snapshots come from (tests/snapshots/qemu-i386-*, taken by tests/bed/i386guest.py).

Both plans must agree on everything placement does not decide (pykexec.views.planfacts): the
ELF core header (class, EM_386, every program header, the backup PT_LOAD pointing at
each loader's own copy, highmem without virtual addresses), the capture e820 outside the
crash region, the command line, the kernel bytes, the 32-bit entry (startup_32 with esi
= boot_params). What may differ, and why:

* purgatory: pykexec's is 0x3000 bytes, kexec-tools' 0x8000, so later segments shift;
* the bzImage kernel's memsz: init_size (what the kernel needs while it decompresses,
  kexec-tools since 2.0.26) instead of the file size (2.0.25), so the setup_data item
  placed bottom-up after it sits higher;
* the --args-linux parameter block: a 4 KiB zero page then the command line (8 KiB in
  all) instead of kexec-tools' 0xeec-byte packed header padded to 16 KiB;
* the capture e820: kexec-tools' i386 build passes each range's size as a 32-bit size_t,
  so a range of 4 GiB or more (QEMU's reserved 0xfd00000000-0xffffffffff on the PAE guest)
  is truncated to nothing and left out; pykexec passes it.
"""

from __future__ import annotations

import os
import struct

import pytest

from pykexec.arch import plan_load
from pykexec.errors import LoadError
from pykexec.machine import Machine
from pykexec.views.planfacts import boot_params_segment, compare_plans, decode_plan
from pykexec.arch import parse_args
from pykexec.arch.x86.crashfacts import crash_memory_ranges as x86_crash_memory_ranges
from tests.bed.fakekernel import make_bzimage, make_initrd
from tests.bed.fakekernel32 import I386_BZIMAGE, make_vmlinux32
from tests.conftest import require, require_root

pytestmark = pytest.mark.differential

HERE = os.path.dirname(os.path.abspath(__file__))
SNAPSHOTS = os.path.join(os.path.dirname(HERE), "snapshots")
APPEND = "root=/dev/sda1 init 1 irqpoll maxcpus=1"
PLACEMENT_FACTS = {"segment addresses", "entry", "elfcorehdr= value",
                   "e820 inside the crash region"}


def i386_snapshots():
    if not os.path.isdir(SNAPSHOTS):
        return []
    return sorted(n for n in os.listdir(SNAPSHOTS) if n.startswith("qemu-i386-"))


SNAPS = i386_snapshots()
AT16M = [n for n in SNAPS if n.endswith("-at16m")]


@pytest.fixture(scope="module")
def oracle():
    require_root()
    from tests.bed.kernels import BedError
    from tests.bed.oracle_i386 import can_run_i386, run_oracle_i386
    try:
        why = can_run_i386()
    except BedError as e:
        why = str(e)
    require(why is None, f"Debian's i386 kexec cannot run here: {why}")
    return run_oracle_i386


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("i386-inputs")
    return {"bzimage": make_bzimage(str(d / "bzImage"), I386_BZIMAGE),
            "vmlinux": make_vmlinux32(str(d / "vmlinux")),
            "initrd": make_initrd(str(d / "initrd.img"), 200 * 1024)}


def test_there_are_i386_snapshots():
    assert AT16M and len(SNAPS) >= 2, SNAPS


def entry32_block(plan, kernel_entry: int):
    """The 36-byte entry32_regs block of a plan's purgatory with eip = `kernel_entry` and
    esi = boot_params (searched by content: the oracle's plan has no symbols)."""
    params = boot_params_segment(plan)
    purg = plan.segment_at(plan.entry)
    for off in range(0, len(purg.data) - 36 + 1, 4):
        regs = struct.unpack_from("<9I", purg.data, off)
        if regs[4] == params.mem and regs[8] == kernel_entry:
            return dict(zip(("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip"), regs))
    return None


def both(oracle, name, argv):
    snap = os.path.join(SNAPSHOTS, name)
    theirs = oracle(snap, argv)
    machine = Machine.read(snap)
    assert machine.machine_arch == "i686"
    mine = plan_load(parse_args(argv + ["--sysroot", snap]), machine,
                     random_bytes=lambda n: bytes(range(n)))
    return theirs, mine, machine


def _only_huge_extra(theirs, mine) -> bool:
    """mine = theirs plus non-RAM entries of 4 GiB or more (truncated away by kexec-tools)."""
    extra = [e for e in mine if e not in theirs]
    return ([e for e in mine if e not in extra] == list(theirs) and bool(extra)
            and all(size >= 1 << 32 and typ != 1 for _addr, size, typ in extra))


def assert_equivalent(theirs, mine, machine, kernel_entry):
    region = machine.crash_region
    result = compare_plans(theirs, mine, (region.start, region.end))
    # planfacts finds purgatory's register block by content; in kexec-tools' bigger i386
    # purgatory an earlier word pattern can look like one. Check the real block here.
    must = [d for d in result.must_match
            if d.fact != "kernel entry (relative to the kernel segment)"
            and not (d.fact == "e820 outside the crash region" and _only_huge_extra(d.a, d.b))]
    assert not must, result.explain()
    assert {d.fact for d in result.placement} <= PLACEMENT_FACTS, result.explain()
    for plan in (theirs, mine):
        regs = entry32_block(plan, kernel_entry)
        assert regs is not None, f"no entry32_regs with eip={kernel_entry:#x} in {plan.notes}"
        assert regs["ebx"] == regs["ebp"] == regs["edi"] == 0, regs
        assert plan.segment_at(regs["esp"]) is not None, regs
    return result


@pytest.mark.parametrize("name", SNAPS)
@pytest.mark.parametrize("with_initrd", [False, True])
def test_bzimage_crash_plan_matches_kexec_tools(oracle, files, name, with_initrd):
    argv = ["-p", files["bzimage"], f"--append={APPEND}"]
    if with_initrd:
        argv.append(f"--initrd={files['initrd']}")
    result, mine, machine = both(oracle, name, argv)
    assert result.exit_code == 0, result.stderr
    assert result.plan.flags == mine.flags == 0x1       # KEXEC_ON_CRASH | KEXEC_ARCH_DEFAULT
    kernel = mine.segments_of("kernel")[0].mem
    assert result.plan.segments_of("kernel")[0].mem == kernel  # bottom-up: same address
    assert_equivalent(result.plan, mine, machine, kernel)


@pytest.mark.parametrize("name", AT16M)
@pytest.mark.parametrize("core", [[], ["--elf32-core-headers"], ["--elf64-core-headers"]])
def test_vmlinux_args_linux_matches_kexec_tools(oracle, files, name, core):
    """The document's command: an ELF vmlinux at its link address, --args-linux."""
    argv = ["-p", files["vmlinux"], "--args-linux", *core, f"--append={APPEND}"]
    result, mine, machine = both(oracle, name, argv)
    assert result.exit_code == 0, result.stderr
    assert_equivalent(result.plan, mine, machine, 0x1000000)
    assert decode_plan(mine).core_class == (2 if core == ["--elf64-core-headers"] else 1)


@pytest.mark.parametrize("name", [n for n in SNAPS if n not in AT16M])
def test_vmlinux_outside_its_link_address_fails_in_both(oracle, files, name):
    argv = ["-p", files["vmlinux"], "--args-linux", f"--append={APPEND}"]
    snap = os.path.join(SNAPSHOTS, name)
    theirs = oracle(snap, argv)
    assert theirs.exit_code != 0 and "Invalid memory segment" in theirs.stderr, theirs.stderr
    with pytest.raises(LoadError, match="cannot be moved"):
        plan_load(parse_args(argv + ["--sysroot", snap]), Machine.read(snap))


@pytest.mark.parametrize("name", SNAPS)
def test_core_header_class_agrees_by_default(oracle, files, name):
    """ELF32 when all crash memory is below 4 GiB, ELF64 with RAM above it (the PAE guest)."""
    result, mine, machine = both(oracle, name, ["-p", files["bzimage"], f"--append={APPEND}"])
    above = any(r.range.last >= 1 << 32 for r in x86_crash_memory_ranges(machine, "i386"))
    assert decode_plan(result.plan).core_class == decode_plan(mine).core_class == (2 if above else 1)


def test_elf32_above_4g_kexec_tools_truncates_pykexec_refuses(oracle, files):
    """kexec-tools writes the RAM at 4 GiB into an ELF32 header as paddr 0 (truncated): a
    dump that claims the first 2 GiB twice and loses the memory above 4 GiB. pykexec
    refuses the request instead."""
    name = "qemu-i386-pae-5g-2cpu"
    require(name in SNAPS, f"no {name} snapshot")
    argv = ["-p", files["bzimage"], "--elf32-core-headers", f"--append={APPEND}"]
    snap = os.path.join(SNAPSHOTS, name)
    theirs = oracle(snap, argv)
    assert theirs.exit_code == 0
    facts = decode_plan(theirs.plan)
    assert facts.core_class == 1
    loads = [p for p in facts.program_headers if p.type == "LOAD"]
    assert any(p.paddr == 0 for p in loads), loads             # 0x100000000 wrapped to 0
    with pytest.raises(LoadError, match="above 4 GiB"):
        plan_load(parse_args(argv + ["--sysroot", snap]), Machine.read(snap))


@pytest.mark.parametrize("name", SNAPS)
@pytest.mark.parametrize("with_initrd", [False, True])
def test_bzimage_normal_load_matches_kexec_tools(oracle, files, name, with_initrd):
    """-l: no crash segments; the same kernel bytes, command line, e820 and 32-bit entry as
    Debian's i386 kexec; every segment and the entry below 4 GiB."""
    argv = ["-l", files["bzimage"], f"--append={APPEND}"]
    if with_initrd:
        argv.append(f"--initrd={files['initrd']}")
    result, mine, machine = both(oracle, name, argv)
    assert result.exit_code == 0, result.stderr
    assert result.plan.flags == mine.flags == 0x0       # KEXEC_ARCH_DEFAULT, no crash bit
    assert not mine.segments_of("elfcorehdr") and not mine.segments_of("backup")
    assert all(s.mem + s.memsz <= 1 << 32 for s in mine.segments)
    kernel = mine.segments_of("kernel")[0].mem
    result_cmp = compare_plans(result.plan, mine)
    # planfacts finds the register block by content, and in kexec-tools' bigger purgatory
    # an earlier word pattern can look like one: the real blocks are checked below. Where
    # the segments go is placement (kexec-tools puts the zero page low, below 640 KiB).
    must = [d for d in result_cmp.must_match
            if d.fact != "kernel entry (relative to the kernel segment)"
            and not d.fact.startswith("boot register")
            and not (d.fact.startswith("e820") and _only_huge_extra(d.a, d.b))]
    assert not must, result_cmp.explain()
    for plan, entry in ((result.plan, result.plan.segments_of("kernel")[0].mem), (mine, kernel)):
        regs = entry32_block(plan, entry)
        assert regs is not None and regs["ebx"] == regs["ebp"] == regs["edi"] == 0, regs


@pytest.mark.parametrize("name", AT16M)
def test_vmlinux_normal_load_matches_kexec_tools(oracle, files, name):
    """-l of a vmlinux with --args-linux: the same ELF segments at their link addresses, the
    same command line and e820 as Debian's i386 kexec."""
    argv = ["-l", files["vmlinux"], "--args-linux", f"--append={APPEND}"]
    result, mine, machine = both(oracle, name, argv)
    assert result.exit_code == 0, result.stderr
    assert result.plan.flags == mine.flags == 0x0
    cmp = compare_plans(result.plan, mine)
    must = [d for d in cmp.must_match if not d.fact.startswith("boot register")
            and d.fact != "kernel entry (relative to the kernel segment)"]
    assert not must, cmp.explain()
    assert {d.fact for d in cmp.placement} <= PLACEMENT_FACTS, cmp.explain()
