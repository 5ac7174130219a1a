"""Bad input: one line on stderr naming the file and the problem, a non-zero exit, no syscall.

Each case starts from a good synthetic machine and good files, breaks one thing, and runs
the real command line in-process with the syscalls replaced by a recorder.
"""

from __future__ import annotations

import os
import shutil
import struct

import pytest

import pykexec.syscall as kexec_syscall
from pykexec.cli import run
from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes, make_initrd

APPEND = "console=ttyS0 irqpoll"


@pytest.fixture(scope="module")
def good_machine(tmp_path_factory):
    d = tmp_path_factory.mktemp("machine") / "m"
    synthetic.make_machine(str(d), synthetic.PRESETS["qemu_like_1g"])
    return str(d)


@pytest.fixture
def world(tmp_path, good_machine, monkeypatch):
    """A writable copy of the machine, good files, and a syscall recorder."""
    machine = tmp_path / "machine"
    shutil.copytree(good_machine, machine)
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(bzimage_bytes(FakeKernel()))
    initrd = make_initrd(str(tmp_path / "initrd.img"), 64 * 1024)
    calls = []
    monkeypatch.setattr(kexec_syscall, "kexec_load",
                        lambda *a: calls.append(("kexec_load",) + a))
    monkeypatch.setattr(kexec_syscall, "arch_flag", lambda: kexec_syscall.KEXEC_ARCH_X86_64)
    return {"dir": tmp_path, "machine": str(machine), "kernel": str(kernel), "initrd": initrd,
            "calls": calls}


def elf_kernel(machine: int = 62, elfclass: int = 2, truncate: bool = False) -> bytes:
    """A minimal ELF executable with one PT_LOAD (built by hand, not by pykexec)."""
    if elfclass == 2:
        ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, machine, 1,
                           0x1000000, 64, 0, 0, 64, 56, 1, 0, 0, 0)
        phdr = struct.pack("<IIQQQQQQ", 1, 7, 0x1000, 0xFFFFFFFF81000000, 0x1000000,
                           0x2000, 0x3000, 0x200000)
    else:
        ehdr = struct.pack("<4sBBBBB7xHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, 0, 2, machine, 1,
                           0x1000000, 52, 0, 0, 52, 32, 1, 0, 0, 0)
        phdr = struct.pack("<IIIIIIII", 1, 0x1000, 0xC1000000, 0x1000000, 0x2000, 0x3000, 7, 0x1000)
    body = ehdr + phdr
    body += bytes(0x1000 - len(body)) + b"\x90" * 0x2000
    return body[:0x1800] if truncate else body


def rewrite(world, rel, text=None, data=None):
    path = os.path.join(world["machine"], rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.isdir(path):
        shutil.rmtree(path)
    with open(path, "wb") as f:
        f.write(data if data is not None else text.encode())
    return path


def put(world, name, data):
    path = world["dir"] / name
    path.write_bytes(data)
    return str(path)


def case_missing_kernel(w):
    return ["-p", str(w["dir"] / "nope"), "--dry-run"], "nope"


def case_truncated_bzimage(w):
    return ["-p", put(w, "short", open(w["kernel"], "rb").read()[:700])], "short"


def case_not_linux(w):
    return ["-p", put(w, "notes.txt", b"just some text, not a kernel\n" * 100)], "notes.txt"


def case_wrong_arch_elf(w):
    return ["-p", put(w, "vmlinux32", elf_kernel(machine=3, elfclass=1)), "--args-linux"], "vmlinux32"


def case_arm64_elf(w):
    return ["-p", put(w, "vmlinux-arm64", elf_kernel(machine=183)), "--args-linux"], "vmlinux-arm64"


def case_truncated_elf(w):
    return ["-p", put(w, "vmlinux-cut", elf_kernel(truncate=True)), "--args-linux"], "vmlinux-cut"


def case_elf_without_args_linux(w):
    return ["-p", put(w, "vmlinux", elf_kernel())], "vmlinux"


def case_old_protocol(w):
    return ["-p", put(w, "old-bz", bzimage_bytes(FakeKernel(protocol=0x0209)))], "old-bz"


def case_kernel_larger_than_region(w):
    return ["-p", put(w, "huge-bz", bzimage_bytes(FakeKernel(init_size=0x20000000)))], "kernel"


def case_missing_initrd(w):
    return ["-p", w["kernel"], "--initrd", str(w["dir"] / "no-initrd")], "no-initrd"


def case_initrd_is_directory(w):
    os.mkdir(w["dir"] / "initrd.d")
    return ["-p", w["kernel"], f"--initrd={w['dir'] / 'initrd.d'}"], "initrd.d"


def case_cmdline_too_long(w):
    return ["-p", w["kernel"], "--append=" + "x" * 3000], "command line"


def case_no_crashkernel(w):
    path = os.path.join(w["machine"], "proc/iomem")
    text = "".join(l for l in open(path) if "Crash kernel" not in l)
    rewrite(w, "proc/iomem", text)
    return ["-p", w["kernel"]], "iomem"


def case_malformed_iomem(w):
    path = os.path.join(w["machine"], "proc/iomem")
    rewrite(w, "proc/iomem", open(path).read() + "zzzz-yyyy : System RAM\n")
    return ["-p", w["kernel"]], "iomem"


def case_unreadable_crash_notes(w):
    path = os.path.join(w["machine"], "sys/devices/system/cpu/cpu0/crash_notes")
    os.remove(path)
    os.mkdir(path)  # a directory where a file should be: unreadable even for root
    return ["-p", w["kernel"]], "crash_notes"


def case_malformed_crash_notes(w):
    rewrite(w, "sys/devices/system/cpu/cpu0/crash_notes", "not-an-address\n")
    return ["-p", w["kernel"]], "crash_notes"


def case_malformed_vmcoreinfo(w):
    rewrite(w, "sys/kernel/vmcoreinfo", "nonsense\n")
    return ["-p", w["kernel"]], "vmcoreinfo"


def case_missing_kcore(w):
    os.remove(os.path.join(w["machine"], "proc/kcore"))
    return ["-p", w["kernel"]], "kcore"


def case_missing_sysroot(w):
    return ["-p", w["kernel"], "--sysroot", str(w["dir"] / "no-machine")], "no-machine"


def case_mem_window_outside_region(w):
    return ["-p", w["kernel"], "--mem-min=0x80000000"], "crash region"


def case_unknown_type(w):
    return ["-p", w["kernel"], "--type=multiboot-x86"], "multiboot-x86"


def case_no_kernel(w):
    return ["-p"], "kernel"


CASES = [
    case_missing_kernel, case_truncated_bzimage, case_not_linux, case_wrong_arch_elf,
    case_arm64_elf, case_truncated_elf, case_elf_without_args_linux, case_old_protocol,
    case_kernel_larger_than_region, case_missing_initrd, case_initrd_is_directory,
    case_cmdline_too_long, case_no_crashkernel, case_malformed_iomem,
    case_unreadable_crash_notes, case_malformed_crash_notes, case_malformed_vmcoreinfo,
    case_missing_kcore, case_missing_sysroot, case_mem_window_outside_region,
    case_unknown_type, case_no_kernel,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "load"])
def test_bad_input_gives_one_line_and_loads_nothing(world, case, dry_run, capsys, monkeypatch):
    argv, names = case(world)
    if "--sysroot" not in argv:
        argv += ["--sysroot", world["machine"]]
    argv += ["--append=" + APPEND] if not any(a.startswith("--append") for a in argv) else []
    if dry_run:
        argv.append("--dry-run")
    else:
        # A load of a snapshot is refused anyway; pretend the snapshot is the live machine.
        monkeypatch.setattr("pykexec.cli._LIVE_ROOTS", ("/", "", argv[argv.index("--sysroot") + 1]))
    code = run(argv)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert code != 0
    assert len(lines) == 1, err
    assert names in lines[0], lines[0]
    assert "Traceback" not in err
    assert world["calls"] == []


def test_not_root_is_refused_before_anything(world, capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr("pykexec.cli._LIVE_ROOTS", ("/", "", world["machine"]))
    code = run(["-p", world["kernel"], "--sysroot", world["machine"]])
    err = capsys.readouterr().err
    assert code == 255 and "root" in err and len(err.strip().splitlines()) == 1
    assert world["calls"] == []


def test_usage_errors_exit_1_with_one_line(world, capsys):
    assert run(["-p", world["kernel"], "--no-such-option"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert run(["-e", "--append=x"]) == 1


def test_good_input_does_load(world, capsys, monkeypatch):
    """The control: the same setup with nothing broken reaches the syscall once."""
    monkeypatch.setattr("pykexec.cli._LIVE_ROOTS", ("/", "", world["machine"]))
    code = run(["-p", world["kernel"], f"--initrd={world['initrd']}", "--append=" + APPEND,
                "--sysroot", world["machine"]])
    assert code == 0, capsys.readouterr().err
    assert len(world["calls"]) == 1
    entry, segments, flags = world["calls"][0][1:]
    assert flags == 0x3E0001 and len(segments) >= 6


def test_malformed_memmap_falls_back_to_iomem_with_a_warning(world, capsys):
    """kexec-tools' rule: a firmware map that does not parse is replaced by /proc/iomem."""
    rewrite(world, "sys/firmware/memmap/0/start", "0xnothex\n")
    code = run(["-p", world["kernel"], "--sysroot", world["machine"], "--dry-run"])
    err = capsys.readouterr().err
    assert code == 0
    assert "memmap/0" in err and "0xnothex" in err and "iomem" in err


def test_debug_shows_the_traceback(world):
    with pytest.raises(Exception):
        run(["-p", str(world["dir"] / "nope"), "--sysroot", world["machine"], "--dry-run", "-d"])
