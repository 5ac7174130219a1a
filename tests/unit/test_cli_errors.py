"""The command line's top level: a closed stdout, errors that reach it, plan folders.

- `pykexec ... | head -c 100`: when the reader goes away, pykexec stops without a word and
  dies of SIGPIPE, as kexec-tools (C, default SIGPIPE) and head/cat do.
- every error type pykexec defines is a one-line refusal; only Python's own exception types
  from a bug are an "internal error"; --debug shows the traceback.
- save_plan writes all or nothing and replaces an older plan without leaving its files.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys

import pytest

import pykexec.cli as cli
from pykexec.cli import run
from pykexec.errors import describe
from pykexec.core.plan import Plan, PlanSaveError, Segment, load_plan, save_plan
from tests.bed.fakekernel import FakeKernel, make_bzimage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SNAPSHOT = os.path.join(ROOT, "tests", "snapshots", "qemu-x86_64-1g-2cpu")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    return make_bzimage(str(tmp_path_factory.mktemp("k") / "bzImage"), FakeKernel())


def _closed_reader(args) -> subprocess.CompletedProcess:
    """Run `python -m pykexec ARGS` with a stdout pipe whose reader has already gone."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    read_end, write_end = os.pipe()
    os.close(read_end)              # nobody will ever read: the first write gets EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "pykexec", *args], stdout=write_end,
                              stderr=subprocess.PIPE, env=env, timeout=120)
    finally:
        os.close(write_end)
    return proc


@pytest.mark.parametrize("args", [
    ["-p", "K", "--dry-run"],
    ["-c", "-p", "K", "--dry-run", "--json"],
    ["-c", "-p", "K", "--dry-run", "--initrd=K"],
    ["inspect", "K"],
    ["--help"],
    ["-v"],
], ids=["dry-run", "json", "dry-run-c", "inspect", "help", "version"])
def test_a_closed_stdout_ends_quietly_by_sigpipe(kernel, args):
    args = [kernel if a == "K" else a.replace("=K", "=" + kernel) for a in args]
    if "-p" in args:
        args += ["--sysroot", SNAPSHOT]
    proc = _closed_reader(args)
    assert proc.stderr == b""
    assert proc.returncode == -signal.SIGPIPE


def test_status_has_no_output_to_lose(tmp_path):
    (tmp_path / "sys" / "kernel").mkdir(parents=True)
    (tmp_path / "sys" / "kernel" / "kexec_crash_loaded").write_text("1\n")
    proc = _closed_reader(["-S", "--sysroot", str(tmp_path)])
    assert (proc.returncode, proc.stderr) == (1, b"")


class _ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_in_process_a_closed_stdout_returns_141(kernel, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    try:
        assert run(["-p", kernel, "--sysroot", SNAPSHOT, "--dry-run"]) == 141
        assert run(["inspect", kernel]) == 141
    finally:
        cli._PIPE["closed"] = False
    assert capsys.readouterr().err == ""


# --- errors at the top ----------------------------------------------------------------------

def test_describe_knows_every_pykexec_error_type():
    from pykexec.purgatory.build import PurgatoryBuildError
    from pykexec.purgatory.elfrel import SymbolError
    from pykexec.machine.snapshot import SnapshotError
    assert describe(PurgatoryBuildError("gcc: not found; install gcc to build purgatory")) == \
        "gcc: not found; install gcc to build purgatory"
    assert describe(SnapshotError("x: cannot write")) == "x: cannot write"
    assert describe(SymbolError("purgatory.o: no symbol 'stack'")) == \
        "purgatory.o: no symbol 'stack'"          # a KeyError subclass, not quoted
    assert describe(ValueError("bad range")) is None
    assert describe(KeyError("x")) is None
    assert describe(OSError(errno.ENOSPC, "No space left on device", "/plan")) == \
        "/plan: No space left on device"
    assert describe(OSError(errno.EIO, "Input/output error")) == "Input/output error"
    assert describe(MemoryError()).startswith("out of memory")


def test_a_missing_gcc_is_a_refusal_not_an_internal_error(kernel, monkeypatch, capsys):
    from pykexec.purgatory.build import PurgatoryBuildError

    def no_gcc(request, machine):
        raise PurgatoryBuildError("cannot build the purgatory: gcc not found\n(install gcc)")
    monkeypatch.setattr(cli, "_plan", no_gcc)
    assert run(["-c", "-p", kernel, "--sysroot", SNAPSHOT, "--dry-run"]) == 255
    err = capsys.readouterr().err
    assert err == "pykexec: cannot build the purgatory: gcc not found\\n(install gcc)\n"


def test_a_bug_is_one_line_and_debug_shows_it(kernel, monkeypatch, capsys):
    def bug(request, machine):
        raise ValueError("bad range\n[1, 0)")
    monkeypatch.setattr(cli, "_plan", bug)
    argv = ["-c", "-p", kernel, "--sysroot", SNAPSHOT, "--dry-run"]
    assert run(argv) == 255
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ValueError: bad range\\n[1, 0)" in err
    with pytest.raises(ValueError):
        run(argv + ["-d"])


def test_an_interrupt_is_one_line_and_130(kernel, monkeypatch, capsys):
    def interrupted(request, machine):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_plan", interrupted)
    assert run(["-c", "-p", kernel, "--sysroot", SNAPSHOT, "--dry-run"]) == 130
    assert capsys.readouterr().err == "pykexec: interrupted\n"


def test_click_usage_errors_are_one_line_and_exit_1(capsys):
    assert run(["inspect"]) == 1
    assert run(["inspect", "a", "b"]) == 1
    assert run(["snapshot", "--no-such"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("pykexec: ") for line in err)


# --- plan folders ---------------------------------------------------------------------------

def _plan(n: int) -> Plan:
    return Plan("x86_64", "kexec_load", 1, 0x1000, "console=ttyS0",
                tuple(Segment(0x1000 * (2 * i + 1), 0x1000, bytes([i]) * 16, "unknown")
                      for i in range(n)))


def test_save_plan_replaces_an_older_plan_without_its_files(tmp_path):
    folder = tmp_path / "plan"
    save_plan(_plan(6), str(folder))
    save_plan(_plan(2), str(folder))
    assert sorted(os.listdir(folder)) == ["plan.json", "segment-00.bin", "segment-01.bin"]
    assert len(load_plan(str(folder)).segments) == 2
    assert sorted(os.listdir(tmp_path)) == ["plan"]        # no temporary folders left


def test_save_plan_refuses_a_folder_with_other_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(PlanSaveError) as err:
        save_plan(_plan(1), str(folder))
    assert "notes.txt" in str(err.value) and str(folder) in describe(err.value)
    assert os.listdir(folder) == ["notes.txt"]


def test_save_plan_that_fails_leaves_the_old_plan_and_no_half_folder(tmp_path, monkeypatch):
    import pykexec.core.plan as plan_module
    folder = tmp_path / "plan"
    save_plan(_plan(3), str(folder))
    before = {n: (folder / n).read_bytes() for n in os.listdir(folder)}
    real_open = open
    written = []

    def full_disk(path, mode="r", *a, **kw):
        if "w" in mode and ".tmp" in str(path):
            written.append(path)
            if len(written) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *a, **kw)
    monkeypatch.setattr(plan_module, "open", full_disk, raising=False)
    with pytest.raises(PlanSaveError) as err:
        save_plan(_plan(5), str(folder))
    assert "No space left on device" in str(err.value)
    assert {n: (folder / n).read_bytes() for n in os.listdir(folder)} == before
    assert sorted(os.listdir(tmp_path)) == ["plan"]


def test_load_plan_reads_a_segment_only_up_to_its_bufsz(tmp_path):
    folder = tmp_path / "plan"
    save_plan(_plan(1), str(folder))
    with open(folder / "segment-00.bin", "ab") as f:
        f.truncate(1 << 30)           # sparse: a 1 GiB segment file for a 16-byte segment
    from pykexec.core.plan import PlanFormatError
    with pytest.raises(PlanFormatError, match="segment-00.bin: 1073741824 bytes"):
        load_plan(str(folder))


# --- option values --------------------------------------------------------------------------

ULONG_MAX = (1 << 64) - 1


@pytest.mark.parametrize("text,value", [
    ("0x1000", 0x1000), ("4096", 4096), ("010", 8), ("0", 0), ("", 0), (" 0x10", 0x10),
    ("\t7", 7), ("+5", 5), ("-1", ULONG_MAX), ("-0x10", ULONG_MAX - 0xF),
    ("0x1ffffffffffffffff", ULONG_MAX), ("99999999999999999999999", ULONG_MAX),
    ("-99999999999999999999999", ULONG_MAX), ("0XfF", 0xFF),
    ("12q", None), ("0x", None), ("08", None), ("5 ", None), ("+", None), ("-", None),
    ("  ", None), ("0x1g", None), ("- 5", None), ("1e3", None),
])
def test_mem_min_is_read_as_strtoul(text, value):
    """C strtoul(text, &end, 0) with kexec-tools' check that nothing is left after it."""
    from pykexec.request import UsageError, parse_args
    if value is None:
        with pytest.raises(UsageError, match="--mem-min"):
            parse_args(["-p", "K", f"--mem-min={text}"])
    else:
        assert parse_args(["-p", "K", f"--mem-min={text}"]).mem_min == value
        assert parse_args(["-p", "K", f"--mem-max={text}"]).mem_max == value


def test_a_layer_may_give_its_refusal_kexec_tools_status(kernel, monkeypatch, capsys):
    from pykexec.errors import LoadError

    class NoRoom(LoadError):
        exit_status = 1

    def no_room(request, machine):
        raise NoRoom("bzImage: no room for the kernel in [0x2f000000, 0x3f000000)")
    monkeypatch.setattr(cli, "_plan", no_room)
    assert run(["-c", "-p", kernel, "--sysroot", SNAPSHOT, "--dry-run"]) == 1
    assert "no room" in capsys.readouterr().err


def test_save_plan_into_the_current_folder_replaces_the_older_plan(tmp_path, monkeypatch):
    """The current directory cannot be renamed: the older plan's own files are replaced."""
    work = tmp_path / "here"
    work.mkdir()
    monkeypatch.chdir(work)
    save_plan(_plan(4), ".")
    save_plan(_plan(1), ".")
    assert sorted(os.listdir(work)) == ["plan.json", "segment-00.bin"]
    assert len(load_plan(".").segments) == 1
    assert sorted(os.listdir(tmp_path)) == ["here"]


@pytest.mark.parametrize("name", ["no\nsuch", "tab\there", "esc\x1b[31m", "cr\rhere", "ls\u2028x"])
def test_a_name_with_control_characters_stays_one_line(tmp_path, capsys, name):
    """The one line escapes what would break it or the terminal, wherever the name sits."""
    missing = str(tmp_path / name)
    # kexec-tools' -c reads the kernel with slurp_file, which dies: exit 1
    assert run(["-c", "-p", missing, "--sysroot", SNAPSHOT, "--dry-run"]) == 1
    assert run(["inspect", missing]) == 1
    assert run(["-c", "-p", missing, "--sysroot", missing, "--dry-run"]) == 255
    lines = capsys.readouterr().err.split("\n")
    assert len(lines) == 4 and lines[3] == ""
    shown = name.encode("unicode_escape").decode()
    for line in lines[:3]:
        assert shown in line and not any(c in line for c in "\r\t\x1b\u2028"), line


class _FullDisk(io.StringIO):
    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_standard_output_is_named(kernel, monkeypatch, capsys):
    """`pykexec ... > /dev/full`: the one line says which file could not be written."""
    monkeypatch.setattr(sys, "stdout", _FullDisk())
    code = run(["-c", "-p", kernel, "--sysroot", SNAPSHOT, "--dry-run"])
    code_inspect = run(["inspect", kernel])
    err = capsys.readouterr().err
    assert (code, code_inspect) == (255, 255)
    assert err == "pykexec: standard output: No space left on device\n" * 2
