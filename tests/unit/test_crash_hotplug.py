"""--hotplug for kexec_load crash loads (x86_64 and i386): the elfcorehdr sized from the
kernel's crash_elfcorehdr_size, left out of purgatory's digest, KEXEC_UPDATE_ELFCOREHDR in
the flags; refusals when it cannot be honoured."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pykexec.abi.kexec import KEXEC_ON_CRASH, KEXEC_UPDATE_ELFCOREHDR
from pykexec.cli import run
from pykexec.host import syscall
from tests.bed.fakekernel import FakeKernel, bzimage_bytes

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
# odd on purpose: kexec-tools rounds it up to 1 KiB, the placement to a page
HOTPLUG_SIZE = 0x11801


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    path = tmp_path_factory.mktemp("k") / "bzImage"
    path.write_bytes(bzimage_bytes(FakeKernel()))
    return str(path)


def machine_copy(tmp_path, name, size=HOTPLUG_SIZE):
    dest = tmp_path / name
    shutil.copytree(SNAPSHOTS / name, dest, symlinks=True)
    if size is not None:
        (dest / "sys/kernel").mkdir(parents=True, exist_ok=True)
        (dest / "sys/kernel/crash_elfcorehdr_size").write_text(f"{size}\n")
    return str(dest)


def dry_run(argv, machine, capsys):
    with syscall.use(syscall.Faults(syscall.Recorder(), {})):
        code = run(list(argv) + ["--sysroot", machine, "--dry-run", "--json"], program="kexec")
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def elfcorehdr(plan):
    [seg] = [s for s in plan["segments"] if s["kind"] == "elfcorehdr"]
    return seg


def digested(plan):
    return {tuple(r) for r in plan["purgatory"]["symbols"]["sha256_regions"]}


@pytest.mark.parametrize("name", ["qemu-x86_64-1g-1cpu", "qemu-i386-2g-1cpu"])
def test_hotplug_sizes_the_header_leaves_it_unhashed_and_sets_the_flag(
        tmp_path, kernel, capsys, name):
    machine = machine_copy(tmp_path, name)
    code, plain, err = dry_run(["-p", kernel, "--append=console=ttyS0"], machine, capsys)
    assert code == 0, err
    code, hot, err = dry_run(["-p", kernel, "--append=console=ttyS0", "--hotplug"],
                             machine, capsys)
    assert code == 0, err

    # memsz: the kernel's size, KiB-rounded then page-rounded; without: the 16 KiB minimum
    assert elfcorehdr(hot)["memsz"] == 0x12000
    assert elfcorehdr(plain)["memsz"] == 0x4000
    assert elfcorehdr(hot)["bufsz"] == elfcorehdr(plain)["bufsz"]
    # digest: every segment but purgatory, and with --hotplug not the elfcorehdr either
    hdr = elfcorehdr(hot)
    assert (hdr["mem"], hdr["memsz"]) not in digested(hot)
    plain_hdr = elfcorehdr(plain)
    assert (plain_hdr["mem"], plain_hdr["memsz"]) in digested(plain)
    others = {(s["mem"], s["memsz"]) for s in hot["segments"]
              if s["kind"] not in ("purgatory", "elfcorehdr")}
    assert digested(hot) == others
    # flags: only KEXEC_UPDATE_ELFCOREHDR added
    assert hot["flags"] == plain["flags"] | KEXEC_UPDATE_ELFCOREHDR
    assert hot["flags"] & KEXEC_ON_CRASH
    assert "KEXEC_UPDATE_ELFCOREHDR" in hot["flag_names"]
    assert hot["crash_hotplug"] is True and "crash_hotplug" not in plain
    # the capture kernel's memory map leaves out the whole header area
    e820 = [(e["addr"], e["addr"] + e["size"]) for e in hot["e820"]]
    assert not any(a < hdr["mem"] + HOTPLUG_SIZE and hdr["mem"] < b for a, b in e820)


def test_flags_on_x86_64_are_what_a_612_guest_showed(tmp_path, kernel, capsys):
    code, hot, err = dry_run(["-p", kernel, "--hotplug"],
                             machine_copy(tmp_path, "qemu-x86_64-1g-1cpu"), capsys)
    assert code == 0, err
    assert hot["flags"] == 0x3E0005


def test_report_says_crash_hotplug_is_on(tmp_path, kernel, capsys):
    machine = machine_copy(tmp_path, "qemu-x86_64-1g-1cpu")
    with syscall.use(syscall.Faults(syscall.Recorder(), {})):
        assert run(["-p", kernel, "--hotplug", "--sysroot", machine, "--dry-run"],
                   program="kexec") == 0
    assert "crash hotplug: on" in capsys.readouterr().out


def test_real_load_passes_the_flag(tmp_path, kernel):
    machine = machine_copy(tmp_path, "qemu-x86_64-1g-1cpu")
    recorder = syscall.Recorder()
    with syscall.use(syscall.Faults(recorder, {})):
        assert run(["-c", "-p", kernel, "--hotplug", "--sysroot", machine],
                   program="kexec") == 0
    [load] = [c for c in recorder.calls if c[0] == "kexec_load"]
    assert load[3] & KEXEC_UPDATE_ELFCOREHDR


@pytest.mark.parametrize("argv, size, words", [
    (["-p", "K", "--hotplug"], None, "crash_elfcorehdr_size does not exist"),
    (["-p", "K", "--hotplug"], 0, "crash_elfcorehdr_size does not exist"),
    (["-p", "-s", "K", "--hotplug"], None, "crash_elfcorehdr_size does not exist"),
    (["-l", "K", "--hotplug"], HOTPLUG_SIZE, "--hotplug is for crash loads"),
])
def test_refusals(tmp_path, kernel, capsys, argv, size, words):
    machine = machine_copy(tmp_path, "qemu-x86_64-1g-1cpu", size)
    recorder = syscall.Recorder()
    argv = [kernel if a == "K" else a for a in argv]
    with syscall.use(syscall.Faults(recorder, {})):
        code = run(argv + ["--sysroot", machine], program="kexec")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and words in err[0], err
    assert not [c for c in recorder.calls if c[0] in ("kexec_load", "kexec_file_load")]


def test_file_load_accepts_hotplug_and_leaves_it_to_the_kernel(tmp_path, kernel):
    """kexec-tools with -s --hotplug reads the size (dying without it) and then loads as
    without it: the kernel handles hotplug for kexec_file_load crash images itself."""
    machine = machine_copy(tmp_path, "qemu-x86_64-1g-1cpu")
    flags = []
    for extra in ([], ["--hotplug"]):
        recorder = syscall.Recorder()
        with syscall.use(syscall.Faults(recorder, {})):
            assert run(["-s", "-p", kernel, "--sysroot", machine] + extra,
                       program="kexec") == 0
        flags.append([c[4] for c in recorder.calls if c[0] == "kexec_file_load"])
    assert flags[0] and flags[0] == flags[1]


# A real 6.12 guest (bookworm-backports' kernel, CONFIG_CRASH_HOTPLUG) with room for 3 more
# CPUs and 4 DIMMs, snapshotted before anything was loaded: nothing injected.
REAL_612 = "qemu-x86_64-1g-1cpu-612"


def test_real_612_snapshot_sizes_the_header_from_its_own_file(kernel, capsys):
    machine = str(SNAPSHOTS / REAL_612)
    assert (SNAPSHOTS / REAL_612 / "sys/kernel/crash_elfcorehdr_size").read_text().strip() \
        == "917616"
    code, hot, err = dry_run(["-p", kernel, "--hotplug"], machine, capsys)
    assert code == 0, err
    # 917616 = 0xe0070: KiB-rounded 0xe0400, page-rounded 0xe1000
    assert elfcorehdr(hot)["memsz"] == 0xE1000
    assert hot["flags"] == 0x3E0005 and hot["crash_hotplug"] is True
    # notes for the present CPU only: CPUs 1-3 are possible but not there (no crash_notes)
    code, plain, err = dry_run(["-p", kernel], machine, capsys)
    assert code == 0, err
    assert elfcorehdr(plain)["memsz"] == 0x4000


def test_real_612_snapshot_status_says_hotplug_is_off_before_a_load(capsys):
    machine = str(SNAPSHOTS / REAL_612)
    with syscall.use(syscall.Faults(syscall.Recorder(), {})):
        code = run(["-S", "-d", "--sysroot", machine], program="kexec")
    err = capsys.readouterr().err
    # -S exits with the number in kexec_crash_loaded, as kexec-tools does: 0 here
    assert code == 0
    assert err == "kexec: kexec_crash_loaded: 0; crash hotplug: cpu off, memory off\n", err
