"""The independent plan checker on arm64 crash plans: good plans pass, each check can fail.

Good: pykexec's plans (its command line, `--save-plan`) for every bundled arm64 machine with
stand-in Images (a header and padding: the placement depends on nothing else), with and
without an initrd, gzip'd, and with the pre-3.17 text_offset. Broken: one good plan with one
fact changed by hand (in the DTB, the core header, the purgatory's bytes or the machine),
so every arm64 check is shown able to fail. The checker's FDT walk is checked against dtc.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import json
import os
import re
import shutil
import struct
import subprocess

import pytest

from tests.bed import plancheck
from tests.conftest import require
from tests.fuzz import harness
from tests.fuzz.test_plancheck import ROOT, core_phdrs, make_plan, patch, replace_seg, seg_of


def _arch(root):
    with open(os.path.join(ROOT, root, "snapshot.json")) as f:
        return json.load(f).get("machine")


MACHINES = sorted(m for m in (os.path.relpath(os.path.dirname(p), ROOT) for p in
                              glob.glob(os.path.join(ROOT, "examples/*/snapshot.json"))
                              + glob.glob(os.path.join(ROOT, "tests/snapshots/*/snapshot.json")))
                  if _arch(m) == "aarch64")
INITRD = b"FAKEINITRD" * 7000


def arm64_image(text_offset=0, image_size=0x400000, file_size=0x10000, flags=0b1010) -> bytes:
    """A stand-in Image: booting.rst's 64-byte header, then padding."""
    head = struct.pack("<IIQQQQQQ4sI", 0x14000000, 0, text_offset, image_size, flags, 0, 0, 0,
                       b"ARM\x64", 0)
    return head + bytes(range(256)) * ((file_size - len(head)) // 256)


KERNELS = {"Image": arm64_image(), "Image-big": arm64_image(image_size=0x2010000, file_size=0x40000),
           "Image-textoffset": arm64_image(text_offset=0x80000),
           "Image.gz": gzip.compress(arm64_image(), mtime=0)}
CASES = [(m, k, i) for m in MACHINES for k in KERNELS for i in (False, True)]


def test_every_arm64_machine_is_found():
    assert len(MACHINES) >= 5 and any(m.startswith("examples/") for m in MACHINES)


@pytest.mark.parametrize("root,kernel_name,with_initrd", CASES,
                         ids=[f"{m}-{k}-{'initrd' if i else 'none'}" for m, k, i in CASES])
def test_good_plans_pass(tmp_path, root, kernel_name, with_initrd):
    kernel = KERNELS[kernel_name]
    initrd = INITRD if with_initrd else None
    folder = make_plan(tmp_path, root, kernel, initrd)
    machine = plancheck.read_machine(os.path.join(ROOT, root))
    assert machine.crash and machine.cpu_notes and machine.kcore_vmcoreinfo
    plan = plancheck.PlanData.from_folder(folder)
    assert plan.arch == "arm64" and plan.of_kind("dtb")
    assert plancheck.check(plan, machine, kernel, initrd) == []


def test_empty_command_line_keeps_the_trees_bootargs(tmp_path):
    """kexec-tools' rule, which pykexec follows: no command line, the tree's bootargs stay;
    the plan states that line (cmdline_origin), and the checker holds it to the running tree."""
    kpath = tmp_path / "Image"
    kpath.write_bytes(KERNELS["Image"])
    root = os.path.join(ROOT, MACHINE)
    out = harness.run_cli(["-p", str(kpath), "--append=", "--sysroot", root, "--dry-run", "-c"],
                          plan_dir=str(tmp_path / "plan"))
    assert out.code == 0, out.err
    machine = plancheck.read_machine(root)
    assert plancheck.check(str(tmp_path / "plan"), machine) == []
    other = dataclasses.replace(machine, firmware_fdt=None)   # a tree with other bootargs
    assert "cmdline" in {p.check for p in plancheck.check(str(tmp_path / "plan"), other)}


# ---------------------------------------------------------------------------------------------
# The checker's FDT walk reads what dtc reads


def dtc_chosen(blob: bytes) -> dict:
    """/chosen as `dtc -I dtb -O dts` prints it: name -> string or list of cells."""
    require(shutil.which("dtc"), "dtc is missing (apt-get install device-tree-compiler)")
    dts = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", "-"], input=blob,
                         capture_output=True, check=True).stdout.decode()
    body = re.search(r"\n\tchosen \{\n(.*?)\n\t\};", dts, re.S).group(1)
    out = {}
    for line in body.splitlines():
        m = re.fullmatch(r"\t\t([^ ]+) = (.*);", line)
        if not m:
            continue
        name, value = m.groups()
        out[name] = value.strip('"') if value.startswith('"') else \
            [int(x, 16) for x in value.strip("<>").split()]
    return out


def walk_chosen(blob: bytes) -> dict:
    out = {}
    for name, value in plancheck.fdt_nodes(blob)["/chosen"].items():
        if name in ("bootargs", "stdout-path"):
            out[name] = value.rstrip(b"\0").decode()
        else:
            out[name] = [int.from_bytes(value[i:i + 4], "big") for i in range(0, len(value), 4)]
    return out


@pytest.mark.parametrize("root", MACHINES)
def test_fdt_walk_agrees_with_dtc(tmp_path, root):
    plan = plancheck.PlanData.from_folder(make_plan(tmp_path, root, KERNELS["Image"], INITRD))
    blob = seg_of(plan, "dtb").data
    walked, by_dtc = walk_chosen(blob), dtc_chosen(blob)
    assert walked == by_dtc
    assert {"bootargs", "linux,elfcorehdr", "linux,usable-memory-range",
            "linux,initrd-start", "linux,initrd-end"} <= set(walked)


# ---------------------------------------------------------------------------------------------
# One thing broken at a time

MACHINE = "tests/snapshots/qemu-arm64-2g-2cpu"
KERNEL = KERNELS["Image"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = make_plan(tmp_path_factory.mktemp("good"), MACHINE, KERNEL, INITRD)
    plan = plancheck.PlanData.from_folder(folder)
    machine = plancheck.read_machine(os.path.join(ROOT, MACHINE))
    assert plancheck.check(plan, machine, KERNEL, INITRD) == []
    return plan, machine


def chosen_value_at(blob: bytes, name: str) -> int:
    """The offset of /chosen/`name`'s value in `blob` (its bytes are unique in the tree)."""
    value = plancheck.fdt_nodes(blob)["/chosen"][name]
    at = blob.index(value)
    assert blob.count(value) == 1 and struct.unpack_from(">II", blob, at - 12) == (3, len(value))
    return at


def with_dtb(plan, data):
    return replace_seg(plan, seg_of(plan, "dtb"), data=data)


def set_chosen_cells(plan, name, *values):
    """/chosen/`name` with each 64-bit pair of cells replaced by `values` (same length)."""
    dtb = seg_of(plan, "dtb").data
    at = chosen_value_at(dtb, name)
    out = bytearray(dtb)
    for i, v in enumerate(values):
        struct.pack_into(">Q", out, at + 8 * i, v)
    return with_dtb(plan, bytes(out))


def drop_chosen(plan, name):
    """/chosen/`name` turned into FDT_NOP words, as libfdt's nop_property does."""
    dtb = seg_of(plan, "dtb").data
    at = chosen_value_at(dtb, name) - 12
    end = at + 12 + -(-len(plancheck.fdt_nodes(dtb)["/chosen"][name]) // 4) * 4
    return with_dtb(plan, dtb[:at] + struct.pack(">I", 4) * ((end - at) // 4) + dtb[end:])


def load_index(machine, phdrs, which):
    """The index of the kernel-text PT_LOAD (the one holding VMCOREINFO's _stext) or of the
    first RAM one."""
    stext = int(plancheck.parse_vmcoreinfo(machine.kcore_vmcoreinfo)["SYMBOL(_stext)"], 16)
    loads = [(i, p) for i, p in enumerate(phdrs) if p.p_type == plancheck.PT_LOAD]
    text = [i for i, p in loads if p.p_vaddr <= stext < p.p_vaddr + p.p_memsz]
    ram = [i for i, _ in loads if i not in text]
    assert len(text) == 1 and ram
    return (text if which == "text" else ram)[0]


def patch_phdr(plan, machine, which, field_offset, delta):
    core, phdrs = core_phdrs(plan)
    at = 64 + 56 * load_index(machine, phdrs, which) + field_offset
    value = struct.unpack_from("<Q", core.data, at)[0]
    return replace_seg(plan, core, data=patch(core.data, at, "<Q", value + delta))


def purgatory_var(plan, name):
    return plan.notes["purgatory_symbols"]["symbol_addresses"][name]


def set_purgatory_u64(plan, name, value):
    purg = seg_of(plan, "purgatory")
    return replace_seg(plan, purg, data=patch(purg.data, purgatory_var(plan, name) - purg.mem,
                                              "<Q", value))


def break_flags(plan, machine):
    return dataclasses.replace(plan, flags=(62 << 16) | 1), machine, KERNEL


def break_aligned(plan, machine):
    s = seg_of(plan, "initrd")
    return replace_seg(plan, s, memsz=s.memsz + 0x800), machine, KERNEL


def break_in_crash(plan, machine):
    s = seg_of(plan, "dtb")
    return replace_seg(plan, s, mem=machine.crash[0][0] - 0x200000), machine, KERNEL


def break_in_ram(plan, machine):
    s = seg_of(plan, "purgatory")
    ram = plancheck.merge(plancheck._subtract(machine.ram, [(s.mem, s.end)]))
    return plan, dataclasses.replace(machine, ram=tuple(ram)), KERNEL


def break_disjoint(plan, machine):
    """Two segments overlap: the DTB moved onto the initrd."""
    return replace_seg(plan, seg_of(plan, "dtb"), mem=seg_of(plan, "initrd").mem), machine, KERNEL


def break_entry(plan, machine):
    return dataclasses.replace(plan, entry=seg_of(plan, "kernel").mem), machine, KERNEL


def break_image(plan, machine):
    """The Image one page above its 2 MiB aligned base (text_offset is 0)."""
    s = seg_of(plan, "kernel")
    return replace_seg(plan, s, mem=s.mem + 0x1000), machine, KERNEL


def break_dtb(plan, machine):
    return with_dtb(plan, patch(seg_of(plan, "dtb").data, 0, ">I", 0xD00DFEEE)), machine, KERNEL


def break_cmdline(plan, machine):
    dtb = seg_of(plan, "dtb").data
    return with_dtb(plan, dtb.replace(b"irqpoll\0", b"irqpolL\0")), machine, KERNEL


def break_initrd(plan, machine):
    end = seg_of(plan, "initrd")
    return set_chosen_cells(plan, "linux,initrd-end", end.mem + len(end.data) - 1), machine, KERNEL


def break_usable_memory(plan, machine):
    return drop_chosen(plan, "linux,usable-memory-range"), machine, KERNEL


def break_elfcorehdr(plan, machine):
    core = seg_of(plan, "elfcorehdr")
    return set_chosen_cells(plan, "linux,elfcorehdr", core.mem + 0x1000, len(core.data)), \
        machine, KERNEL


def break_core_loads(plan, machine):
    """A RAM PT_LOAD moved into the crash region (vaddr moved along: only the place is wrong)."""
    core, phdrs = core_phdrs(plan)
    i = load_index(machine, phdrs, "ram")
    shift = machine.crash[0][0] - phdrs[i].p_paddr
    data = core.data
    for field in (8, 16, 24):                 # p_offset, p_vaddr, p_paddr
        value = struct.unpack_from("<Q", data, 64 + 56 * i + field)[0]
        data = patch(data, 64 + 56 * i + field, "<Q", value + shift)
    return replace_seg(plan, core, data=data), machine, KERNEL


def break_core_notes(plan, machine):
    notes = dict(machine.cpu_notes)
    notes[len(notes)] = machine.crash[0][0] - 0x1000
    return plan, dataclasses.replace(machine, cpu_notes=notes), KERNEL


def break_linear_map(plan, machine):
    return patch_phdr(plan, machine, "ram", 16, 0x200000), machine, KERNEL       # p_vaddr


def break_kernel_text(plan, machine):
    return patch_phdr(plan, machine, "text", 24, 0x200000), machine, KERNEL      # p_paddr


def break_purgatory(plan, machine):
    """x0 names a page after the device tree."""
    return set_purgatory_u64(plan, "dtb_addr", seg_of(plan, "dtb").mem + 0x1000), machine, KERNEL


def break_kernel_bytes(plan, machine):
    return plan, machine, KERNEL[:-1] + bytes([KERNEL[-1] ^ 0xFF])


BREAKERS = {name: globals()[f"break_{name}"] for name in plancheck.ARM64_CHECKS}


@pytest.mark.parametrize("check", plancheck.ARM64_CHECKS)
def test_each_check_catches_its_fault(good, check):
    plan, machine = good
    broken, broken_machine, kernel = BREAKERS[check](plan, machine)
    problems = plancheck.check(broken, broken_machine, kernel, INITRD)
    assert check in {p.check for p in problems}, problems


def test_bss_overlap_is_caught_without_overlapping_segments(good):
    """The kernel segment only as long as the file, the initrd inside image_size: the
    segments are disjoint, but the Image's BSS would overwrite the initrd."""
    plan, machine = good
    kernel, initrd = seg_of(plan, "kernel"), seg_of(plan, "initrd")
    small = -(-len(kernel.data) // 0x1000) * 0x1000
    broken = replace_seg(replace_seg(plan, kernel, memsz=small), initrd, mem=kernel.mem + small)
    checks = {p.check for p in plancheck.check(broken, machine, KERNEL, INITRD)}
    assert "image" in checks and "disjoint" not in checks


def test_a_changed_segment_byte_fails_the_digest(good):
    plan, machine = good
    initrd = seg_of(plan, "initrd")
    broken = replace_seg(plan, initrd, data=b"X" + initrd.data[1:])
    problems = plancheck.check(broken, machine, KERNEL, None)
    assert [p.check for p in problems] == ["purgatory"] and "sha256_digest" in problems[0].message


def test_kernel_entry_must_be_the_image(good):
    plan, machine = good
    broken = set_purgatory_u64(plan, "kernel_entry", seg_of(plan, "kernel").mem + 0x40)
    assert [p.check for p in plancheck.check(broken, machine, KERNEL, INITRD)] == ["purgatory"]


def test_an_elfcorehdr_size_short_of_the_headers_is_caught(good):
    plan, machine = good
    core = seg_of(plan, "elfcorehdr")
    broken = set_chosen_cells(plan, "linux,elfcorehdr", core.mem, 64)
    assert "elfcorehdr" in {p.check for p in plancheck.check(broken, machine, KERNEL, INITRD)}


def test_initrd_properties_without_an_initrd_are_caught(good):
    plan, machine = good
    initrd = seg_of(plan, "initrd")
    broken = dataclasses.replace(plan, segments=tuple(s for s in plan.segments if s is not initrd))
    problems = plancheck.check(broken, machine, KERNEL, None)
    assert any(p.check == "initrd" and "no initrd segment" in p.message for p in problems)


def test_a_wrong_usable_memory_range_is_caught(good):
    plan, machine = good
    (start, end), = machine.crash
    broken = set_chosen_cells(plan, "linux,usable-memory-range", start, end - start - 0x100000)
    assert "usable_memory" in {p.check for p in plancheck.check(broken, machine, KERNEL, INITRD)}


def test_dropped_ram_is_caught(good):
    plan, machine = good
    core, phdrs = core_phdrs(plan)
    data = patch(core.data, 64 + 56 * load_index(machine, phdrs, "ram"), "<I", 0)     # PT_NULL
    problems = plancheck.check(replace_seg(plan, core, data=data), machine, KERNEL, INITRD)
    assert any("in no PT_LOAD" in p.message for p in problems), problems


def test_a_gzip_kernel_is_compared_uncompressed(good):
    plan, machine = good
    assert plancheck.check(plan, machine, gzip.compress(KERNEL), INITRD) == []
    other = gzip.compress(KERNEL[:-1] + b"\1")
    assert [p.check for p in plancheck.check(plan, machine, other, INITRD)] == ["kernel_bytes"]


def test_a_non_utf8_command_line_reaches_bootargs_byte_for_byte(tmp_path):
    """Found by the arm64 fuzz run: a command line byte that is not UTF-8 (argv's surrogate
    escape) was an internal error in the DTB's bootargs; it passes through as on x86."""
    kpath = tmp_path / "Image"
    kpath.write_bytes(KERNEL)
    root = os.path.join(ROOT, MACHINE)
    out = harness.run_cli(["-p", str(kpath), "--append=caf" + os.fsdecode(b"\xe9"), "--sysroot",
                           root, "--dry-run", "-c"], plan_dir=str(tmp_path / "plan"))
    assert out.code == 0, out.err
    plan = plancheck.PlanData.from_folder(str(tmp_path / "plan"))
    assert plancheck.fdt_nodes(seg_of(plan, "dtb").data)["/chosen"]["bootargs"] == b"caf\xe9\0"
    assert plancheck.check(plan, plancheck.read_machine(root), KERNEL) == []
