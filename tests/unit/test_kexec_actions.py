"""What `kexec ARGV` does, in order, with the host replaced by a recorder.

Syscall choice and fallback (-a, -s, -c) under a fault layer that plays kernels without
kexec_file_load, with lockdown or with signature checks; -l/-e/-f/-u and plain `kexec K`
as sequences of host actions (load, unload, sync, ifdown, reboot, shutdown); the fatal
refusals (exit 1) and the one-line diagnoses.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest

from pykexec.arch.x86.abi import KEXEC_ARCH_X86_64
from pykexec.host import syscall
from pykexec.cli import run
from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes, make_initrd

X86_64 = KEXEC_ARCH_X86_64
APPEND = "console=ttyS0"


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    d = tmp_path_factory.mktemp("machines")
    out = {}
    for name in ("qemu_like_1g", "no_crash_region"):
        if name in synthetic.PRESETS:
            synthetic.make_machine(str(d / name), synthetic.PRESETS[name])
            out[name] = str(d / name)
    if "no_crash_region" not in out:
        # the 1 GiB machine without its crashkernel reservation
        src = out["qemu_like_1g"]
        dst = str(d / "no_crash_region")
        shutil.copytree(src, dst)
        iomem = os.path.join(dst, "proc/iomem")
        with open(iomem) as f:
            lines = [line for line in f if "Crash kernel" not in line]
        with open(iomem, "w") as f:
            f.writelines(lines)
        out["no_crash_region"] = dst
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    kernel = d / "bzImage"
    kernel.write_bytes(bzimage_bytes(FakeKernel()))
    return {"kernel": str(kernel), "initrd": make_initrd(str(d / "initrd.img"), 64 * 1024)}


def kexec(argv, machine, faults=None, recorder=None):
    """Run pykexec in-process on `machine`; returns (exit code, recorder, fault layer)."""
    recorder = recorder or syscall.Recorder()
    layer = syscall.Faults(recorder, faults or {})
    with syscall.use(layer):
        code = run(list(argv) + ["--sysroot", machine], program="kexec")
    return code, recorder, layer


def calls(recorder):
    """The recorded actions, with loads reduced to (name, flags)."""
    out = []
    for c in recorder.calls:
        if c[0] == "kexec_load":
            out.append(("kexec_load", c[3], "unload" if not c[2] else "load"))
        elif c[0] == "kexec_file_load":
            out.append(("kexec_file_load", c[4], "load" if c[1] is not None else "unload"))
        else:
            out.append(c[:1])
    return out


# --- syscall choice and fallback --------------------------------------------------------------

@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EINVAL, errno.ENOEXEC, errno.ENOTSUP])
def test_auto_crash_load_falls_back_to_kexec_load(machines, files, err, capsys):
    code, rec, layer = kexec(["-p", files["kernel"], f"--append={APPEND}", "-d"],
                             machines["qemu_like_1g"], {"kexec_file_load": err})
    assert code == 0, capsys.readouterr().err
    assert layer.failed == [("kexec_file_load", err)]
    assert calls(rec) == [("kexec_load", X86_64 | 1, "load")]
    assert "falling back to kexec_load" in capsys.readouterr().err


@pytest.mark.parametrize("err, words", [
    (errno.EPERM, "Operation not permitted"),
    (errno.EKEYREJECTED, "signature was rejected"),
    (errno.ENOKEY, "keyrings"),
    (errno.EBADMSG, "signature is malformed"),
])
def test_auto_does_not_fall_back_on_permission_or_signature_errors(machines, files, err, words,
                                                                     capsys):
    code, rec, _ = kexec(["-p", files["kernel"], f"--append={APPEND}"], machines["qemu_like_1g"],
                         {"kexec_file_load": err})
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 255
    assert rec.calls == []
    assert len(lines) == 1 and words in lines[0] and "kexec_file_load failed" in lines[0]


def test_file_syscall_only_exits_253_when_missing(machines, files, capsys):
    code, rec, _ = kexec(["-s", "-p", files["kernel"]], machines["qemu_like_1g"],
                         {"kexec_file_load": errno.ENOSYS})
    assert code == 253 and rec.calls == []
    assert "syscall kexec_file_load not available." in capsys.readouterr().err
    code, rec, _ = kexec(["-s", "-p", "-u"], machines["qemu_like_1g"],
                         {"kexec_file_load": errno.ENOSYS})
    assert code == 253 and rec.calls == []


def test_file_syscall_crash_load_flags(machines, files):
    code, rec, _ = kexec(["-s", "-p", files["kernel"], f"--initrd={files['initrd']}",
                          f"--append={APPEND}"], machines["qemu_like_1g"])
    assert code == 0
    (name, kernel, initrd, cmdline, flags), = rec.calls
    assert name == "kexec_file_load" and flags == syscall.KEXEC_FILE_ON_CRASH
    assert kernel == open(files["kernel"], "rb").read()
    assert initrd == open(files["initrd"], "rb").read()
    assert cmdline == APPEND.encode() + b"\0"
    # without an initrd: KEXEC_FILE_NO_INITRAMFS, and an empty command line is one NUL
    code, rec, _ = kexec(["-s", "-p", files["kernel"]], machines["qemu_like_1g"])
    (_, _, initrd, cmdline, flags), = rec.calls
    assert initrd is None and cmdline == b"\0" and flags == 0x6


def test_file_syscall_dry_run_json_is_the_call_on_stdout(machines, files, capsys):
    """`-s --dry-run --json`: stdout is the kexec_file_load call as plan JSON (it was empty)."""
    import json
    code, rec, _ = kexec(["-s", "-p", files["kernel"], f"--initrd={files['initrd']}",
                          f"--append={APPEND}", "--dry-run", "--json"], machines["qemu_like_1g"])
    out = capsys.readouterr()
    assert code == 0 and rec.calls == []
    plan = json.loads(out.out)
    assert plan["syscall"] == "kexec_file_load" and plan["cmdline"] == APPEND
    assert [(s["kind"], s["mem"], s["memsz"]) for s in plan["segments"]] == [
        ("kernel", None, os.path.getsize(files["kernel"])),
        ("initrd", None, os.path.getsize(files["initrd"]))]
    assert "would load with: kexec_file_load(" in out.err


@pytest.mark.parametrize("dry", [True, False])
def test_file_syscall_svg_says_there_is_no_picture(machines, files, tmp_path, capsys, dry):
    """`-s --svg F` draws nothing (the kernel places the segments) and says so on stderr."""
    svg = tmp_path / "plan.svg"
    code, rec, _ = kexec(["-s", "-p", files["kernel"], "--svg", str(svg)]
                         + (["--dry-run"] if dry else []), machines["qemu_like_1g"])
    err = capsys.readouterr().err
    assert code == 0 and not svg.exists()
    assert [line for line in err.splitlines() if "--svg" in line] == [
        "kexec: warning: --svg: no picture for kexec_file_load, whose segments the kernel "
        "places itself (-c or -a draws the kexec_load plan)"]
    assert len(rec.calls) == (0 if dry else 1)
    # -a draws the kexec_load plan it would fall back to
    code, _, _ = kexec(["-a", "-p", files["kernel"], "--svg", str(svg), "--dry-run"],
                       machines["qemu_like_1g"])
    assert code == 0 and svg.read_text().startswith("<")


def test_unload_falls_back_only_on_enosys(machines):
    code, rec, _ = kexec(["-pu"], machines["qemu_like_1g"], {"kexec_file_load": errno.ENOSYS})
    assert code == 0 and calls(rec) == [("kexec_load", X86_64 | 1, "unload")]
    code, rec, _ = kexec(["-pu"], machines["qemu_like_1g"], {"kexec_file_load": errno.EINVAL})
    assert code == 255 and rec.calls == []
    code, rec, _ = kexec(["-s", "-p", "-u"], machines["qemu_like_1g"])
    assert calls(rec) == [("kexec_file_load", syscall.KEXEC_FILE_UNLOAD | syscall.KEXEC_FILE_ON_CRASH,
                           "unload")]
    code, rec, _ = kexec(["-c", "-u"], machines["qemu_like_1g"])
    assert calls(rec) == [("kexec_load", X86_64, "unload")]


def test_kexec_syscall_only_never_tries_file_load(machines, files):
    code, rec, layer = kexec(["-c", "-p", files["kernel"]], machines["qemu_like_1g"],
                             {"kexec_file_load": errno.EPERM})
    assert code == 0 and layer.failed == []
    assert calls(rec) == [("kexec_load", X86_64 | 1, "load")]


def test_up_loads_without_a_separate_unload_and_pu_only_unloads(machines, files):
    """-up: the load replaces the loaded crash image by itself, so pykexec makes no separate
    unload that a refused load would turn into "no capture kernel" (docs/differences.md)."""
    code, rec, _ = kexec(["-c", "-up", files["kernel"]], machines["qemu_like_1g"])
    assert code == 0
    assert calls(rec) == [("kexec_load", X86_64 | 1, "load")]
    code, rec, _ = kexec(["-c", "-pu", files["kernel"]], machines["qemu_like_1g"])
    assert calls(rec) == [("kexec_load", X86_64 | 1, "unload")]


# --- normal kexec: -l, -e, -f, plain -------------------------------------------------------

def test_load_then_exec_in_kexec_tools_order(machines, files):
    rec = syscall.Recorder()
    code, rec, _ = kexec(["--load", files["kernel"], "--append", APPEND, "--initrd",
                          files["initrd"]], machines["qemu_like_1g"], recorder=rec)
    assert code == 0
    assert calls(rec) == [("kexec_file_load", 0, "load"), ("sync",)]
    code, rec, _ = kexec(["-e"], machines["qemu_like_1g"], recorder=rec)
    assert code == 0
    assert calls(rec)[2:] == [("sync",), ("ifdown",), ("reboot",)]
    assert rec.calls[-1] == ("reboot", syscall.LINUX_REBOOT_CMD_KEXEC)


def test_exec_options_and_nothing_loaded(machines, capsys):
    code, rec, _ = kexec(["-e", "-x", "-y"], machines["qemu_like_1g"],
                         recorder=syscall.Recorder(state={False: 1, True: 0}))
    assert code == 0 and calls(rec) == [("reboot",)]
    code, rec, _ = kexec(["-e"], machines["qemu_like_1g"])
    assert code == 1 and rec.calls == []
    assert "Nothing has been loaded" in capsys.readouterr().err


def test_exec_failure_is_explained(machines, capsys):
    code, rec, _ = kexec(["-e", "-x"], machines["qemu_like_1g"], {"reboot": errno.EINVAL},
                         recorder=syscall.Recorder(state={False: 1, True: 0}))
    assert code == 255 and calls(rec) == [("sync",)]
    assert "kexec failed" in capsys.readouterr().err


def test_force_loads_syncs_takes_interfaces_down_and_reboots(machines, files):
    code, rec, _ = kexec(["-c", "-f", files["kernel"], f"--append={APPEND}"],
                         machines["qemu_like_1g"])
    assert code == 0
    assert calls(rec) == [("kexec_load", X86_64, "load"), ("sync",), ("ifdown",), ("reboot",)]


def test_plain_kexec_loads_then_runs_shutdown(machines, files):
    code, rec, _ = kexec(["-c", files["kernel"]], machines["qemu_like_1g"])
    assert code == 0
    assert calls(rec) == [("kexec_load", X86_64, "load"), ("shutdown",)]


def test_normal_load_without_crash_region_is_fine(machines, files):
    code, rec, _ = kexec(["-c", "-l", files["kernel"]], machines["no_crash_region"])
    assert code == 0 and calls(rec) == [("kexec_load", X86_64, "load"), ("sync",)]


def test_preserve_context_and_jump_back_helper(machines, files, capsys):
    m = machines["qemu_like_1g"]
    assert kexec(["-c", "--load-preserve-context", files["kernel"]], m)[0] == 1
    assert "--mem-max" in capsys.readouterr().err
    assert kexec(["--load-preserve-context", "--mem-max=0x3fffffff", files["kernel"]], m)[0] == 1
    assert "add -c" in capsys.readouterr().err
    code, rec, _ = kexec(["-c", "--load-preserve-context", "--mem-max=0x3fffffff",
                          files["kernel"]], m)
    assert code == 0 and calls(rec)[0] == ("kexec_load", X86_64 | 2, "load")
    assert all(mem + memsz <= 0x40000000 for _, mem, memsz in rec.calls[0][2])
    code, rec, _ = kexec(["-c", "--load-jump-back-helper", "--entry=0x9000"], m)
    # kexec-tools' order: the helper sets sync and ifdown, which run before its load
    assert code == 0 and rec.calls == [("sync",), ("ifdown",),
                                       ("kexec_load", 0x9000, ((b"", 0, 0),), 2)]


# --- refusals and diagnoses ----------------------------------------------------------------------

@pytest.mark.parametrize("argv, code, words", [
    (["-p", "K"], 1, "no crashkernel memory"),
    (["--reuseinitrd", "-l", "K"], 1, "--reuseinitrd"),
    (["--exec-live-update"], 1, "Xen"),
    (["-l", "K", "--console-vga"], 255, "VGA"),
    (["-l", "K", "--module=x"], 255, "multiboot"),
    (["-p", "K", "--pass-memmap-cmdline"], 255, "memmap"),
    (["-p", "K", "--hotplug"], 1, "crash_elfcorehdr_size does not exist"),
    (["-l", "K", "--hotplug"], 1, "--hotplug is for crash loads"),
    (["-c", "-l", "K", "--real-mode"], 255, "64-bit entry"),
    (["-l"], 255, "No kernel specified"),
    (["-e", "--append=x"], 1, "needs a kernel"),
    (["--no-such"], 1, "not recognized"),
])
def test_refusals_are_one_line(machines, files, argv, code, words, capsys):
    argv = [files["kernel"] if a == "K" else a for a in argv]
    machine = machines["no_crash_region" if words == "no crashkernel memory" else "qemu_like_1g"]
    got, rec, _ = kexec(argv, machine)
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code, err
    assert len(err) == 1 and words in err[0], err
    assert rec.calls == []


def test_refused_arch_options_do_not_matter_for_unload(machines):
    code, rec, _ = kexec(["-c", "-u", "--console-vga", "--reset-vga"], machines["qemu_like_1g"])
    assert code == 0 and calls(rec) == [("kexec_load", X86_64, "unload")]


def _sysroot(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


@pytest.mark.parametrize("files, call, crash, words", [
    ({"proc/self/status": "CapEff:\t0000000000000000\n"}, "kexec_load", True, "CAP_SYS_BOOT"),
    ({"proc/self/status": "CapEff:\t000001ffffffffff\n",
      "proc/sys/kernel/kexec_load_disabled": "1\n"}, "kexec_load", True, "kexec_load_disabled"),
    ({"proc/self/status": "CapEff:\t000001ffffffffff\n",
      "proc/sys/kernel/kexec_load_limit_panic": "0\n"}, "kexec_load", True,
     "kexec_load_limit_panic is 0"),
    ({"proc/self/status": "CapEff:\t000001ffffffffff\n",
      "proc/sys/kernel/kexec_load_limit_reboot": "0\n",
      "proc/sys/kernel/kexec_load_limit_panic": "-1\n"}, "kexec_load", False,
     "kexec_load_limit_reboot is 0"),
    ({"proc/self/status": "CapEff:\t000001ffffffffff\n",
      "sys/kernel/security/lockdown": "none [integrity] confidentiality\n"}, "kexec_load", True,
     "locked down (integrity)"),
    ({"proc/self/status": "CapEff:\t000001ffffffffff\n",
      "sys/kernel/security/lockdown": "none integrity [confidentiality]\n"}, "kexec_file_load",
     True, "locked down (confidentiality)"),
])
def test_eperm_is_named(tmp_path, files, call, crash, words):
    line = syscall.explain_errno(errno.EPERM, call, _sysroot(tmp_path, files), crash=crash)
    assert words in line and "\n" not in line


def test_fault_spec_from_the_environment():
    assert syscall.parse_faults("kexec_file_load=ENOSYS, reboot=1") == {
        "kexec_file_load": errno.ENOSYS, "reboot": 1}
    with pytest.raises(ValueError):
        syscall.parse_faults("kexec_file_load=NOPE")


def test_fault_lists_are_used_up_in_order():
    rec = syscall.Recorder()
    layer = syscall.Faults(rec, {"kexec_load": [errno.EBUSY, None]})
    with pytest.raises(syscall.KexecError):
        layer.kexec_load(0, [], 1)
    layer.kexec_load(0, [], 1)
    assert len(rec.calls) == 1


# --- the installed `kexec`: read-only root, start-up --------------------------------------------

def test_wrapper_exec_writes_nothing(tmp_path):
    """`kexec -e` through the wrapper on a package copy: no __pycache__, no temp files."""
    from pykexec.cli import install_wrapper
    pkg = tmp_path / "lib"
    import pykexec
    shutil.copytree(os.path.dirname(pykexec.__file__), pkg / "pykexec",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wrapper = tmp_path / "kexec"
    install_wrapper(str(wrapper), package_parent=str(pkg))
    before = sorted(p for p in tmp_path.rglob("*"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # Never a real load or reboot, even where something is loaded: every call faults.
    env["PYKEXEC_SYSCALL_FAULTS"] = "kexec_load=EPERM,kexec_file_load=EPERM,reboot=EPERM"
    env["TMPDIR"] = str(tmp_path / "tmp-must-stay-absent")
    proc = subprocess.run([str(wrapper), "-e", "-x"], capture_output=True, text=True, env=env)
    assert proc.returncode in (1, 255), proc.stderr   # nothing loaded, or reboot refused
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert subprocess.run([str(wrapper), "-v"], capture_output=True, text=True,
                          env=env).stdout.startswith("kexec-tools ")


def test_version_and_help_import_little():
    code = ("import sys; from pykexec.cli import run; run(['-v']); "
            "heavy = [m for m in ('construct', 'elftools', 'click', 'pykexec.machine', "
            "'pykexec.host.syscall', 'ctypes') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_install_as_kexec_keeps_another_program_only_with_force(tmp_path):
    from pykexec.cli import main
    target = tmp_path / "kexec"
    target.write_text("#!/bin/sh\necho kexec-tools\n")
    with pytest.raises(SystemExit) as exit_:
        main(["install", "--as-kexec", str(target)])
    assert exit_.value.code == 1 and "kexec-tools" in target.read_text()
    with pytest.raises(SystemExit) as exit_:
        main(["install", "--as-kexec", "--force", str(target)])
    assert exit_.value.code == 0
    assert (tmp_path / "kexec.kexec-tools").read_text().startswith("#!/bin/sh")
    text = target.read_text()
    assert text.startswith(f"#!{sys.executable} -ISB") and "kexec_main()" in text
    assert os.access(target, os.X_OK)
    # installing again over our own wrapper needs no --force and keeps the saved original
    with pytest.raises(SystemExit) as exit_:
        main(["install", "--as-kexec", str(target)])
    assert exit_.value.code == 0 and (tmp_path / "kexec.kexec-tools").exists()
    proc = subprocess.run([str(target), "-h"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: kexec ")


def test_ifdown_order_and_flags(monkeypatch):
    """shaper* first, then the rest; never lo or aliases; IFF_UP cleared; stop at an error."""
    import fcntl
    import socket
    import struct
    monkeypatch.setattr(socket, "if_nameindex", lambda: [(1, "lo"), (2, "eth0"), (3, "shaper0"),
                                                         (4, "eth0:1"), (5, "wlan0")])
    seen = []

    def ioctl(fd, request, arg):
        name = arg[:16].rstrip(b"\0").decode()
        if request == syscall.SIOCGIFFLAGS:
            return struct.pack("16sH14x", arg[:16], 0x1043)   # UP|BROADCAST|RUNNING|MULTICAST
        seen.append((name, struct.unpack_from("16sH", arg)[1]))
        if name == "eth0" and len(seen) > 5:
            raise OSError(1, "no")
        return arg
    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    assert syscall.ifdown() == ["shaper0", "eth0", "wlan0"]
    assert seen == [("shaper0", 0x1042), ("eth0", 0x1042), ("wlan0", 0x1042)]


def test_save_plan_after_a_file_load(machines, files, tmp_path):
    out = tmp_path / "plan"
    code, rec, _ = kexec(["-s", "-p", files["kernel"], f"--save-plan={out}"],
                         machines["qemu_like_1g"])
    assert code == 0 and (out / "plan.json").exists()
    assert '"kexec_file_load"' in (out / "plan.json").read_text()


def test_a_gzip_kernel_goes_to_kexec_file_load_decompressed(machines, files, tmp_path):
    import gzip
    raw = open(files["kernel"], "rb").read()
    packed = tmp_path / "vmlinuz.gz"
    packed.write_bytes(gzip.compress(raw))
    code, rec, _ = kexec(["-s", "-p", str(packed)], machines["qemu_like_1g"])
    assert code == 0 and rec.calls[0][1] == raw
