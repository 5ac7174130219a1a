"""One real kdump cycle in a QEMU guest: `run_kdump_cycle(CycleConfig) -> CycleResult`.

The guest boots Debian's bzImage with the bed's busybox initramfs (tests/bed/initramfs.py).
Its /init mounts the host's root read-only over 9p and a per-run results folder read-write,
and runs tests/bed/guest/stage1.py with the host's Python in a chroot of the host root:
optional machine snapshot, the loader argv from the config (host paths work unchanged),
a pattern filler, then `echo c > /proc/sysrq-trigger`. The capture kernel boots the same
initramfs and runs stage2.py: /proc/vmcore headers and notes, the pattern check,
/proc/cmdline, dmesg and Debian's vmcore-dmesg. Both write JSON into the results folder;
this module turns them into a `CycleResult` that tests assert on.

Every run has its own folder (serial log with host timestamps, config, results), so two
cycles can run in parallel. QEMU is always TCG (`-accel tcg -cpu max`), `-no-reboot`,
`panic=1` in both kernels, and killed after `timeout` seconds.

Paths given to the loader must be visible in the guest's chroot: anywhere on the host's
root file system except under /tmp (the chroot mounts a tmpfs there).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tests.bed.initramfs import GUEST_DIR, get_initramfs
from tests.bed.kernels import BedError, Kernel, cache_root, get_kernel

QEMU = os.environ.get("PYKEXEC_BED_QEMU", "qemu-system-x86_64")
DEFAULT_APPEND = "console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=1"
PANIC_LINE = "sysrq triggered crash"

# Loaders, as the argv prefix that precedes the kexec-style options. The e2e tests are
# parametrized over this table; pykexec joins it with one line next issue:
#     "pykexec": [sys.executable, "-m", "pykexec"],
LOADERS: Dict[str, List[str]] = {
    "kexec": ["/usr/sbin/kexec"],
}


def loader_argv(loader: Sequence[str], kernel_image: str, initrd: Optional[str] = None,
                append: str = DEFAULT_APPEND, extra: Sequence[str] = (),
                debug: bool = False) -> List[str]:
    """`LOADER [-d] -p KERNEL [extra...] [--initrd=INITRD] --append=APPEND` as a list."""
    argv = list(loader)
    if debug:
        argv.append("-d")
    argv += ["-p", str(kernel_image), *extra]
    if initrd:
        argv.append(f"--initrd={initrd}")
    argv.append(f"--append={append}")
    return argv


@dataclass
class CycleConfig:
    """What to boot and what to run in the first kernel."""

    loader_argv: Optional[Sequence[str]]   # None: take the snapshot (if asked) and power off
    memory_mib: int = 1024
    cpus: int = 2
    cmdline_extra: str = "crashkernel=256M"  # first kernel; "crashkernel=256M@16M" for ELF
    pattern_mib: int = 64
    take_snapshot: bool = False
    snapshot_notes: str = ""
    timeout: float = 240.0
    name: str = "cycle"
    run_dir: Optional[Path] = None          # default: a fresh folder under the bed cache
    kernel: Optional[Kernel] = None         # default: get_kernel()
    first_cmdline: str = "console=ttyS0 panic=1 loglevel=4"
    qemu_extra: Sequence[str] = ()


@dataclass
class PatternStats:
    recorded: int = 0
    checked: int = 0
    matched: int = 0
    mismatched: int = 0
    missing: int = 0
    seconds: Optional[float] = None
    examples: List[dict] = field(default_factory=list)
    # negative control: the same check with every PFN + 1 (must mismatch every page)
    shifted_checked: int = 0
    shifted_mismatched: int = 0

    @property
    def intact(self) -> bool:
        return (self.recorded > 0 and self.checked == self.recorded and self.mismatched == 0
                and self.missing == 0)


@dataclass
class Timings:
    boot: Optional[float] = None               # QEMU start → stage-1 /init
    load: Optional[float] = None               # the loader process, in the guest
    panic_to_capture_kernel: Optional[float] = None  # sysrq → capture "Linux version"
    panic_to_capture_init: Optional[float] = None    # sysrq → capture /init
    capture_checks: Optional[float] = None     # stage 2's own time
    total: Optional[float] = None              # QEMU start → exit


@dataclass
class CycleResult:
    config: CycleConfig
    run_dir: Path
    serial_log: Path
    qemu_argv: List[str]
    qemu_exit: Optional[int] = None
    timed_out: bool = False
    stage1_result: Optional[str] = None        # snapshot-only | load-failed | panicking | error ...
    loader_exit: Optional[int] = None
    loader_stdout: str = ""
    loader_stderr: str = ""
    crash_loaded: Optional[int] = None
    first_cmdline: str = ""
    crash_region: List[str] = field(default_factory=list)
    snapshot: Optional[Path] = None
    captured: bool = False                     # stage 2 ran and wrote its JSON
    vmcore_class: Optional[int] = None
    vmcore_type: Optional[str] = None
    vmcore_machine: Optional[str] = None
    vmcore_size: Optional[int] = None
    phdrs: List[dict] = field(default_factory=list)
    note_counts: Dict[str, int] = field(default_factory=dict)
    nt_prstatus: int = 0
    vmcoreinfo: Dict[str, str] = field(default_factory=dict)
    osrelease: Optional[str] = None
    pattern: PatternStats = field(default_factory=PatternStats)
    capture_cmdline: str = ""
    capture_dmesg: str = ""
    vmcore_dmesg: str = ""
    vmcore_dmesg_exit: Optional[int] = None
    panic_line_found: bool = False
    timings: Timings = field(default_factory=Timings)
    errors: List[str] = field(default_factory=list)

    @property
    def pt_loads(self) -> List[dict]:
        return [p for p in self.phdrs if p["type"] == "PT_LOAD"]

    @property
    def pt_notes(self) -> List[dict]:
        return [p for p in self.phdrs if p["type"] == "PT_NOTE"]

    def serial_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.serial_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no serial log>"

    def describe(self) -> str:
        """Multi-line diagnostics for an assertion message."""
        return (f"run {self.run_dir}: stage1={self.stage1_result} loader_exit={self.loader_exit} "
                f"crash_loaded={self.crash_loaded} captured={self.captured} "
                f"qemu_exit={self.qemu_exit} timed_out={self.timed_out} errors={self.errors}\n"
                f"loader stderr:\n{self.loader_stderr[-2000:]}\n"
                f"serial log {self.serial_log} (tail):\n{self.serial_tail()}")

    def summary(self) -> str:
        """A short human summary (used by scripts/kdump-demo)."""
        t = self.timings
        p = self.pattern

        def s(x):
            return "-" if x is None else f"{x:.1f} s"
        lines = [
            f"first kernel: {self.config.memory_mib} MiB, {self.config.cpus} CPU(s), "
            f"{' '.join(self.crash_region) or 'no crash region'}",
            f"loader: {' '.join(shlex.quote(a) for a in (self.config.loader_argv or []))}",
            f"  exit {self.loader_exit}, kexec_crash_loaded={self.crash_loaded}",
        ]
        if self.captured:
            lines += [
                f"capture kernel: cmdline {self.capture_cmdline!r}",
                f"  /proc/vmcore: ELF{self.vmcore_class} {self.vmcore_type} {self.vmcore_machine}, "
                f"{(self.vmcore_size or 0) >> 20} MiB, {len(self.pt_notes)} PT_NOTE + "
                f"{len(self.pt_loads)} PT_LOAD, {self.nt_prstatus} NT_PRSTATUS, "
                f"OSRELEASE={self.osrelease}",
                f"  pattern: {p.recorded} pages recorded, {p.checked} checked, {p.mismatched} "
                f"mismatched, {p.missing} missing -> {'INTACT' if p.intact else 'BROKEN'} "
                f"(control with PFN+1: {p.shifted_mismatched}/{p.shifted_checked} mismatched)",
                f"  vmcore-dmesg: {'panic line found' if self.panic_line_found else 'NO panic line'}"
                + (f": {self.panic_line()}" if self.panic_line_found else ""),
            ]
        else:
            lines.append("capture kernel: did not report (see the serial log)")
        lines.append(f"timings: boot {s(t.boot)}, load {s(t.load)}, panic->capture kernel "
                     f"{s(t.panic_to_capture_kernel)}, panic->capture init "
                     f"{s(t.panic_to_capture_init)}, total {s(t.total)}")
        lines.append(f"serial log: {self.serial_log}")
        return "\n".join(lines)

    def panic_line(self) -> str:
        for line in self.vmcore_dmesg.splitlines():
            if PANIC_LINE in line:
                return line.strip()
        return ""

    @property
    def ok(self) -> bool:
        """The whole cycle is right: loaded, captured, ELF64 vmcore, pattern, panic line."""
        return (self.loader_exit == 0 and self.crash_loaded == 1 and self.captured
                and self.vmcore_class == 64 and self.nt_prstatus == self.config.cpus
                and self.pattern.intact and self.panic_line_found
                and "elfcorehdr=" in self.capture_cmdline)


def _check_visible(argv: Sequence[str]) -> None:
    for arg in argv:
        for path in re.findall(r"(?:^|=)(/[^\s,]*)", arg):
            p = os.path.realpath(path)
            if p == "/tmp" or p.startswith("/tmp/"):
                raise BedError(f"loader argument {arg!r}: {p} is under /tmp, which the guest's "
                               "chroot hides behind a tmpfs; put it elsewhere")


def _config_sh(values: Dict[str, str]) -> str:
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def new_run_dir(name: str = "cycle") -> Path:
    base = cache_root() / "runs"
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{stamp}-{name}-", dir=base))


def qemu_argv(cfg: CycleConfig, kernel: Kernel, initrd: Path, results: Path) -> List[str]:
    return [
        QEMU, "-accel", "tcg", "-cpu", "max", "-m", str(cfg.memory_mib), "-smp", str(cfg.cpus),
        "-nographic", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={results},mount_tag=results,security_model=none",
        "-kernel", str(kernel.bzimage), "-initrd", str(initrd),
        "-append", f"{cfg.first_cmdline} {cfg.cmdline_extra}".strip(),
        *cfg.qemu_extra,
    ]


class _SerialReader(threading.Thread):
    """Copies QEMU's console to a log with host timestamps and notes the BED markers."""

    def __init__(self, stream, log_path: Path, t0: float):
        super().__init__(daemon=True)
        self.stream, self.log_path, self.t0 = stream, log_path, t0
        self.marks: Dict[str, float] = {}
        self.lock = threading.Lock()

    def mark(self, key: str, t: float) -> None:
        with self.lock:
            self.marks.setdefault(key, t)

    def run(self):
        with open(self.log_path, "w", buffering=1) as log:
            log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} serial console, [seconds since QEMU start]\n")
            for raw in iter(self.stream.readline, b""):
                t = time.monotonic() - self.t0
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                log.write(f"[{t:8.3f}] {line}\n")
                if "BED: stage1 init" in line:
                    self.mark("stage1_init", t)
                elif "BED: panic" in line:
                    self.mark("panic", t)
                elif "BED: stage2 init" in line:
                    self.mark("stage2_init", t)
                elif "Linux version" in line and "panic" in self.marks:
                    self.mark("capture_kernel", t)


def run_kdump_cycle(cfg: CycleConfig) -> CycleResult:
    """Boot a guest, load a crash kernel with cfg.loader_argv, panic, check the dump."""
    if shutil.which(QEMU) is None:
        raise BedError(f"{QEMU}: not installed (apt-get install qemu-system-x86)")
    kernel = cfg.kernel or get_kernel()
    initrd = get_initramfs(kernel)
    if cfg.loader_argv:
        _check_visible(cfg.loader_argv)
    _check_visible([str(GUEST_DIR), sys.executable])
    run_dir = Path(cfg.run_dir) if cfg.run_dir else new_run_dir(cfg.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results"
    if results.exists():
        shutil.rmtree(results)
    results.mkdir()
    (results / "config.json").write_text(json.dumps({
        "loader_argv": list(cfg.loader_argv) if cfg.loader_argv else None,
        "take_snapshot": cfg.take_snapshot, "snapshot_notes": cfg.snapshot_notes,
        "pattern_mib": cfg.pattern_mib,
    }, indent=1))
    (results / "config.sh").write_text(_config_sh({
        "BED_PYTHON": sys.executable, "BED_GUEST": str(GUEST_DIR)}))
    argv = qemu_argv(cfg, kernel, initrd, results)
    (run_dir / "qemu-argv.txt").write_text(shlex.join(argv) + "\n")
    res = CycleResult(config=cfg, run_dir=run_dir, serial_log=run_dir / "serial.log",
                      qemu_argv=argv)

    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    reader = _SerialReader(proc.stdout, res.serial_log, t0)
    reader.start()
    try:
        res.qemu_exit = proc.wait(timeout=cfg.timeout)
    except subprocess.TimeoutExpired:
        res.timed_out = True
        res.errors.append(f"QEMU killed after {cfg.timeout} s")
        proc.kill()
        res.qemu_exit = proc.wait()
    reader.join(timeout=10)
    res.timings.total = round(time.monotonic() - t0, 3)
    _collect(res, results, reader.marks)
    return res


def _collect(res: CycleResult, results: Path, marks: Dict[str, float]) -> None:
    t = res.timings
    t.boot = marks.get("stage1_init")
    if "panic" in marks:
        if "capture_kernel" in marks:
            t.panic_to_capture_kernel = round(marks["capture_kernel"] - marks["panic"], 3)
        if "stage2_init" in marks:
            t.panic_to_capture_init = round(marks["stage2_init"] - marks["panic"], 3)
    for err in sorted(results.glob("stage*-init-error.txt")):
        res.errors.append(f"{err.name}: {err.read_text().strip()}")

    s1_path = results / "stage1.json"
    if s1_path.exists():
        s1 = json.loads(s1_path.read_text())
        res.stage1_result = s1.get("result")
        res.loader_exit = s1.get("loader_exit")
        res.loader_stdout = s1.get("loader_stdout", "")
        res.loader_stderr = s1.get("loader_stderr", "")
        res.crash_loaded = s1.get("crash_loaded")
        res.first_cmdline = s1.get("cmdline", "")
        res.crash_region = s1.get("iomem_crash", [])
        t.load = s1.get("times", {}).get("load")
        if s1.get("error"):
            res.errors.append("stage1: " + s1["error"])
        if s1.get("snapshot") and (results / s1["snapshot"] / "snapshot.json").exists():
            res.snapshot = results / s1["snapshot"]
    else:
        res.errors.append("stage 1 wrote no stage1.json")

    s2_path = results / "stage2.json"
    if not s2_path.exists():
        if res.stage1_result == "panicking":
            res.errors.append("capture kernel wrote no stage2.json")
        return
    s2 = json.loads(s2_path.read_text())
    res.captured = True
    res.errors.extend("stage2: " + e for e in s2.get("errors", []))
    res.capture_cmdline = s2.get("cmdline", "")
    res.vmcore_size = s2.get("vmcore_size")
    res.vmcore_class = s2.get("elf_class")
    res.vmcore_type = s2.get("e_type")
    res.vmcore_machine = s2.get("e_machine")
    res.phdrs = s2.get("phdrs", [])
    res.note_counts = s2.get("note_counts", {})
    res.nt_prstatus = s2.get("nt_prstatus", 0)
    res.vmcoreinfo = s2.get("vmcoreinfo", {})
    res.osrelease = res.vmcoreinfo.get("OSRELEASE")
    p, ps = s2.get("pattern") or {}, s2.get("pattern_shifted") or {}
    res.pattern = PatternStats(
        recorded=p.get("recorded", 0), checked=p.get("checked", 0), matched=p.get("matched", 0),
        mismatched=p.get("mismatched", 0), missing=p.get("missing", 0),
        seconds=p.get("seconds"), examples=p.get("examples", []),
        shifted_checked=ps.get("checked", 0), shifted_mismatched=ps.get("mismatched", 0))
    res.capture_dmesg = s2.get("dmesg", "")
    vd = s2.get("vmcore_dmesg") or {}
    res.vmcore_dmesg = vd.get("stdout", "")
    res.vmcore_dmesg_exit = vd.get("exit")
    res.panic_line_found = PANIC_LINE in res.vmcore_dmesg
    t.capture_checks = s2.get("times", {}).get("total")
