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

Paths given to the loader are host paths and work unchanged in the guest's chroot. The
chroot has a tmpfs on /tmp; the host's /tmp entries that hold paths the guest needs (the
loader's files, the Python, the repository) are bound through it (BED_TMP_KEEP).
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
from typing import Callable, Dict, List, Optional, Sequence

from tests.bed.initramfs import GUEST_DIR, get_initramfs
from tests.bed.kernels import DEFAULT_SERIES, SERIES, BedError, Kernel, cache_root, get_kernel

QEMU = os.environ.get("PYKEXEC_BED_QEMU", "qemu-system-x86_64")
REPO_ROOT = GUEST_DIR.parents[2]
DEFAULT_APPEND = "console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=1"
PANIC_LINE = "sysrq triggered crash"

# Loaders, as the argv prefix that precedes the kexec-style options. The e2e tests are
# parametrized over this table.
LOADERS: Dict[str, List[str]] = {
    "kexec": ["/usr/sbin/kexec"],
    "pykexec": [sys.executable, "-m", "pykexec"],
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
    firmware: str = "bios"                  # "bios" (SeaBIOS) or "uefi" (OVMF, Debian's ovmf)
    qemu_extra: Sequence[str] = ()
    qemu: Optional[str] = None              # QEMU binary; default QEMU (another arch's guests)
    initramfs: Optional[Path] = None        # default: get_initramfs(kernel)
    # Another architecture's QEMU command line: called as qemu_argv(cfg, kernel, initrd,
    # results) is; default qemu_argv (x86 PC).
    argv_builder: Optional[Callable[..., List[str]]] = None
    guest_config: Dict[str, object] = field(default_factory=dict)  # more keys for config.json
    # A fixed crash region (crashkernel=256M@16M) is not reserved when KASLR happened to
    # put the first kernel there (about 1 boot in 3 with 1 GiB; a CI run on a busy machine
    # once met 6 such boots in a row): boot again, up to this many times in all. A refused
    # boot costs about 12 s. Only such boots are retried, nothing else.
    attempts: int = 12
    # Stage 2 copies /proc/vmcore into results/vmcore (streamed; ~the guest's RAM in size).
    # Off by default: only the vmcore tests ask for it (tests/bed/keep.py).
    keep_vmcore: bool = False


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
    attempts: int = 1                          # boots needed to get a crash region
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
    capture_efi_runtime: Optional[bool] = None   # /sys/firmware/efi/runtime in the capture kernel
    capture_dmesg: str = ""
    vmcore_dmesg: str = ""
    vmcore_dmesg_exit: Optional[int] = None
    panic_line_found: bool = False
    timings: Timings = field(default_factory=Timings)
    errors: List[str] = field(default_factory=list)
    kept_vmcore: Optional[Path] = None         # results/vmcore when cfg.keep_vmcore

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
            f"{self.config.firmware.upper()}, "
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


def tmp_entries(paths: Sequence[str]) -> List[str]:
    """First components of the paths under /tmp (also inside `--opt=/path` arguments)."""
    found = set()
    for arg in paths:
        for path in re.findall(r"(?:^|=)(/[^\s,]*)", str(arg)):
            for p in {os.path.abspath(path), os.path.realpath(path)}:
                parts = p.split("/")
                if len(parts) > 2 and parts[1] == "tmp" and parts[2]:
                    found.add(parts[2])
    # /tmp/results is the guest's own results share (a loader may write there, e.g.
    # --save-plan): it needs no host folder.
    found.discard("results")
    bad = [e for e in found if not re.fullmatch(r"[\w.+-]+", e)]
    if bad:
        raise BedError(f"cannot pass /tmp/{bad[0]} into the guest: rename it")
    return sorted(found)


def _guest_needs(cfg: "CycleConfig") -> List[str]:
    """Host paths the guest's chroot uses: the loader's arguments, the Python, the code."""
    paths = [str(GUEST_DIR), sys.executable, sys.prefix, sys.base_prefix]
    paths += [p for p in sys.path if p.startswith("/")]
    paths += list(cfg.loader_argv or [])
    return paths


def _config_sh(values: Dict[str, str]) -> str:
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


KEEP_RUNS = 30


def new_run_dir(name: str = "cycle") -> Path:
    """A fresh folder under <bed cache>/runs (the oldest beyond KEEP_RUNS are removed)."""
    base = cache_root() / "runs"
    base.mkdir(parents=True, exist_ok=True)
    old = sorted(base.iterdir())[:-KEEP_RUNS]
    for d in old:
        try:
            age = time.time() - d.stat().st_mtime
        except FileNotFoundError:
            continue                                 # pruned by a parallel run just now
        if age > 3600:                               # never one a parallel run may be using
            shutil.rmtree(d, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{stamp}-{name}-", dir=base))


OVMF_PATHS = ("/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd")


def ovmf_path() -> Optional[str]:
    """Debian's OVMF firmware image (package ovmf), or None."""
    return next((p for p in OVMF_PATHS if os.path.exists(p)), None)


def firmware_args(firmware: str) -> List[str]:
    if firmware == "bios":
        return []
    if firmware == "uefi":
        path = ovmf_path()
        if path is None:
            raise BedError("UEFI guest: no OVMF firmware (apt-get install ovmf)")
        return ["-bios", path]
    raise ValueError(f"firmware must be bios or uefi, not {firmware!r}")


def qemu_argv(cfg: CycleConfig, kernel: Kernel, initrd: Path, results: Path) -> List[str]:
    return [
        cfg.qemu or QEMU, "-accel", "tcg", "-cpu", "max", "-m", str(cfg.memory_mib), "-smp", str(cfg.cpus),
        "-nographic", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={results},mount_tag=results,security_model=none",
        "-kernel", str(kernel.bzimage), "-initrd", str(initrd),
        "-append", f"{cfg.first_cmdline} {cfg.cmdline_extra}".strip(),
        *firmware_args(cfg.firmware), *cfg.qemu_extra,
    ]


_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|.)|\r")   # terminal escapes, carriage returns


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
                line = _ANSI.sub("", raw.decode("utf-8", "replace").rstrip("\r\n"))
                log.write(f"[{t:8.3f}] {line}\n")
                if "BED: stage1 init" in line:
                    self.mark("stage1_init", t)
                elif ("BED: panic" in line or "sysrq: Trigger a crash" in line
                      or "Kernel panic - not syncing" in line):
                    self.mark("panic", t)   # the first of them (the tty may lose BED's)
                elif "BED: stage2 init" in line:
                    self.mark("stage2_init", t)
                elif "Linux version" in line and "panic" in self.marks:
                    self.mark("capture_kernel", t)


def run_kdump_cycle(cfg: CycleConfig) -> CycleResult:
    """Boot a guest, load a crash kernel with cfg.loader_argv, panic, check the dump."""
    qemu = cfg.qemu or QEMU
    if shutil.which(qemu) is None:
        raise BedError(f"{qemu}: not installed (apt-get install qemu-system-x86)")
    kernel = cfg.kernel or get_kernel()
    initrd = Path(cfg.initramfs) if cfg.initramfs else get_initramfs(kernel)
    tmp_keep = tmp_entries(_guest_needs(cfg))
    run_dir = Path(cfg.run_dir) if cfg.run_dir else new_run_dir(cfg.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, max(1, cfg.attempts) + 1):
        res = _boot_once(cfg, kernel, initrd, run_dir, tmp_keep)
        res.attempts = attempt
        if res.stage1_result != "no-crash-region" or attempt >= cfg.attempts:
            break
        for name in ("serial.log", "results"):
            os.rename(run_dir / name, run_dir / f"{name}.attempt{attempt}")
    if res.stage1_result == "no-crash-region":
        res.errors.append(f"no crash region reserved ({cfg.cmdline_extra}) in {res.attempts} boots")
    return res


def _boot_once(cfg: CycleConfig, kernel: Kernel, initrd: Path, run_dir: Path,
               tmp_keep: Sequence[str]) -> CycleResult:
    results = run_dir / "results"
    if results.exists():
        shutil.rmtree(results)
    results.mkdir()
    (results / "config.json").write_text(json.dumps({
        "loader_argv": list(cfg.loader_argv) if cfg.loader_argv else None,
        "take_snapshot": cfg.take_snapshot, "snapshot_notes": cfg.snapshot_notes,
        "pattern_mib": cfg.pattern_mib,
        "require_crash_region": "crashkernel=" in cfg.cmdline_extra,
        "keep_vmcore": cfg.keep_vmcore,
        **cfg.guest_config,
    }, indent=1))
    (results / "config.sh").write_text(_config_sh({
        "BED_PYTHON": sys.executable, "BED_GUEST": str(GUEST_DIR),
        # the repository, so pykexec imports in the guest even if not installed there
        "BED_PYTHONPATH": str(REPO_ROOT),
        "BED_TMP_KEEP": " ".join(tmp_keep)}))
    argv = (cfg.argv_builder or qemu_argv)(cfg, kernel, initrd, results)
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
    res.capture_efi_runtime = s2.get("efi_runtime")
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
    if (results / "vmcore").exists():
        res.kept_vmcore = results / "vmcore"


# --- pykexec run inside another architecture's guest: the arm64 and i386 beds --------------

def prepare_checkout_for_guest(arch: str) -> None:
    """Make this checkout ready for a guest that runs pykexec from it read-only and has no
    compiler: `arch`'s purgatory built here (a cross compiler for arm64 on x86), and
    pykexec's modules byte-compiled when this host's Python is 3.11, whose pycs the guest's
    Debian python3.11 reads (without them it compiles every module on every run, under TCG)."""
    from pykexec.purgatory.build import declared_specs, purgatory_object
    specs = [spec for spec in declared_specs() if spec.arch == arch]
    if not specs:
        raise BedError(f"pykexec declares no {arch} purgatory (pykexec/arch/*/purgatory_spec.py)")
    try:
        for spec in specs:
            purgatory_object(spec)
    except Exception as e:           # PurgatoryBuildError, or the compiler missing
        raise BedError(f"{arch} purgatory: {e}") from None
    if sys.version_info[:2] == (3, 11):
        import compileall
        compileall.compile_dir(str(REPO_ROOT / "pykexec"), quiet=1)


# --- a normal load (-l) and its boot (-e) in one guest: the arm64 and i386 beds ---------

LOAD_EXEC_MARK = "bed_boot=after"   # guest/load_exec.py knows the booted kernel by it


@dataclass
class LoadExecResult:
    """A load with -l and a boot with -e in one guest (guest/load_exec.py)."""

    cycle: CycleResult
    marker: str
    before: Dict[str, object]        # reboot-before.json: load_exit, load_seconds, ...
    after: Dict[str, object]         # reboot-after.json: cmdline, release (, fdt_bootargs)
    # host clock, seconds: boot (QEMU start to the first /init), exec_to_init (the first
    # kernel's "BED: exec" to the new kernel's /init), total (QEMU start to exit); the
    # load's own time is before["load_seconds"] (the guest's clock)
    timings: Dict[str, Optional[float]] = field(default_factory=dict)

    @property
    def rebooted(self) -> bool:
        return self.marker in str(self.after.get("cmdline", "")).split()

    def describe(self) -> str:
        return (f"before: {json.dumps(self.before, indent=1)[-3000:]}\nafter: {self.after}\n"
                f"timings: {self.timings}\n{self.cycle.describe()}")


def load_exec_append(first_cmdline: str, marker: str) -> str:
    """The new kernel's command line: the first kernel's, LOAD_EXEC_MARK and `marker`."""
    return f"{first_cmdline} {LOAD_EXEC_MARK} {marker}"


def _load_exec_timings(serial_log: Path, total: Optional[float]) -> Dict[str, Optional[float]]:
    marks: Dict[str, float] = {}
    stamped = re.compile(r"^\[\s*([0-9.]+)\] (.*)$")
    for line in serial_log.read_text(errors="replace").splitlines() if serial_log.exists() else ():
        m = stamped.match(line)
        if not m:
            continue
        t, text = float(m[1]), m[2]
        if "BED: stage1 init" in text:
            marks.setdefault("exec_init" if "exec" in marks else "init", t)
        elif "BED: exec" in text:
            marks.setdefault("exec", t)
    exec_to_init = (round(marks["exec_init"] - marks["exec"], 3)
                    if "exec_init" in marks else None)
    return {"boot": marks.get("init"), "exec_to_init": exec_to_init, "total": total}


def run_load_exec(cfg: CycleConfig, load: Sequence[str], exec_: Sequence[str],
                  marker: str) -> LoadExecResult:
    """Boot cfg's guest, run `load` (a -l whose --append carries `load_exec_append(...,
    marker)`) then `exec_` (-e); the kernel it boots records its command line. The bed's
    stage 1 must hand config.json's `reboot` to guest/load_exec.py; no crash region needed."""
    import dataclasses
    cfg = dataclasses.replace(cfg, loader_argv=None, take_snapshot=False, guest_config={
        **cfg.guest_config, "reboot": {"load": list(load), "exec": list(exec_)}})
    res = run_kdump_cycle(cfg)
    results = res.run_dir / "results"

    def read(name):
        path = results / name
        return json.loads(path.read_text()) if path.exists() else {}
    return LoadExecResult(res, marker, read("reboot-before.json"), read("reboot-after.json"),
                          _load_exec_timings(res.serial_log, res.timings.total))


# --- machine snapshots of guests: scripts/take-guest-snapshots ---------------------------

SNAPSHOTS_DIR = Path(__file__).resolve().parents[1] / "snapshots"
_FIRMWARE = {"bios": "SeaBIOS, no EFI", "uefi": "OVMF UEFI (EFI runtime map, no acpi_rsdp)"}
_QEMU = "QEMU 7.2 pc (i440FX), {firmware}, TCG -cpu max, Debian kernel {release}, KASLR on"


@dataclass(frozen=True)
class GuestMachine:
    name: str
    memory_mib: int
    cpus: int
    crashkernel: str
    exercises: str
    firmware: str = "bios"
    default: bool = True      # taken by scripts/take-guest-snapshots without names
    series: str = DEFAULT_SERIES   # the kernel series (tests/bed/kernels.py SERIES)
    # room to grow: DIMM slots and CPU slots the kernel counts as hot-pluggable
    # (tests/bed/hotplug.py room_argv), as a cloud VM has
    hotplug_room: bool = False


GUEST_MACHINES = (
    GuestMachine("qemu-x86_64-1g-1cpu", 1024, 1, "crashkernel=256M",
                 "the smallest machine: one CPU (one crash_notes, so one CPU PT_NOTE), one RAM "
                 "range above 1 MiB split by the crash region"),
    GuestMachine("qemu-x86_64-1g-2cpu", 1024, 2, "crashkernel=256M",
                 "the machine of the reference trace: two CPUs, crash region high in the "
                 "first GiB (bzImage crash loads)"),
    GuestMachine("qemu-x86_64-4g-2cpu", 4096, 2, "crashkernel=256M",
                 "RAM above 4 GiB (3 GiB below the PCI hole + 1 GiB at 0x100000000): "
                 "PT_LOADs and e820 entries above 4 GiB, crash region below 4 GiB"),
    GuestMachine("qemu-x86_64-1g-2cpu-at16m", 1024, 2, "crashkernel=256M@16M",
                 "crash region at 16 MiB (0x1000000-0x10ffffff), where kexec-tools loads an "
                 "ELF vmlinux (--args-linux) at its link address"),
    GuestMachine("qemu-x86_64-4g-2cpu-high", 4096, 2, "crashkernel=256M,high",
                 "crashkernel=,high: a crash region above 4 GiB plus the automatic low "
                 "region below 4 GiB (two 'Crash kernel' ranges in /proc/iomem)"),
    GuestMachine("qemu-x86_64-1g-2cpu-uefi", 1024, 2, "crashkernel=256M",
                 "UEFI boot: /sys/firmware/efi with systab and the runtime map, so kexec-tools "
                 "passes efi_info and an EFI setup_data instead of acpi_rsdp=; an e820 with "
                 "the firmware's many reserved and ACPI ranges", firmware="uefi",
                 # not in the tree yet: pykexec has no EFI boot_params/setup_data support,
                 # and the differential tests run pykexec on every snapshot in the tree.
                 default=False),
    GuestMachine("qemu-x86_64-1g-1cpu-612", 1024, 1, "crashkernel=256M",
                 "today's kernel (bookworm-backports' 6.12, CONFIG_CRASH_HOTPLUG) in a VM with "
                 "room to grow: /sys/kernel/crash_elfcorehdr_size and the crash_hotplug files, "
                 "CPUs 0-3 possible but only 0 present, 4 DIMM slots",
                 series="backports", hotplug_room=True),
)


def take_guest_snapshot(machine: GuestMachine, dest: Path, kernel: Optional[Kernel] = None,
                        timeout: float = 180) -> CycleResult:
    """Boot `machine`, take its snapshot before anything is loaded, copy it to `dest`.
    `kernel` serves the default series only; another series' machine gets its own."""
    if kernel is None or machine.series != DEFAULT_SERIES:
        kernel = get_kernel(series=machine.series)
    qemu = _QEMU.format(firmware=_FIRMWARE[machine.firmware], release=kernel.release)
    room = None
    if machine.hotplug_room:
        from tests.bed.hotplug import HotplugPlan, room_argv
        plan = HotplugPlan()
        room = room_argv(plan)
        qemu += (f", room to grow (-smp maxcpus={plan.maxcpus}, -m slots={plan.slots},"
                 f"maxmem={plan.maxmem_mib}M; a VMware DMI serial so that the kernel counts "
                 "the CPU slots as hot-pluggable: tests/bed/hotplug.py)")
    notes = (f"{machine.name}: {qemu}; "
             f"{machine.memory_mib} MiB, {machine.cpus} CPU(s), {machine.crashkernel}. "
             f"Exercises {machine.exercises}.")
    res = run_kdump_cycle(CycleConfig(
        loader_argv=None, memory_mib=machine.memory_mib, cpus=machine.cpus,
        cmdline_extra=machine.crashkernel, take_snapshot=True, snapshot_notes=notes,
        name=f"snap-{machine.name}", kernel=kernel, timeout=timeout, firmware=machine.firmware,
        argv_builder=room))
    if res.snapshot is None:
        raise BedError(f"{machine.name}: no snapshot taken\n{res.describe()}")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(res.snapshot, dest)
    return res


def take_guest_snapshots_main(argv: Sequence[str]) -> int:
    wanted = list(argv) or [m.name for m in GUEST_MACHINES if m.default]
    known = {m.name: m for m in GUEST_MACHINES}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        print(f"unknown snapshot names {unknown}; known: {sorted(known)}", file=sys.stderr)
        return 2
    kernel = get_kernel()
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        jobs = {n: pool.submit(take_guest_snapshot, known[n], SNAPSHOTS_DIR / n, kernel)
                for n in wanted}
        failed = 0
        for n, job in jobs.items():
            try:
                res = job.result()
                size = sum(p.stat().st_size for p in (SNAPSHOTS_DIR / n).rglob("*") if p.is_file())
                print(f"{n}: {size // 1024} KiB, {' '.join(res.crash_region)} "
                      f"(boot {res.timings.boot:.1f} s, total {res.timings.total:.1f} s, "
                      f"{res.attempts} boot(s))")
            except BedError as e:
                failed += 1
                print(f"{n}: FAILED: {e}", file=sys.stderr)
    return 1 if failed else 0


# --- command line: scripts/kdump-demo ------------------------------------------------------

def resolve_loader(name: str) -> List[str]:
    """A LOADERS name, "pykexec" (this project, as `python -m pykexec`), or a command line."""
    if name in LOADERS:
        return list(LOADERS[name])
    if name == "pykexec":
        return [sys.executable, "-m", "pykexec"]
    return shlex.split(name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(
        prog="kdump-demo",
        description="Run one real kdump cycle in a QEMU guest (TCG): boot a Debian kernel, load "
                    "a capture kernel with the chosen loader, panic with sysrq, and check in the "
                    "capture kernel that /proc/vmcore is complete and the memory pattern intact.")
    ap.add_argument("--loader", default="pykexec",
                    help="pykexec (this project, default; with -c so that its own kexec_load "
                         "plan and purgatory are used, not the kernel's file loader), kexec "
                         "(Debian's /usr/sbin/kexec), or a command line that takes kexec's options")
    ap.add_argument("--format", choices=("bzimage", "elf"), default="bzimage",
                    help="capture kernel format: the bzImage, or the ELF vmlinux extracted from "
                         "it (loaded with --args-linux; needs crashkernel=256M@16M)")
    ap.add_argument("--firmware", choices=("bios", "uefi"), default="bios",
                    help="guest firmware: SeaBIOS (default) or OVMF UEFI (needs Debian's ovmf)")
    ap.add_argument("--memory", type=int, default=1024, help="guest RAM in MiB (default 1024)")
    ap.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    ap.add_argument("--pattern-mib", type=int, default=64,
                    help="MiB of patterned memory to check in the dump (default 64)")
    ap.add_argument("--append", default=DEFAULT_APPEND, help="capture kernel command line")
    ap.add_argument("--snapshot", action="store_true",
                    help="also save a machine snapshot of the guest (in the run folder)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds before QEMU is killed")
    ap.add_argument("--series", choices=SERIES, default=None,
                    help="Debian kernel series to boot: 6.1 (bookworm, default) or backports "
                         "(bookworm-backports' linux-image-amd64, fetched through the bed's "
                         "own apt state)")
    args = ap.parse_args(argv)

    print("preparing: Debian kernel package and busybox initramfs (cached in "
          f"{cache_root()}) ...", flush=True)
    kernel = get_kernel(series=args.series)
    initrd = get_initramfs(kernel)
    image = kernel.bzimage if args.format == "bzimage" else kernel.vmlinux
    extra = ["--args-linux"] if args.format == "elf" else []
    if args.loader == "pykexec":
        extra.append("-c")
    crashkernel = "crashkernel=256M" if args.format == "bzimage" else "crashkernel=256M@16M"
    cfg = CycleConfig(
        loader_argv=loader_argv(resolve_loader(args.loader), str(image), str(initrd),
                                append=args.append, extra=extra),
        memory_mib=args.memory, cpus=args.cpus, cmdline_extra=crashkernel,
        pattern_mib=args.pattern_mib, take_snapshot=args.snapshot, timeout=args.timeout,
        name=f"demo-{args.format}", kernel=kernel, firmware=args.firmware)
    print(f"kernel {kernel.package} {kernel.version} ({image.name}); running the cycle in QEMU "
          "(about 30 s) ...", flush=True)
    res = run_kdump_cycle(cfg)
    print()
    print(f"loaded: {args.format} {image} ({image.stat().st_size / 2**20:.1f} MiB), initrd "
          f"{initrd.name} ({initrd.stat().st_size / 2**20:.1f} MiB), with {args.loader}")
    print(res.summary())
    if res.snapshot:
        print(f"snapshot: {res.snapshot}")
    if res.ok:
        print("\nRESULT: OK - the capture kernel booted and the dump is right")
        return 0
    print("\nRESULT: FAILED")
    for err in res.errors:
        print(f"  {err.strip()}")
    if res.loader_exit not in (0, None) and res.loader_stderr:
        print("loader stderr (tail):\n" + "\n".join(res.loader_stderr.splitlines()[-15:]))
    print(f"serial log tail:\n{res.serial_tail(25)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
