"""Reboot cycles in a QEMU guest: load a kernel, boot it with kexec, check where we landed.

`run_reboot_cycle(RebootConfig) -> RebootResult`. The guest boots Debian's kernel with the
bed's busybox initramfs, whose /init is tests/bed/guest/reboot_init instead of the kdump
one. Boot 1 runs `before.sh` (written here from `commands`) in a chroot of the host root
(read-only over 9p, so the loader really runs on a read-only root); the commands load a
kernel with `bed_boot=after` and a marker on its command line and execute it. Boot 2
records /proc/cmdline and runs `after.sh` if given. A scenario passes when boot 2 happened
and its command line carries the marker.

`kexec_wrapper(folder)` writes pykexec's `kexec` wrapper (pykexec install --as-kexec) into
the results folder, so the guest's commands call `kexec` exactly as init scripts do.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tests.bed.initramfs import GUEST_DIR, initramfs_entries, newc_archive
from tests.bed.kernels import ARCH, BedError, Kernel, cache_lock, cache_root, get_kernel
from tests.bed.qemu import QEMU, REPO_ROOT, _SerialReader, new_run_dir, tmp_entries

REBOOT_INIT = GUEST_DIR / "reboot_init"
FIRST_CMDLINE = "console=ttyS0 panic=1 loglevel=4"
AFTER_MARK = "bed_boot=after"
EXTRA_MODULES = ()


OVMF_IMAGES = ("/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd")


def ovmf_image() -> Optional[str]:
    return next((p for p in OVMF_IMAGES if os.path.exists(p)), None)


def get_reboot_initramfs(kernel: Kernel) -> Path:
    """The bed's initramfs with reboot_init as /init (cached by its inputs)."""
    entries = [(name, mode, REBOOT_INIT.read_bytes() if name == "init" else data)
               for name, mode, data in initramfs_entries(kernel)]
    h = hashlib.sha256(b"reboot-1")
    for name, mode, data in entries:
        h.update(name.encode() + str(mode).encode() + hashlib.sha256(data).digest())
    out = cache_root() / ARCH / f"reboot-initramfs-{kernel.release}-{h.hexdigest()[:16]}.cpio.gz"
    if out.exists():
        return out
    with cache_lock(out.name):
        if not out.exists():
            tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
            tmp.write_bytes(gzip.compress(newc_archive(entries), compresslevel=6, mtime=0))
            os.rename(tmp, out)
    return out


def kexec_wrapper(folder: Path) -> Path:
    """pykexec's `kexec` wrapper in `folder`/bin/kexec (the same file `pykexec install
    --as-kexec` writes), running this Python on this checkout."""
    from pykexec.cli import install_wrapper
    dest = Path(folder) / "bin" / "kexec"
    dest.parent.mkdir(parents=True, exist_ok=True)
    install_wrapper(str(dest), force=True)
    return dest


@dataclass
class RebootConfig:
    # Shell lines for boot 1; "{kernel}", "{initrd}", "{append}", "{kexec}" and "{python}" are
    # replaced (kexec: pykexec's wrapper as the guest sees it; append: the second kernel's
    # command line, with the marker).
    commands: Sequence[str]
    after_commands: Sequence[str] = ()
    memory_mib: int = 1024
    cpus: int = 1
    first_cmdline_extra: str = ""
    append: str = "console=ttyS0 panic=1 loglevel=4"
    timeout: float = 240.0
    name: str = "reboot"
    kernel: Optional[Kernel] = None
    writable: Sequence[str] = ()          # host dirs given a tmpfs in the guest
    bind_files: Dict[str, str] = field(default_factory=dict)  # guest target -> source path
    extra_files: Dict[str, str] = field(default_factory=dict)  # name in results -> text
    raw_files: Dict[str, bytes] = field(default_factory=dict)  # written as they are (0755)
    firmware: str = "bios"                 # or "uefi" (OVMF, package ovmf)
    # The guest's root: the host root read-only (default), or a writable overlay on it
    # (tmpfs upper layer) where the commands may install packages.
    overlay_root: bool = False


@dataclass
class RebootResult:
    config: RebootConfig
    run_dir: Path
    marker: str
    serial_log: Path
    qemu_exit: Optional[int] = None
    timed_out: bool = False
    boots: List[str] = field(default_factory=list)
    before_log: str = ""
    before_rc: Optional[int] = None
    after_cmdline: str = ""
    after_release: str = ""
    after_log: str = ""
    after_rc: Optional[int] = None
    capture: str = ""
    times: Dict[str, float] = field(default_factory=dict)
    results: Optional[Path] = None

    @property
    def rebooted(self) -> bool:
        return AFTER_MARK in self.after_cmdline and self.marker in self.after_cmdline

    def describe(self) -> str:
        tail = "\n".join(self.serial_log.read_text(errors="replace").splitlines()[-40:]) \
            if self.serial_log.exists() else "(no serial log)"
        return (f"run {self.run_dir}: qemu exit {self.qemu_exit}, timed out {self.timed_out}, "
                f"boots {self.boots}, before rc {self.before_rc}\n--- before.log\n"
                f"{self.before_log}\n--- after ({self.after_cmdline!r})\n{self.after_log}\n"
                f"--- serial tail\n{tail}")


def _guest_paths(cfg: RebootConfig, kernel: Kernel, initrd: Path) -> List[str]:
    paths = [str(GUEST_DIR), sys.executable, sys.prefix, sys.base_prefix, str(kernel.bzimage),
             str(initrd), str(REPO_ROOT)]
    paths += [p for p in sys.path if p.startswith("/")]
    for line in list(cfg.commands) + list(cfg.after_commands):
        # host files the commands name (not the guest's own /tmp/results, /tmp/kdump-lib...)
        paths += [w for w in shlex.split(line) if w.startswith("/")
                  and not w.startswith("/tmp/results") and os.path.exists(w)]
    return paths


def run_reboot_cycle(cfg: RebootConfig) -> RebootResult:
    if shutil.which(QEMU) is None:
        raise BedError(f"{QEMU}: not installed (apt-get install qemu-system-x86)")
    kernel = cfg.kernel or get_kernel()
    initrd = get_reboot_initramfs(kernel)
    run_dir = new_run_dir(cfg.name)
    results = run_dir / "results"
    results.mkdir()
    marker = "bed_marker=" + secrets.token_hex(6)
    kexec_wrapper(results)  # writes results/bin/kexec, the guest_wrapper below
    guest_wrapper = "/tmp/results/bin/kexec"
    append = f"{cfg.append} {AFTER_MARK} {marker}".strip()
    values = {"kernel": str(kernel.bzimage), "initrd": str(initrd), "append": append,
              "kexec": guest_wrapper, "python": sys.executable, "marker": marker,
              "vmlinux": str(kernel.vmlinux) if getattr(kernel, "vmlinux", None) else "",
              "modules": str(kernel.modules_dir)}

    def expand(lines):
        return "".join(line.format(**values) + "\n" for line in lines)

    (results / "before.sh").write_text("set -x\n" + expand(cfg.commands)
                                       + "echo 'BED: commands returned'\n")
    if cfg.after_commands:
        (results / "after.sh").write_text("set -x\n" + expand(cfg.after_commands))
    for name, text in cfg.extra_files.items():
        (results / name).write_text(text.format(**values))
    for name, data in cfg.raw_files.items():
        (results / name).write_bytes(data)
        (results / name).chmod(0o755)
    tmp_keep = tmp_entries(_guest_paths(cfg, kernel, initrd))
    bind = " ".join(f"{t}={s}" for t, s in cfg.bind_files.items())
    overlay_module = ""
    if cfg.overlay_root:
        module = kernel.modules_dir / "kernel" / "fs" / "overlayfs" / "overlay.ko"
        if not module.exists():
            raise BedError(f"{module}: missing (the guest's busybox insmod needs a plain .ko)")
        overlay_module = str(module)
    (results / "config.sh").write_text(
        f"BED_OVERLAY_MODULE={shlex.quote(overlay_module)}\n"
        f"BED_TMP_KEEP={shlex.quote(' '.join(tmp_keep))}\n"
        f"BED_WRITABLE={shlex.quote(' '.join(cfg.writable))}\n"
        f"BED_BIND_FILES={shlex.quote(bind)}\n")
    argv = [QEMU, "-accel", "tcg", "-cpu", "max", "-m", str(cfg.memory_mib), "-smp", str(cfg.cpus),
            "-nographic", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={results},mount_tag=results,security_model=none",
            "-kernel", str(kernel.bzimage), "-initrd", str(initrd),
            "-append", f"{FIRST_CMDLINE} {cfg.first_cmdline_extra}".strip()]
    if cfg.firmware == "uefi":
        firmware = ovmf_image()
        if firmware is None:
            raise BedError("UEFI guest: no OVMF firmware (apt-get install ovmf)")
        argv += ["-bios", firmware]
    (run_dir / "qemu-argv.txt").write_text(shlex.join(argv) + "\n")
    res = RebootResult(config=cfg, run_dir=run_dir, marker=marker, serial_log=run_dir / "serial.log")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    reader = _SerialReader(proc.stdout, res.serial_log, t0)
    reader.start()
    try:
        res.qemu_exit = proc.wait(timeout=cfg.timeout)
    except subprocess.TimeoutExpired:
        res.timed_out = True
        proc.kill()
        res.qemu_exit = proc.wait()
    reader.join(timeout=10)
    res.times["total"] = round(time.monotonic() - t0, 3)
    _collect(res, results)
    return res


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _collect(res: RebootResult, results: Path) -> None:
    res.boots = _read(results / "boots").split("\n")[:-1]
    res.before_log = _read(results / "before.log")
    rc = _read(results / "before.rc").strip()
    res.before_rc = int(rc) if rc.isdigit() else None
    lines = _read(results / "after.txt").splitlines()
    res.after_cmdline = lines[0] if lines else ""
    res.after_release = lines[1] if len(lines) > 1 else ""
    res.after_log = _read(results / "after.log")
    rc = _read(results / "after.rc").strip()
    res.after_rc = int(rc) if rc.isdigit() else None
    res.capture = _read(results / "capture.txt") + _read(results / "capture.log")
    res.results = results
    log = _read(res.serial_log)
    marks = {}
    for line in log.splitlines():
        if line.startswith("[") and "]" in line:
            t = float(line[1:line.index("]")])
            for key, text in (("before_init", "reboot-cycle before init"),
                              ("after_init", "reboot-cycle after init"),
                              ("capture_init", "reboot-cycle capture init")):
                if text in line and key not in marks:
                    marks[key] = t
    res.times.update(marks)
    if "before_init" in marks and "after_init" in marks:
        res.times["kexec_to_after_init"] = round(marks["after_init"] - marks["before_init"], 3)


def get_kdump_tools() -> Path:
    """Debian's kdump-tools, downloaded with apt-get and unpacked (never installed) into the
    bed cache; returns the unpacked root (usr/sbin/kdump-config, ...)."""
    base = cache_root() / ARCH / "kdump-tools"
    ready = base / "root" / "usr" / "sbin" / "kdump-config"
    if ready.exists():
        return base / "root"
    with cache_lock("kdump-tools"):
        if not ready.exists():
            base.mkdir(parents=True, exist_ok=True)
            for old in base.glob("*.deb"):
                old.unlink()
            proc = subprocess.run(["apt-get", "download", "kdump-tools"], cwd=base,
                                  capture_output=True, text=True)
            debs = list(base.glob("kdump-tools_*.deb"))
            if not debs:
                raise BedError(f"apt-get download kdump-tools failed: {proc.stderr.strip()}")
            tmp = base / f"root.{os.getpid()}"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp)], check=True)
            shutil.rmtree(base / "root", ignore_errors=True)
            os.rename(tmp, base / "root")
    return base / "root"


def kdump_config_for_guest(root: Path, defaults: str, state_dir: str) -> bytes:
    """kdump-config as shipped, with its two fixed paths moved where the guest can write:
    the defaults file (/etc/default/kdump-tools) and KDUMP_DIR (/var/lib/kdump)."""
    text = (root / "usr" / "sbin" / "kdump-config").read_text()
    lines = []
    moved = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("KDUMP_DEFAULTS="):
            line, moved = f"KDUMP_DEFAULTS={defaults}\n", moved + 1
        elif line.startswith('KDUMP_DIR="/var/lib/kdump"'):
            line, moved = f'KDUMP_DIR="{state_dir}"\n', moved + 1
        lines.append(line)
    if moved != 2:
        raise BedError("kdump-config changed: cannot find KDUMP_DEFAULTS= and KDUMP_DIR=")
    return "".join(lines).encode()


if __name__ == "__main__":  # pragma: no cover - manual runs: python -m tests.bed.reboot_cycle
    r = run_reboot_cycle(RebootConfig(commands=[
        "{kexec} --load {kernel} --append '{append}' --initrd {initrd}", "{kexec} -e"]))
    print(json.dumps({"rebooted": r.rebooted, "times": r.times, "run": str(r.run_dir)}))
    if not r.rebooted:
        print(r.describe())
