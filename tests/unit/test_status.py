"""`-S` (--status): the exit status for every content of /sys/kernel/kexec_crash_loaded.

kexec-tools (kexec.c: kexec_loaded) reads the file with fgets() into a 3-byte buffer (at
most two bytes, up to a newline) and returns strtol(buffer, 10); no file, an empty one, or
no digits at the start give -1. The process exits with that int, modulo 256. The table
below is worked out from that C code by hand; tests/differential/test_status_oracle.py runs
the same table through Debian's kexec.
"""

from __future__ import annotations

import os
import shutil

import pytest

from pykexec.cli import run

SNAPSHOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "snapshots", "qemu-x86_64-1g-2cpu")

# (name, file content or a marker, exit status)
STATUS_TABLE = [
    ("zero", b"0\n", 0),
    ("one", b"1\n", 1),
    ("zero-no-newline", b"0", 0),
    ("one-no-newline", b"1", 1),
    ("two", b"2\n", 2),
    ("twelve", b"12\n", 12),
    ("three-digits-read-two", b"123\n", 12),
    ("ninety-nine", b"99", 99),
    ("minus-one", b"-1\n", 255),
    ("minus-five", b"-5", 251),
    ("plus-one", b"+1\n", 1),
    ("blank-then-one", b" 1\n", 1),
    ("two-blanks-then-one", b"  1\n", 255),
    ("newline-first", b"\n1\n", 255),
    ("one-then-junk", b"1x\n", 1),
    ("junk", b"x\n", 255),
    ("sign-only", b"-\n", 255),
    ("empty", b"", 255),
    ("not-utf8", b"\xff\xfe1", 255),
    ("nul-then-one", b"\x001", 255),
    ("missing", None, 255),
    ("directory", "dir", 255),
]


def machine_with_flag(tmp_path, content, name="kexec_crash_loaded", whole=False) -> str:
    """A sysroot whose flag file holds `content` (-S reads nothing else; `whole` copies the
    full snapshot, for the oracle)."""
    machine = tmp_path / "machine"
    if whole:
        shutil.copytree(SNAPSHOT, machine, symlinks=True)
    else:
        (machine / "sys" / "kernel").mkdir(parents=True)
    flag = machine / "sys" / "kernel" / name
    if flag.exists() or flag.is_symlink():
        flag.unlink()
    if content == "dir":
        flag.mkdir()
    elif content is not None:
        flag.write_bytes(content)
    return str(machine)


@pytest.mark.parametrize("name,content,status", STATUS_TABLE, ids=[t[0] for t in STATUS_TABLE])
def test_status_exit_for_each_content(tmp_path, capsys, name, content, status):
    machine = machine_with_flag(tmp_path, content)
    assert run(["-S", "--sysroot", machine], program="kexec") == status
    assert capsys.readouterr().err == ""


def test_status_l_reads_kexec_loaded(tmp_path):
    machine = machine_with_flag(tmp_path, b"7\n", "kexec_loaded")
    assert run(["-S", "-l", "--sysroot", machine]) == 7


def test_status_never_blocks_on_a_fifo(tmp_path):
    """kexec-tools would wait for a writer; pykexec reads a FIFO as an empty file."""
    machine = machine_with_flag(tmp_path, None)
    os.mkfifo(os.path.join(machine, "sys/kernel/kexec_crash_loaded"))
    assert run(["-S", "--sysroot", machine]) == 255


@pytest.mark.parametrize("old,new,option,status", [
    (None, b"1\n", [], 1),                 # only the newer sys/kernel/kexec/crash_loaded
    (None, b"0\n", [], 0),
    (None, b"12\n", [], 12),               # the same kexec-tools rule on the newer file
    (b"0\n", b"1\n", [], 0),               # the old file, where it exists, is the answer
    (None, None, [], 255),
    (None, b"7\n", ["-l"], 7),             # -l: sys/kernel/kexec/loaded
])
def test_status_falls_back_to_the_kexec_folder(tmp_path, old, new, option, status):
    """Kernels from 2025 on also show the flags as sys/kernel/kexec/{loaded,crash_loaded};
    where only those exist, -S reads them (as the machine reader does for its facts)."""
    name = "kexec_loaded" if option else "kexec_crash_loaded"
    machine = machine_with_flag(tmp_path, old, name)
    if new is not None:
        os.mkdir(os.path.join(machine, "sys/kernel/kexec"))
        with open(os.path.join(machine, "sys/kernel/kexec", name[len("kexec_"):]), "wb") as f:
            f.write(new)
    assert run(["-S", *option, "--sysroot", machine], program="kexec") == status


def test_host_reads_loaded_lockdown_and_disabled_through_the_machine(tmp_path):
    """The host's diagnosis reads the same files, with the same fallback."""
    from pykexec.host import syscall
    machine = machine_with_flag(tmp_path, None)
    os.makedirs(os.path.join(machine, "sys/kernel/kexec"))
    os.makedirs(os.path.join(machine, "sys/kernel/security"))
    os.makedirs(os.path.join(machine, "proc/sys/kernel"))
    for rel, text in (("sys/kernel/kexec/crash_loaded", "1\n"), ("sys/kernel/kexec_loaded", "0\n"),
                      ("sys/kernel/security/lockdown", "none [integrity] confidentiality\n"),
                      ("proc/sys/kernel/kexec_load_disabled", "1\n")):
        with open(os.path.join(machine, rel), "w") as f:
            f.write(text)
    host = syscall.Host(machine)
    assert host.loaded(True) == 1 and host.loaded(False) == 0
    assert syscall.lockdown_mode(machine) == "integrity"
    assert syscall._load_disabled(machine) is True
    os.remove(os.path.join(machine, "sys/kernel/security/lockdown"))
    os.remove(os.path.join(machine, "proc/sys/kernel/kexec_load_disabled"))
    assert syscall.lockdown_mode(machine) is None and syscall._load_disabled(machine) is False


@pytest.mark.parametrize("files, words", [
    ({}, "crash hotplug: cpu not in this kernel, memory not in this kernel"),
    ({"cpu": b"1\n", "memory": b"1\n"}, "crash hotplug: cpu on, memory on"),
    ({"cpu": b"0\n", "memory": b"1\n"}, "crash hotplug: cpu off, memory on"),
    ({"cpu": b"yes\n"}, "crash hotplug: unreadable ("),
])
def test_status_with_debug_says_whether_crash_hotplug_is_on(tmp_path, capsys, files, words):
    """`-S -d` keeps the exit status and says on stderr what the kernel's crash_hotplug files
    say (whether a hotplug event needs a reload); `-S` alone prints nothing."""
    root = machine_with_flag(tmp_path, b"1\n", whole=True)
    for kind, content in files.items():
        path = os.path.join(root, "sys/devices/system", kind, "crash_hotplug")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
    assert run(["-S", "-d", "--sysroot", root], program="kexec") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kexec: kexec_crash_loaded: 1; ") and words in err[0]
    assert run(["-S", "--sysroot", root], program="kexec") == 1
    assert capsys.readouterr() == ("", "")
    assert run(["-S", "-l", "-d", "--sysroot", root], program="kexec") in (0, 1, 255)
    assert "crash hotplug" not in capsys.readouterr().err
