"""The first bad-input cases: files, images and machine data (see tests/unit/badinput.py)."""

from __future__ import annotations

import os

from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.unit.badinput import bad, elf_kernel, put, rewrite


@bad(255)
def case_missing_kernel(w):
    return ["-p", str(w["dir"] / "nope")], "nope"


@bad(255)
def case_truncated_bzimage(w):
    return ["-p", put(w, "short", open(w["kernel"], "rb").read()[:700])], "short"


@bad(255)
def case_not_linux(w):
    return ["-p", put(w, "notes.txt", b"just some text, not a kernel\n" * 100)], "notes.txt"


@bad(255)
def case_wrong_arch_elf(w):
    return ["-p", put(w, "vmlinux32", elf_kernel(machine=3, elfclass=1)), "--args-linux"], "vmlinux32"


@bad(255)
def case_arm64_elf(w):
    return ["-p", put(w, "vmlinux-arm64", elf_kernel(machine=183)), "--args-linux"], "vmlinux-arm64"


@bad(255)
def case_truncated_elf(w):
    return ["-p", put(w, "vmlinux-cut", elf_kernel(truncate=True)), "--args-linux"], "vmlinux-cut"


@bad(255)
def case_elf_without_args_linux(w):
    return ["-p", put(w, "vmlinux", elf_kernel())], "vmlinux"


@bad(255)
def case_old_protocol(w):
    return ["-p", put(w, "old-bz", bzimage_bytes(FakeKernel(protocol=0x0209)))], "old-bz"


@bad(1)
def case_kernel_larger_than_region(w):
    return ["-p", put(w, "huge-bz", bzimage_bytes(FakeKernel(init_size=0x20000000)))], "kernel"


@bad(255)
def case_missing_initrd(w):
    return ["-p", w["kernel"], "--initrd", str(w["dir"] / "no-initrd")], "no-initrd"


@bad(1)
def case_initrd_is_directory(w):
    os.mkdir(w["dir"] / "initrd.d")
    return ["-p", w["kernel"], f"--initrd={w['dir'] / 'initrd.d'}"], "initrd.d"


@bad(255)
def case_cmdline_too_long(w):
    return ["-p", w["kernel"], "--append=" + "x" * 3000], "command line"


@bad(1)
def case_no_crashkernel(w):
    path = os.path.join(w["machine"], "proc/iomem")
    text = "".join(l for l in open(path) if "Crash kernel" not in l)
    rewrite(w, "proc/iomem", text)
    return ["-p", w["kernel"]], "iomem"


@bad(1)  # kexec-tools dies (exit 1) on a machine file it cannot parse (oracle-checked)
def case_malformed_iomem(w):
    path = os.path.join(w["machine"], "proc/iomem")
    rewrite(w, "proc/iomem", open(path).read() + "zzzz-yyyy : System RAM\n")
    return ["-p", w["kernel"]], "iomem"


@bad(1)  # kexec-tools dies (exit 1) on a machine file it cannot parse (oracle-checked)
def case_unreadable_crash_notes(w):
    path = os.path.join(w["machine"], "sys/devices/system/cpu/cpu0/crash_notes")
    os.remove(path)
    os.mkdir(path)  # a directory where a file should be: unreadable even for root
    return ["-p", w["kernel"]], "crash_notes"


@bad(1)  # kexec-tools dies (exit 1) on a machine file it cannot parse (oracle-checked)
def case_malformed_crash_notes(w):
    rewrite(w, "sys/devices/system/cpu/cpu0/crash_notes", "not-an-address\n")
    return ["-p", w["kernel"]], "crash_notes"


@bad(1)  # kexec-tools dies (exit 1) on a machine file it cannot parse (oracle-checked)
def case_malformed_vmcoreinfo(w):
    rewrite(w, "sys/kernel/vmcoreinfo", "nonsense\n")
    return ["-p", w["kernel"]], "vmcoreinfo"


@bad(255)
def case_missing_kcore(w):
    os.remove(os.path.join(w["machine"], "proc/kcore"))
    return ["-p", w["kernel"]], "kcore"


@bad(255)
def case_missing_sysroot(w):
    return ["-p", w["kernel"], "--sysroot", str(w["dir"] / "no-machine")], "no-machine"


@bad(1)   # kexec-tools 2.0.25: "locate_hole failed", die() (checked with the oracle)
def case_mem_window_outside_region(w):
    return ["-p", w["kernel"], "--mem-min=0x80000000"], "crash region"


@bad(255)
def case_unknown_type(w):
    return ["-p", w["kernel"], "--type=multiboot-x86"], "multiboot-x86"


@bad(255)
def case_no_kernel(w):
    return ["-p"], "kernel"
