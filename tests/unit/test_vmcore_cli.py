"""`pykexec vmcore info|dmesg` from the command line: the facts `info` reports on a
synthetic dump, and one line on stderr with exit 1 for each kind of hostile file."""

from __future__ import annotations

import json
import struct

import pytest

from tests.unit._vmcore import ET_EXEC, Mem, core, note, prstatus_x86_64, vmcoreinfo
from tests.unit.test_vmcore_dmesg import (DATA_BITS, PrbBuilder, align, prb_info, run_cli,
                                          standard_prb)

PANIC = b"Kernel panic - not syncing: synthetic crash"


def panicking_dump(tmp_path, caller=42, extra_info=()):
    b = standard_prb(8)
    size = 1 << DATA_BITS
    b.ids(8, 15)
    b.record(15, 2, 3 * size + 160, 3 * size + 160 + align(8 + len(PANIC), 8), ts=9_000_000_000,
             text=PANIC, data_at=160, caller=caller, level=0)
    cpus = [note("CORE", 1, prstatus_x86_64(0, {"rip": 0xFFFFFFFF81000010, "rsp": 0x1000})),
            note("CORE", 1, prstatus_x86_64(42, {"rip": 0xFFFFFFFF81000020, "rsp": 0x2000,
                                                 "rax": 0xABC}))]
    info = prb_info(8) + [("CRASHTIME", "1795675538"), *extra_info]
    return b.file(tmp_path, info=info, notes_before=cpus)


def test_info_json_facts(tmp_path):
    p = run_cli("info", "--json", str(panicking_dump(tmp_path)))
    assert p.returncode == 0, p.stderr
    facts = json.loads(p.stdout)
    assert facts["release"] == "6.1.0-synthetic" and facts["elf_class"] == 64
    assert facts["machine"] == "x86_64"
    assert facts["panic_line"] == "[    9.000000] " + PANIC.decode()
    assert facts["panic_cpu"] == 1 and "T42" in facts["panic_cpu_found_by"]
    assert facts["crash_time_utc"] == "2026-11-26 06:45:38 UTC"  # date -u -d @1795675538
    assert [c["pid"] for c in facts["cpus"]] == [0, 42]
    assert facts["cpus"][1]["registers"]["rax"] == 0xABC
    assert facts["cpus"][1]["pc"] == 0xFFFFFFFF81000020
    assert facts["memory"]["total"] == 0x10000 and len(facts["memory"]["loads"]) == 1
    assert facts["vmcoreinfo"]["SIZE(printk_info)"] == "88"
    assert facts["complete"] is True and facts["problems"] == []
    assert facts["last_lines"][-1].endswith(PANIC.decode())
    assert facts["log_format"] == "prb" and facts["log_records"] == 6


def test_info_cpu_from_caller_cpu_and_table(tmp_path):
    p = run_cli("info", str(panicking_dump(tmp_path, caller=0x80000000)))   # C0
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert "panicked CPU   0 (panic record's printk caller C0)" in out
    assert "CPU 0: pid 0, pc 0xffffffff81000010, sp 0x1000  <- panicked" in out
    assert "release        6.1.0-synthetic" in out and "complete       yes" in out


# --- hostile files -----------------------------------------------------------------------

def _good(tmp_path):
    return panicking_dump(tmp_path).read_bytes()


def not_elf(tmp_path):
    return b"This is a text file, not a vmcore.\n" * 3, "not an ELF file"


def truncated(tmp_path):
    return _good(tmp_path)[:30], "truncated"


def wrong_class(tmp_path):
    data = bytearray(_good(tmp_path))
    data[4] = 7
    return bytes(data), "unknown ELF class 7"


def et_exec(tmp_path):
    mem = Mem()
    mem.add(0, 0x1000)
    return core(mem, [], e_type=ET_EXEC), "ELF type ET_EXEC, not a core file"


def no_vmcoreinfo(tmp_path):
    mem = Mem()
    mem.add(0, 0x1000)
    return core(mem, [note("CORE", 1, prstatus_x86_64(0, {}))]), "no VMCOREINFO note"


def load_past_eof(tmp_path):
    # the RAM PT_LOAD (0x10000 bytes) keeps its first 0x3000: the text ring at 0x4000 is
    # gone. (dmesg fails only when the log is in the missing part; info always says so.)
    data = _good(tmp_path)
    return data[:len(data) - 0xD000], "truncated"


def lying_note(tmp_path):
    mem = Mem()
    mem.add(0, 0x1000)
    bad = bytearray(note("VMCOREINFO", 0, vmcoreinfo([("OSRELEASE", "x")])))
    struct.pack_into("<I", bad, 4, 0x7FFFFFF0)
    return core(mem, [bytes(bad)]), "past the end of its PT_NOTE"


def prb_loop(tmp_path):
    b = standard_prb(8)
    b.ids(0, 1 << 50)
    return b.file(tmp_path).read_bytes(), "more than its 8 descriptors"


HOSTILE = [not_elf, truncated, wrong_class, et_exec, no_vmcoreinfo, load_past_eof,
           lying_note, prb_loop]


@pytest.mark.parametrize("command", ["dmesg", "info"])
@pytest.mark.parametrize("make", HOSTILE, ids=lambda f: f.__name__)
def test_hostile_dump_one_line(tmp_path, make, command):
    data, problem = make(tmp_path)
    path = tmp_path / f"hostile-{make.__name__}"
    path.write_bytes(data)
    p = run_cli(command, str(path))
    err = p.stderr.decode()
    assert p.returncode == 1, (p.returncode, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"pykexec vmcore {command}: {path}: "), err
    assert problem in err, err


def test_missing_file(tmp_path):
    p = run_cli("dmesg", str(tmp_path / "nope"))
    assert p.returncode == 1
    assert p.stderr.decode() == f"pykexec vmcore dmesg: {tmp_path / 'nope'}: No such file or directory\n"


NO_NUMPY = """
import runpy, sys
class NoNumpy:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            raise ImportError("no numpy in this Python")
sys.meta_path.insert(0, NoNumpy())
sys.argv = ["pykexec"] + sys.argv[1:]
runpy.run_module("pykexec", run_name="__main__")
"""


def test_dmesg_and_info_run_where_python_has_no_numpy(tmp_path):
    """A capture kernel's Python may lack numpy (the i386 bed's has none): only `save` needs it."""
    import os
    import subprocess
    import sys
    path = panicking_dump(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    for args in (["dmesg", str(path)], ["info", str(path)]):
        p = subprocess.run([sys.executable, "-c", NO_NUMPY, "vmcore", *args], capture_output=True,
                           env=env, timeout=60)
        assert p.returncode == 0 and PANIC in p.stdout, p.stderr
    p = subprocess.run([sys.executable, "-c", NO_NUMPY, "vmcore", "save", str(tmp_path / "out"),
                        str(path)], capture_output=True, env=env, timeout=60)
    assert p.returncode == 1 and b"numpy" in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
