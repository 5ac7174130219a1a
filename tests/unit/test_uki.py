"""Unified kernel images: unwrapped for kexec_load (-c) and kexec_file_load (-s), with the
image's .initrd and .cmdline as defaults the options override, explained by inspect.

The UKIs are built as systemd documents it: `objcopy --add-section` of the sections onto
systemd-boot's EFI stub (Debian systemd-boot-efi), so the PE layout comes from binutils,
not from pykexec. Hostile PE headers are built by hand and must give one line or "not a
UKI", never a wrong kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from pykexec.arch import parse_args, plan_load
from pykexec.cli import run
from pykexec.core.uki import UkiError, is_uki_head, parse_uki
from pykexec.host import syscall
from pykexec.machine import Machine
from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.conftest import require

SNAPSHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "snapshots")
X86_64 = os.path.join(SNAPSHOTS, "qemu-x86_64-1g-2cpu")
STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
CMDLINE = "console=ttyS0 from-the-uki"


def build_uki(tmp_path, name, linux: bytes, initrd=None, cmdline=None) -> str:
    """objcopy's UKI, section addresses as systemd's documentation lays them out."""
    require(os.path.exists(STUB), f"{STUB} is missing (apt install systemd-boot-efi)")
    require(shutil.which("objcopy"), "objcopy is missing (binutils)")
    args = ["objcopy"]
    for section, data, vma in ((".cmdline", cmdline.encode() if cmdline else None, 0x30000),
                               (".linux", linux, 0x2000000), (".initrd", initrd, 0x3000000)):
        if data is None:
            continue
        part = tmp_path / f"{name}{section}"
        part.write_bytes(data)
        args += ["--add-section", f"{section}={part}", "--change-section-vma",
                 f"{section}={vma:#x}"]
    out = tmp_path / name
    subprocess.run(args + [STUB, str(out)], check=True)
    return str(out)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    d = tmp_path_factory.mktemp("uki")
    kernel = bzimage_bytes(FakeKernel())
    initrd = os.urandom(70000)
    paths = {"bzimage": d / "bzImage", "initrd": d / "initrd", "other_initrd": d / "other"}
    paths["bzimage"].write_bytes(kernel)
    paths["initrd"].write_bytes(initrd)
    paths["other_initrd"].write_bytes(os.urandom(5000))
    paths = {k: str(v) for k, v in paths.items()}
    paths["uki"] = build_uki(d, "full.efi", kernel, initrd, CMDLINE)
    paths["bare_uki"] = build_uki(d, "bare.efi", kernel)
    return kernel, initrd, paths


def plan(argv):
    return plan_load(parse_args(argv + ["--sysroot", X86_64]), Machine.read(X86_64),
                     random_bytes=lambda n: bytes(n))


def test_the_sections_are_read_where_binutils_put_them(parts):
    kernel, initrd, paths = parts
    data = open(paths["uki"], "rb").read()
    assert is_uki_head(data[:4096])
    uki = parse_uki(data, paths["uki"])
    assert (uki.linux, uki.initrd, uki.cmdline) == (kernel, initrd, CMDLINE)
    objdump = subprocess.run(["objdump", "-h", paths["uki"]], capture_output=True, text=True,
                             check=True).stdout
    for s in uki.sections:
        row = next(line.split() for line in objdump.splitlines()
                   if line.split()[1:2] == [s.name])
        assert (int(row[2], 16), int(row[5], 16)) == (s.size, s.offset), row


def test_a_plain_bzimage_and_the_stub_alone_are_not_ukis(parts):
    _, _, paths = parts
    for path in (paths["bzimage"], STUB):
        data = open(path, "rb").read()
        assert not is_uki_head(data[:4096]) and parse_uki(data, path) is None


def test_kexec_load_takes_linux_initrd_and_cmdline_from_the_uki(parts):
    kernel, initrd, paths = parts
    from_uki = plan(["-c", "-p", paths["uki"]])
    by_hand = plan(["-c", "-p", paths["bzimage"], f"--initrd={paths['initrd']}",
                    f"--append={CMDLINE}"])
    assert [(s.kind, s.mem, s.data) for s in from_uki.segments] == \
        [(s.kind, s.mem, s.data) for s in by_hand.segments]
    assert from_uki.cmdline == by_hand.cmdline and CMDLINE in from_uki.cmdline
    assert from_uki.segments_of("initrd")[0].source == f"{paths['uki']} (.initrd section)"
    note = from_uki.notes["uki"]
    assert (note["cmdline_from"], note["initrd_from"]) == (".cmdline", ".initrd")


def test_options_override_the_uki_defaults(parts):
    kernel, initrd, paths = parts
    p = plan(["-c", "-p", paths["uki"], f"--initrd={paths['other_initrd']}", "--append=mine"])
    assert p.segments_of("initrd")[0].data == open(paths["other_initrd"], "rb").read()
    assert "mine" in p.cmdline and "from-the-uki" not in p.cmdline
    assert (p.notes["uki"]["cmdline_from"], p.notes["uki"]["initrd_from"]) == ("options", "options")
    # --reuse-cmdline is the user's choice too
    p = plan(["-c", "-p", paths["uki"], "--reuse-cmdline"])
    assert "from-the-uki" not in p.cmdline


def test_a_uki_without_initrd_or_cmdline_loads_its_kernel_only(parts):
    kernel, _, paths = parts
    p = plan(["-c", "-p", paths["bare_uki"]])
    assert not p.segments_of("initrd")
    assert p.segments_of("kernel")[0].data == plan(["-c", "-p", paths["bzimage"]]).segments_of(
        "kernel")[0].data


def test_kexec_file_load_gets_the_sections_as_files(parts):
    kernel, initrd, paths = parts
    recorder = syscall.Recorder()
    with syscall.use(recorder):
        assert run(["-s", "-p", paths["uki"], "--sysroot", X86_64], program="kexec") == 0
    (name, k, i, cmdline, flags), = recorder.calls
    assert (name, k, i, cmdline) == ("kexec_file_load", kernel, initrd, CMDLINE.encode() + b"\0")
    assert flags == syscall.KEXEC_FILE_ON_CRASH            # an initrd: no NO_INITRAMFS
    recorder = syscall.Recorder()
    with syscall.use(recorder):
        assert run(["-s", "-p", paths["uki"], "--append=x", f"--initrd={paths['other_initrd']}",
                    "--sysroot", X86_64], program="kexec") == 0
    (_, k, i, cmdline, _), = recorder.calls
    assert (k, i, cmdline) == (kernel, open(paths["other_initrd"], "rb").read(), b"x\0")


def test_dry_run_says_where_the_defaults_came_from(parts, capsys):
    _, _, paths = parts
    assert run(["-c", "-p", paths["uki"], "--dry-run", "--sysroot", X86_64]) == 0
    out = capsys.readouterr().out
    assert ("unified kernel image: the kernel is its .linux section; command line from its "
            ".cmdline section; initrd from its .initrd section") in out
    assert run(["-c", "-p", paths["uki"], "--dry-run", "--json", "--sysroot", X86_64]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)["notes"]["uki"]["sections"]]
    assert names[-3:] == [".cmdline", ".linux", ".initrd"]


def test_inspect_explains_a_uki_and_its_kernel(parts, capsys):
    _, _, paths = parts
    assert run(["inspect", paths["uki"]]) == 0
    out = capsys.readouterr().out
    assert "unified kernel image" in out and f"command line: {CMDLINE!r}" in out
    assert "initrd: 70000 bytes" in out
    assert f"{paths['uki']} (.linux section): bzImage" in out


# --- hostile PE headers -------------------------------------------------------------------

def pe_file(sections, pe_offset=0x80, size=0x2000):
    """A minimal PE file: DOS header, COFF header (no optional header), section table."""
    data = bytearray(size)
    data[0:2] = b"MZ"
    struct.pack_into("<I", data, 0x3c, pe_offset)
    struct.pack_into("<4sHHIIIHH", data, pe_offset, b"PE\0\0", 0x8664, len(sections), 0, 0, 0, 0, 0)
    for i, (name, vsize, raw_size, raw_ptr) in enumerate(sections):
        struct.pack_into("<8sIIIIIIHHI", data, pe_offset + 24 + 40 * i, name, vsize, 0, raw_size,
                         raw_ptr, 0, 0, 0, 0, 0)
    return bytes(data)


@pytest.mark.parametrize("sections, words", [
    ([(b".linux", 0x100, 0x200, 0x1f80)], "runs past the end of the file"),
    ([(b".linux", 0x10, 0x10, 0x400), (b".linux", 0x10, 0x10, 0x400)], "two .linux sections"),
    ([(b".linux", 0, 0, 0x400)], "section is empty"),
    ([(b".linux", 0x10, 0x10, 0x400), (b".initrd", 0x10, 0x10, 0xfffffff0)], "runs past"),
])
def test_damaged_ukis_are_one_line(tmp_path, sections, words, capsys):
    data = pe_file(sections)
    with pytest.raises(UkiError, match=words):
        parse_uki(data, "bad.efi")
    path = tmp_path / "bad.efi"
    path.write_bytes(data)
    assert run(["-c", "-p", str(path), "--dry-run", "--sysroot", X86_64], program="kexec") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.efi" in err[0] and words in err[0]


def test_a_virtual_size_beyond_the_raw_data_takes_the_raw_data():
    data = pe_file([(b".linux", 0x1000, 0x20, 0x400)])
    assert parse_uki(data, "x").linux == data[0x400:0x420]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=4096), st.integers(0, 0x2000), st.integers(0, 300))
def test_random_pe_headers_are_a_uki_not_a_uki_or_one_error(tail, pe_offset, count):
    data = bytearray(pe_file([], pe_offset=min(pe_offset, 0x1000), size=0x1200) + tail)
    struct.pack_into("<H", data, min(pe_offset, 0x1000) + 6, count)
    try:
        uki = parse_uki(bytes(data), "fuzz.efi")
    except UkiError as e:
        assert str(e).startswith("fuzz.efi: ") and "\n" not in str(e)
        return
    if uki is not None:
        assert uki.linux and uki.linux in bytes(data)
