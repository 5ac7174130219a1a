"""The independent plan checker (tests/bed/plancheck.py) passes good plans and catches broken ones.

Good: pykexec's plans for every bundled machine (examples/, tests/snapshots/) with the test
bed's fake kernels, with and without an initrd. Broken: one good plan with exactly one thing
broken by hand per check, so every check is shown able to fail.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import struct

import pytest

from tests.bed import plancheck
from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.bed.fakekernel32 import I386_BZIMAGE, vmlinux32_bytes
from tests.fuzz import harness
from tests.unit.badinput import elf_kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
X86 = ("x86_64", "i386", "i686")


def _arch(root):
    with open(os.path.join(ROOT, root, "snapshot.json")) as f:
        return json.load(f).get("machine", "x86_64")


# the checker knows x86 plans (boot_params, the x86 backup rule); other arches are left out
MACHINES = sorted(m for m in (os.path.relpath(os.path.dirname(p), ROOT) for p in
                              glob.glob(os.path.join(ROOT, "examples/**/snapshot.json"), recursive=True)
                              + glob.glob(os.path.join(ROOT, "tests/snapshots/*/snapshot.json")))
                  if _arch(m) in X86)
INITRD = b"FAKEINITRD" * 7000


def kernels_for(root: str):
    arch = _arch(root)
    if arch in ("i386", "i686"):
        found = [("bzImage32", bzimage_bytes(I386_BZIMAGE))]
    else:
        found = [("bzImage", bzimage_bytes(FakeKernel()))]
    if root.endswith("at16m"):    # the only machines where a vmlinux linked at 16M fits
        found.append(("vmlinux32", vmlinux32_bytes()) if arch != "x86_64" else
                     ("vmlinux64", elf_kernel()))
    return found


CASES = [(m, name, with_initrd) for m in MACHINES for name, _ in kernels_for(m)
         for with_initrd in (False, True)]


def make_plan(tmp_path, root, kernel: bytes, initrd=None):
    kpath = tmp_path / "kernel"
    kpath.write_bytes(kernel)
    argv = ["-p", str(kpath), "--append=console=ttyS0 irqpoll", "--sysroot",
            os.path.join(ROOT, root), "--dry-run", "-c"]
    if initrd is not None:
        (tmp_path / "initrd").write_bytes(initrd)
        argv += ["--initrd", str(tmp_path / "initrd")]
    if kernel[:4] == b"\x7fELF":
        argv.append("--args-linux")
    out = harness.run_cli(argv, plan_dir=str(tmp_path / "plan"))
    assert out.code == 0, out.err
    return str(tmp_path / "plan")


def test_every_bundled_machine_is_found():
    assert len(MACHINES) >= 14 and any("i386" in m for m in MACHINES)


@pytest.mark.parametrize("root,kernel_name,with_initrd", CASES,
                         ids=[f"{m}-{k}-{'initrd' if i else 'none'}" for m, k, i in CASES])
def test_good_plans_pass(tmp_path, root, kernel_name, with_initrd):
    kernel = dict(kernels_for(root))[kernel_name]
    initrd = INITRD if with_initrd else None
    folder = make_plan(tmp_path, root, kernel, initrd)
    machine = plancheck.read_machine(os.path.join(ROOT, root))
    assert machine.crash and machine.ram and machine.cpu_notes
    assert plancheck.check(folder, machine, kernel, initrd) == []


# ---------------------------------------------------------------------------------------------
# One thing broken at a time

MACHINE = "examples/qemu-x86_64-1g-2cpu"
KERNEL = bzimage_bytes(FakeKernel())


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = make_plan(tmp_path_factory.mktemp("good"), MACHINE, KERNEL, INITRD)
    plan = plancheck.PlanData.from_folder(folder)
    machine = plancheck.read_machine(os.path.join(ROOT, MACHINE))
    assert plancheck.check(plan, machine, KERNEL, INITRD) == []
    return plan, machine


def seg_of(plan, kind):
    (seg,) = plan.of_kind(kind)
    return seg


def replace_seg(plan, old, **changes):
    return dataclasses.replace(plan, segments=tuple(
        dataclasses.replace(s, **changes) if s is old else s for s in plan.segments))


def patch(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def core_phdrs(plan):
    core = seg_of(plan, "elfcorehdr")
    return core, plancheck.parse_core_header(core.data).phdrs


def break_flags(plan, machine):
    return dataclasses.replace(plan, flags=plan.flags & ~1), machine, KERNEL


def break_aligned(plan, machine):
    s = seg_of(plan, "initrd")
    return replace_seg(plan, s, memsz=s.memsz + 0x800), machine, KERNEL


def break_in_crash(plan, machine):
    s = seg_of(plan, "kernel")
    return replace_seg(plan, s, mem=machine.crash[0][0] - 2 * s.memsz), machine, KERNEL


def break_in_ram(plan, machine):
    s = seg_of(plan, "purgatory")
    ram = plancheck.merge(plancheck._subtract(machine.ram, [(s.mem, s.end)]))
    return plan, dataclasses.replace(machine, ram=tuple(ram)), KERNEL


def break_disjoint(plan, machine):
    kernel, initrd = seg_of(plan, "kernel"), seg_of(plan, "initrd")
    return replace_seg(plan, initrd, mem=kernel.end - 0x1000), machine, KERNEL


def break_entry(plan, machine):
    return dataclasses.replace(plan, entry=seg_of(plan, "kernel").mem), machine, KERNEL


def break_elfcorehdr(plan, machine):
    core = seg_of(plan, "elfcorehdr")
    backup = seg_of(plan, "backup")
    # the core header moved past the backup copy, the command line still names the old place
    return replace_seg(plan, core, mem=backup.end - core.memsz - 0x10000), machine, KERNEL


def break_core_loads(plan, machine):
    core, phdrs = core_phdrs(plan)
    last_load = max(i for i, p in enumerate(phdrs) if p.p_type == plancheck.PT_LOAD)
    at = 64 + 56 * last_load + 24          # p_paddr of an ELF64 program header
    return replace_seg(plan, core, data=patch(core.data, at, "<Q", machine.crash[0][0])), \
        machine, KERNEL


def break_core_notes(plan, machine):
    notes = dict(machine.cpu_notes)
    notes[len(notes)] = 0x3FC00000
    return plan, dataclasses.replace(machine, cpu_notes=notes), KERNEL


def break_cmdline(plan, machine):
    # the kernel file says its command line holds 31 bytes: elfcorehdr= would be cut off
    return plan, machine, patch(KERNEL, 0x238, "<I", 31)


def break_initrd(plan, machine):
    params = seg_of(plan, "boot_params")
    size = struct.unpack_from("<I", params.data, 0x21C)[0]
    return replace_seg(plan, params, data=patch(params.data, 0x21C, "<I", size - 1)), \
        machine, KERNEL


def break_kernel_bytes(plan, machine):
    return plan, machine, KERNEL[:-1] + bytes([KERNEL[-1] ^ 0xFF])


BREAKERS = {name: globals()[f"break_{name}"] for name in plancheck.CHECKS}


@pytest.mark.parametrize("check", plancheck.CHECKS)
def test_each_check_catches_its_fault(good, check):
    plan, machine = good
    broken, broken_machine, kernel = BREAKERS[check](plan, machine)
    problems = plancheck.check(broken, broken_machine, kernel, INITRD)
    assert check in {p.check for p in problems}, problems


def test_dropped_ram_is_caught(good):
    """A core header that forgets a RAM range: the dump would silently miss that memory."""
    plan, machine = good
    core, phdrs = core_phdrs(plan)
    ram_loads = [i for i, p in enumerate(phdrs) if p.p_type == plancheck.PT_LOAD
                 and p.p_vaddr < plancheck.X86_64_KERNEL_TEXT[0]]
    data = patch(core.data, 64 + 56 * ram_loads[-1], "<I", 0)      # PT_NULL
    problems = plancheck.check(replace_seg(plan, core, data=data), machine, KERNEL, INITRD)
    assert any("in no PT_LOAD" in p.message for p in problems), problems


def test_file_load_plans_compare_the_files():
    plan = plancheck.PlanData("x86_64", "kexec_file_load", 2, None, "x", (
        plancheck.Seg("kernel", None, 3, b"abc"), plancheck.Seg("initrd", None, 2, b"de")))
    assert plancheck.check(plan, plancheck.MachineFacts((), ()), b"abc", b"de") == []
    assert [p.check for p in plancheck.check(plan, plancheck.MachineFacts((), ()), b"abd", b"dx")] \
        == ["kernel_bytes", "initrd"]


@pytest.mark.parametrize("text,value", [("1031540K", 1031540 << 10), ("0x3ef5d000", 0x3EF5D000),
                                        ("4k@0x2000", 0x2000), ("1M", 1 << 20), ("010", 8)])
def test_memparse(text, value):
    assert plancheck.elfcorehdr_address(f"a elfcorehdr={text} b") == value
