"""Fault injection: a failed load leaves the loaded capture kernel in place wherever the
kernel does, and exits as kexec-tools does.

The machine starts with a capture kernel loaded (the recorder's state). Each test makes
one thing fail: a syscall errno (syscall.Faults; the recorder then drops the crash image
exactly when the kernel would, see syscall.CRASH_IMAGE_KEPT_ERRNOS), a kernel or initrd
that disappears or changes between the plan and the load, or a full disk under
--save-plan. The expected outcome is written from the kernel's code, not from pykexec's:
kernel/kexec.c do_kexec_load and kernel/kexec_file.c kexec_file_load free the loaded crash
image after kexec_load_check() and the kexec lock, before they read the new image.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from pykexec.arch.x86.abi import KEXEC_ARCH_X86_64
import pykexec.host.syscall as kexec_syscall
from pykexec.cli import run
from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes, make_initrd
from tests.conftest import require, require_root

APPEND = "console=ttyS0 irqpoll"
X86_64 = KEXEC_ARCH_X86_64

# Refusals that come before the kernel touches the loaded crash image (kexec_load_check:
# capability and load limits, IMA/LSM; the kexec lock; no such syscall).
KERNEL_KEEPS = {errno.EPERM, errno.EACCES, errno.EBUSY, errno.ENOSYS}
ERRNOS = (errno.EPERM, errno.EACCES, errno.EBUSY, errno.EINVAL, errno.ENOMEM,
          errno.EADDRNOTAVAIL, errno.ENOEXEC, errno.EKEYREJECTED, errno.ENOKEY, errno.EBADMSG,
          errno.ENOSYS, errno.EFBIG, errno.ETXTBSY, errno.ENOTSUP)
# kexec-tools: any other kexec_file_load errno is final (exit 255); these four make -a
# fall back to kexec_load and make -s answer EFALLBACK (253).
FALLBACK = {errno.ENOSYS, errno.EINVAL, errno.ENOEXEC, errno.ENOTSUP}


@pytest.fixture(scope="module")
def good_machine(tmp_path_factory):
    d = tmp_path_factory.mktemp("machine") / "m"
    synthetic.make_machine(str(d), synthetic.PRESETS["qemu_like_1g"])
    return str(d)


class LiveRecorder(kexec_syscall.Recorder):
    live = True


@pytest.fixture
def world(tmp_path, good_machine, monkeypatch):
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(bzimage_bytes(FakeKernel()))
    initrd = make_initrd(str(tmp_path / "initrd.img"), 64 * 1024)
    recorder = LiveRecorder(state={False: 0, True: 1})   # a capture kernel is loaded
    monkeypatch.setattr(kexec_syscall, "arch_flag", lambda: X86_64)
    monkeypatch.setattr("pykexec.cli._LIVE_ROOTS", ("/", "", good_machine))
    monkeypatch.setattr("pykexec.cli._may_boot", lambda: True)

    def kexec(argv, faults=None):
        layer = kexec_syscall.Faults(recorder, faults or {})
        with kexec_syscall.use(layer):
            return run(list(argv) + ["--sysroot", good_machine, "--append=" + APPEND])

    return {"dir": tmp_path, "kernel": str(kernel), "initrd": initrd, "rec": recorder,
            "kexec": kexec, "machine": good_machine}


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def loads(rec) -> list:
    return [(c[0], "unload" if (c[0] == "kexec_load" and not c[2]) or
             (c[0] == "kexec_file_load" and c[1] is None) else "load") for c in rec.calls]


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("unload", [False, True], ids=["-p", "-up"])
def test_kexec_load_refused(world, capsys, err, unload):
    code = world["kexec"](["-c", "-up" if unload else "-p", world["kernel"]],
                          {"kexec_load": err})
    line = one_line(capsys)
    assert code == 255
    assert "kexec_load failed" in line
    kept = err in KERNEL_KEEPS
    assert world["rec"].state[True] == (1 if kept else 0)
    assert ("no capture kernel is loaded now" in line) == (not kept)
    assert loads(world["rec"]) == []          # -up made no separate unload first


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("unload", [False, True], ids=["-p", "-up"])
def test_kexec_file_load_refused_with_s(world, capsys, err, unload):
    code = world["kexec"](["-s", "-up" if unload else "-p", world["kernel"]],
                          {"kexec_file_load": err})
    err_text = capsys.readouterr().err
    assert code == (253 if err in FALLBACK else 255), err_text
    assert world["rec"].state[True] == (1 if err in KERNEL_KEEPS else 0)
    assert loads(world["rec"]) == []


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
def test_auto_mode_falls_back_or_stops(world, capsys, err):
    """-a: a fallback errno goes on to kexec_load, which loads; any other stops with 255."""
    code = world["kexec"](["-up", world["kernel"]], {"kexec_file_load": err})
    capsys.readouterr()
    if err in FALLBACK:
        assert code == 0 and world["rec"].state[True] == 1
        assert loads(world["rec"]) == [("kexec_load", "load")]
    else:
        assert code == 255
        assert world["rec"].state[True] == (1 if err in KERNEL_KEEPS else 0)
        assert loads(world["rec"]) == []


def test_a_refused_load_after_a_fallback_keeps_what_the_kernel_keeps(world, capsys):
    code = world["kexec"](["-p", world["kernel"]],
                          {"kexec_file_load": errno.ENOSYS, "kexec_load": errno.EBUSY})
    assert code == 255 and "EBUSY" in one_line(capsys)
    assert world["rec"].state[True] == 1


@pytest.mark.parametrize("what", ["kernel", "initrd"])
@pytest.mark.parametrize("mode", ["-c", "-s", "-a"])
def test_file_removed_between_plan_and_load(world, capsys, monkeypatch, what, mode):
    """The kernel or initrd disappears after pykexec read it and before the syscall.
    -c loads the planned bytes; -s the files it had opened; -a (which opens the files for
    kexec_file_load after planning) stops with one line. The capture kernel stays."""
    import contextlib

    import pykexec.cli as cli
    import pykexec.host.fileload as fileload
    contents = {p: open(p, "rb").read() for p in (world["kernel"], world["initrd"])}
    real_plan, real_open = cli._plan, fileload.FileLoad.open

    def plan_then_remove(request, machine):
        plan = real_plan(request, machine)
        os.remove(world[what])
        return plan

    @contextlib.contextmanager
    def open_then_remove(self):
        with real_open(self) as fds:
            os.remove(world[what])
            yield fds

    if mode == "-s":
        monkeypatch.setattr(fileload.FileLoad, "open", open_then_remove)
    else:
        monkeypatch.setattr(cli, "_plan", plan_then_remove)
    faults = {"kexec_file_load": errno.ENOSYS} if mode == "-a" else {}
    code = world["kexec"]([mode, "-up", world["kernel"], f"--initrd={world['initrd']}"], faults)
    assert not os.path.exists(world[what])
    assert world["rec"].state[True] == 1
    if mode == "-a":
        assert code == 255 and os.path.basename(world[what]) in one_line(capsys)
        assert world["rec"].calls == []
        return
    assert code == 0, capsys.readouterr().err
    (call,) = world["rec"].calls
    if mode == "-c":
        datas = [seg[0] for seg in call[2]]
        assert contents[world["initrd"]] in datas
        protected_mode = contents[world["kernel"]][0x4000:0x5000]
        assert any(protected_mode in d for d in datas)
    else:
        assert call[1] == contents[world["kernel"]] and call[2] == contents[world["initrd"]]


def test_kernel_missing_before_the_load_leaves_everything(world, capsys):
    os.remove(world["kernel"])
    code = world["kexec"](["-c", "-up", world["kernel"]])
    assert code == 1 and "bzImage" in one_line(capsys)   # -c: slurp_file dies, exit 1
    assert world["rec"].calls == [] and world["rec"].state[True] == 1


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs: a plan does not fit."""
    require_root()
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    require(done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("mode", ["-c", "-s", "-a"])
def test_full_disk_under_save_plan(world, capsys, tiny_disk, mode):
    old = tiny_disk / "plan"
    old.mkdir()
    (old / "plan.json").write_text("{}\n")
    before = sorted(os.listdir(tiny_disk))
    faults = {"kexec_file_load": errno.ENOSYS} if mode == "-a" else {}
    code = world["kexec"]([mode, "-up", world["kernel"], f"--initrd={world['initrd']}",
                           f"--save-plan={old}"], faults)
    line = one_line(capsys)
    assert code == 255
    assert str(old) in line and "No space left on device" in line
    assert sorted(os.listdir(tiny_disk)) == before           # no half-written folder
    assert os.listdir(old) == ["plan.json"] and (old / "plan.json").read_text() == "{}\n"
    if mode == "-a":
        # -a saves the plan of the path that worked, after the load
        assert world["rec"].state[True] == 1 and loads(world["rec"]) == [("kexec_load", "load")]
        assert "the kernel is loaded" in line
    else:
        assert world["rec"].calls == [] and world["rec"].state[True] == 1


def test_auto_mode_needs_the_kexec_load_plan_only_if_it_falls_back(world, capsys):
    """kexec_file_load has no --mem-min window: -a loads with it, as kexec-tools HEAD; the
    window's refusal (exit 1) comes only when it would fall back to kexec_load."""
    code = world["kexec"](["-p", world["kernel"], "--mem-min=-1"])
    assert code == 0 and loads(world["rec"]) == [("kexec_file_load", "load")]
    code = world["kexec"](["-p", world["kernel"], "--mem-min=-1"],
                          {"kexec_file_load": errno.ENOSYS})
    assert code == 1 and "--mem-min=0xffffffffffffffff" in one_line(capsys)
    assert loads(world["rec"]) == [("kexec_file_load", "load")]     # nothing more
