"""The arm64 test bed: Debian's arm64 kernel and userland under qemu-system-aarch64 (TCG).

    python -m tests.bed.arm64guest [--loader pykexec|kexec] [--firmware dt|uefi]
                                   [--format image|gz] [--reboot]     one kdump (or -l/-e) cycle
    python -m tests.bed.arm64guest --take-snapshots [NAME...]     tests/snapshots/qemu-arm64-*

Built like the i386 bed (tests/bed/i386guest.py, whose tree finishing and /init this
module reuses) from Debian's arm64 packages (`dpkg --add-architecture arm64` and an
`apt-get update`; scripts/setup-host does both), fetched with `apt-get download`, the
kernel following the meta package `linux-image-arm64`, unpacked with `dpkg -x` into the
bed cache ($PYKEXEC_BED_CACHE or ~/.cache/pykexec-bed):

    arm64/linux-image-6.1.0-NN-arm64_<version>/   root/ (boot/vmlinuz-*: a PE-signed Image)
    arm64/root-<digest>/                          the arm64 userland (ROOT_PACKAGES)
    arm64/initramfs-<release>-<digest>.cpio.gz    busybox (arm64) + virtio-pci/9p modules

The guest is `qemu-system-aarch64 -M virt -cpu max -accel tcg`, booted with a device
tree (QEMU's, `/sys/firmware/fdt`) or through UEFI (Debian's qemu-efi-aarch64, ACPI).
Its /init (tests/bed/guest_i386/init: nothing in it is i386-specific) chroots into the
arm64 userland served read-only over 9p, where Debian's python3.11:arm64 runs
guest_arm64/stage{1,2}.py: the generic stages (tests/bed/guest) plus, in stage 1, the
DTB copied into the snapshot and Debian's `kexec -p -d` recorded, and in stage 2
Debian's `makedumpfile -d 31` and `--dump-dmesg` on the dump it wrote.

The loader is Debian's kexec:arm64 or pykexec from this checkout (`python3.11 -m pykexec`
with the checkout on PYTHONPATH, its pure-Python dependencies in the tree's dist-packages,
the arm64 purgatory cross-built on the host first: `prepare_pykexec`). A reboot case
(`run_arm64_reboot`) loads with -l and boots with -e instead of panicking; the matrix of
tests/e2e/test_arm64_kdump.py is `Arm64Case`s run two at a time by `Arm64Pool`.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tests.bed import i386guest, oracle
from tests.bed import initramfs as generic_initramfs
from tests.bed import qemu as generic_qemu
from tests.bed.kernels import (BedError, Kernel, cache_lock, cache_root, package_version,
                               resolve_package, staged)

ARCH = "arm64"
META_PACKAGE = "linux-image-arm64:arm64"
QEMU_ARM64 = os.environ.get("PYKEXEC_BED_QEMU_ARM64", "qemu-system-aarch64")
EFI_FIRMWARE = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"
GUEST_DIR = Path(__file__).resolve().parent / "guest_arm64"
INIT = i386guest.GUEST_DIR / "init"
REPO_ROOT = GUEST_DIR.parents[2]

# The userland: Python and what it links, busybox, Debian's kexec-tools (vmcore-dmesg) and
# makedumpfile, with the libraries their DT_NEEDED closure asks for (checked by _check_needed).
ROOT_PACKAGES = i386guest.ROOT_PACKAGES + (
    "makedumpfile", "libdw1", "libelf1", "liblzo2-2",
    # kexec-tools:arm64 links libxenctrl (Xen support), which links these:
    "libxenmisc4.17", "libxencall1", "libxendevicemodel1", "libxenevtchn1",
    "libxenforeignmemory1", "libxengnttab1", "libxentoollog1", "libxentoolcore1",
)
ROOT_BUILDER_VERSION = "1"
# Executables of the tree whose shared libraries must all be inside it.
NEEDED_ROOTS = ("sbin/kexec", "sbin/vmcore-dmesg", "usr/bin/makedumpfile", "usr/bin/python3.11")

CROSS_CC = "aarch64-linux-gnu-gcc"      # builds the recording shim for the guests
GUEST_PYTHON = "/usr/bin/python3.11"
KEXEC = ["/sbin/kexec"]
# pykexec from this checkout (the guest's PYTHONPATH), under Debian's python3.11:arm64
PYKEXEC = [GUEST_PYTHON, "-m", "pykexec"]
LOADERS = {"kexec": KEXEC, "pykexec": PYKEXEC}
CAPTURE_APPEND = "console=ttyAMA0 nr_cpus=1 reset_devices panic=1"
FIRST_CMDLINE = "console=ttyAMA0 panic=1 loglevel=4"


def _run(argv, **kw) -> str:
    return i386guest._run(argv, **kw)


def _need_arm64_apt() -> None:
    if "arm64" not in _run(["dpkg", "--print-foreign-architectures"]).split():
        raise BedError("Debian's arm64 packages are not available: run `dpkg --add-architecture "
                       "arm64 && apt-get update` (scripts/setup-host does)")


# --- kernel ------------------------------------------------------------------------------

def cached_kernel() -> Kernel:
    """The newest arm64 kernel already in the cache (no apt call: apt-cache takes seconds),
    else `get_kernel()`. For tests that need an arm64 Image, not the current one."""
    cached = sorted(p for p in (cache_root() / ARCH).glob("linux-image-*-arm64_*")
                    if (p / "READY").exists())
    return i386guest._ready(cached[-1]) if cached else get_kernel()


@functools.lru_cache(maxsize=None)
def get_kernel() -> Kernel:
    """Debian's current arm64 kernel package (what linux-image-arm64 depends on), unpacked.

    Kernel.bzimage is the package's boot/vmlinuz-*, which on arm64 is the Image itself.
    """
    base = cache_root() / ARCH
    base.mkdir(exist_ok=True)
    try:
        _need_arm64_apt()
        package = resolve_package(META_PACKAGE)
        if not package.endswith(":arm64"):
            package += ":arm64"
        version = package_version(package)
    except BedError:
        cached = sorted(p for p in base.glob("linux-image-*-arm64_*") if (p / "READY").exists())
        if not cached:
            raise
        return i386guest._ready(cached[-1])
    folder = base / f"{package.split(':')[0]}_{version}"
    if (folder / "READY").exists():
        return i386guest._ready(folder)
    with cache_lock(f"arm64-{folder.name}"):
        if (folder / "READY").exists():
            return i386guest._ready(folder)
        with staged(folder) as tmp:
            _run(["apt-get", "download", f"{package}={version}"], cwd=tmp)
            deb = next(tmp.glob("*.deb"))
            _run(["dpkg", "-x", str(deb), str(tmp / "root")])
            deb.unlink()
            release = next((tmp / "root" / "lib" / "modules").iterdir()).name
            (tmp / "READY").write_text(f"{package.split(':')[0]}\n{version}\n{release}\n")
    return i386guest._ready(folder)


# --- the arm64 userland ------------------------------------------------------------------

def _versions() -> Dict[str, str]:
    """Candidate versions of ROOT_PACKAGES:arm64 (one apt-cache call)."""
    out = _run(["apt-cache", "policy", *(f"{p}:arm64" for p in ROOT_PACKAGES)])
    found = dict(re.findall(r"^(\S+?):arm64:\n\s+Installed:.*\n\s+Candidate:\s*(\S+)", out, re.M))
    missing = [p for p in ROOT_PACKAGES if found.get(p) in (None, "(none)")]
    if missing:
        raise BedError(f"apt-cache policy: no arm64 candidate for {missing} (apt-get update?)")
    return {p: found[p] for p in ROOT_PACKAGES}


def _check_needed(tree: Path) -> None:
    """Every DT_NEEDED of NEEDED_ROOTS (transitively) is in the tree: ldd cannot tell."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    libdirs = [tree / d for d in ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib")]
    todo = [tree / r for r in NEEDED_ROOTS]
    seen, missing = set(), set()
    while todo:
        with open(todo.pop(), "rb") as f:
            for section in ELFFile(f).iter_sections():
                if not isinstance(section, DynamicSection):
                    continue
                for tag in section.iter_tags("DT_NEEDED"):
                    if tag.needed in seen:
                        continue
                    seen.add(tag.needed)
                    found = next((d / tag.needed for d in libdirs if (d / tag.needed).exists()), None)
                    if found is None:
                        missing.add(tag.needed)
                    else:
                        todo.append(found)
    if missing:
        raise BedError(f"arm64 userland: shared libraries missing from ROOT_PACKAGES: {sorted(missing)}")


@functools.lru_cache(maxsize=None)
def get_root() -> Path:
    """The arm64 userland tree (cached, keyed by the package versions and the builder)."""
    base = cache_root() / ARCH
    base.mkdir(exist_ok=True)
    try:
        _need_arm64_apt()
        versions = _versions()
    except BedError:
        cached = sorted(base.glob("root-*/READY"))
        if not cached:
            raise
        return cached[-1].parent
    pure = {n: i386guest._host_package_dir(n) for n in i386guest.PURE_PYTHON}
    key = hashlib.sha256(json.dumps([ROOT_BUILDER_VERSION, versions,
                                     {n: i386guest._pure_version(n) for n in pure}]).encode())
    folder = base / f"root-{key.hexdigest()[:16]}"
    if (folder / "READY").exists():
        return folder
    with cache_lock(f"arm64-{folder.name}"):
        if (folder / "READY").exists():
            return folder
        with staged(folder) as tree, tempfile.TemporaryDirectory(dir=base) as debs:
            _run(["apt-get", "download", *(f"{p}:arm64={v}" for p, v in versions.items())], cwd=debs)
            for deb in sorted(Path(debs).glob("*.deb")):
                _run(["dpkg", "-x", str(deb), str(tree)])
            _check_needed(tree)
            i386guest._finish_tree(tree, pure)
            if not (tree / "usr" / "sbin" / "makedumpfile").exists():
                (tree / "usr" / "sbin" / "makedumpfile").symlink_to("../bin/makedumpfile")
            # The guest cannot write pycs (read-only share) and compiling the stdlib on every
            # import costs seconds under TCG: compile with the host's Python 3.11 (same magic
            # number as Debian's arm64 3.11).
            _run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                  str(tree / "usr" / "lib" / "python3.11"),
                  str(tree / "usr" / "lib" / "python3" / "dist-packages")])
            (tree / "READY").write_text(json.dumps(versions, indent=1) + "\n")
    return folder


# --- initramfs ---------------------------------------------------------------------------

def _conf(root: Path) -> bytes:
    # The variable names are the i386 /init's (it serves any foreign-arch userland tree).
    return (f"BED_I386_ROOT={root}\nBED_I386_GUEST={GUEST_DIR}\n"
            f"BED_I386_REPO={REPO_ROOT}\n").encode()


def get_initramfs(kernel: Kernel, root: Optional[Path] = None) -> Path:
    """The busybox (arm64) initramfs for `kernel` (cached by its inputs)."""
    root = root or get_root()
    return generic_initramfs.foreign_initramfs(kernel, ARCH, root / "bin" / "busybox", INIT,
                                               _conf(root))


def get_image_gz(kernel: Kernel) -> Path:
    """The kernel's Image gzip-compressed, as an `Image.gz` beside it in the cache (the
    format a distribution without EFI stub signing ships; the loader inflates it)."""
    out = kernel.folder / "Image.gz"
    if out.exists():
        return out
    with cache_lock(f"arm64-{kernel.folder.name}-gz"):
        if not out.exists():
            with staged(out, file=True) as tmp:
                tmp.write_bytes(gzip.compress(kernel.bzimage.read_bytes(), compresslevel=6,
                                              mtime=0))
    return out


# --- QEMU and one cycle ------------------------------------------------------------------

def guest_path(host_path) -> str:
    """A host path as the guest's chroot sees it."""
    return i386guest.guest_path(host_path)


def qemu_argv(cfg: "generic_qemu.CycleConfig", kernel: Kernel, initrd: Path,
              results: Path) -> List[str]:
    """qemu-system-aarch64 -M virt: device tree boot, or UEFI (cfg.firmware == "uefi")."""
    firmware: List[str] = []
    if cfg.firmware == "uefi":
        if not os.path.exists(EFI_FIRMWARE):
            raise BedError(f"{EFI_FIRMWARE}: missing (apt-get install qemu-efi-aarch64)")
        firmware = ["-bios", EFI_FIRMWARE]
    elif cfg.firmware != "dt":
        raise ValueError(f"arm64 firmware must be dt or uefi, not {cfg.firmware!r}")
    return [
        cfg.qemu or QEMU_ARM64, "-M", "virt", "-accel", "tcg", "-cpu", "max",
        "-m", str(cfg.memory_mib), "-smp", str(cfg.cpus), "-nographic", "-no-reboot",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={results},mount_tag=results,security_model=none",
        "-kernel", str(kernel.bzimage), "-initrd", str(initrd),
        "-append", f"{cfg.first_cmdline} {cfg.cmdline_extra}".strip(),
        *firmware, *cfg.qemu_extra,
    ]


def cycle_config(**kw) -> "generic_qemu.CycleConfig":
    """A CycleConfig for this bed (arm64 QEMU, console, kernel and initramfs filled in)."""
    kernel = kw.pop("kernel", None) or get_kernel()
    defaults = dict(kernel=kernel, qemu=QEMU_ARM64, argv_builder=qemu_argv, firmware="dt",
                    first_cmdline=FIRST_CMDLINE, memory_mib=2048,
                    cpus=1, timeout=400, initramfs=get_initramfs(kernel, get_root()))
    defaults.update(kw)
    return generic_qemu.CycleConfig(**defaults)


@dataclass
class DumpToolResult:
    """Debian's makedumpfile:arm64 in the capture kernel (guest_arm64/stage2.py)."""

    dump_exit: Optional[int] = None          # makedumpfile -d 31 /proc/vmcore DUMP
    dump_stderr: str = ""
    dump_size: Optional[int] = None
    dmesg_exit: Optional[int] = None         # makedumpfile --dump-dmesg DUMP OUT
    dmesg_stderr: str = ""
    dmesg: str = ""
    error: Optional[str] = None

    @property
    def panic_line_found(self) -> bool:
        return generic_qemu.PANIC_LINE in self.dmesg


def run_arm64_cycle(cfg: "generic_qemu.CycleConfig"
                    ) -> Tuple["generic_qemu.CycleResult", DumpToolResult]:
    """One kdump cycle under qemu-system-aarch64 (cfg from `cycle_config`)."""
    res = generic_qemu.run_kdump_cycle(cfg)
    dump = DumpToolResult()
    path = res.run_dir / "results" / "makedumpfile.json"
    if path.exists():
        data = json.loads(path.read_text())
        dump = DumpToolResult(**{k: v for k, v in data.items()
                                 if k in DumpToolResult.__dataclass_fields__})
    elif res.captured:
        dump.error = "stage 2 wrote no makedumpfile.json"
    return res, dump


def kexec_argv(kernel: Kernel, initrd: Path, debug: bool = False) -> List[str]:
    """Debian's kexec:arm64 `-p` of the bed's kernel and initramfs, as the guest runs it."""
    return generic_qemu.loader_argv(KEXEC, guest_path(kernel.bzimage), guest_path(initrd),
                                    append=CAPTURE_APPEND, debug=debug)


def crash_argv(loader: str, image: Path, initrd: Path, extra: Sequence[str] = (),
               debug: bool = False) -> List[str]:
    """`LOADER -p IMAGE ... --initrd --append` (LOADERS name) as the guest runs it."""
    return generic_qemu.loader_argv(LOADERS[loader], guest_path(image), guest_path(initrd),
                                    append=CAPTURE_APPEND, extra=extra, debug=debug)


def prepare_pykexec() -> None:
    """The checkout ready for the arm64 guest (tests/bed/qemu.py prepare_checkout_for_guest)."""
    generic_qemu.prepare_checkout_for_guest(ARCH)


# --- normal load and boot (-l, -e) -------------------------------------------------------

def reboot_append(marker: str) -> str:
    return generic_qemu.load_exec_append(FIRST_CMDLINE, marker)


def run_arm64_reboot(cfg: "generic_qemu.CycleConfig", load: Sequence[str],
                     exec_: Sequence[str], marker: str) -> "generic_qemu.LoadExecResult":
    """Boot, run `load` (a -l whose --append carries `reboot_append(marker)`) then `exec_`
    (-e); the kernel it boots records its command line. cfg from `cycle_config`, with
    loader_argv None and no crashkernel."""
    return generic_qemu.run_load_exec(cfg, load, exec_, marker)


# --- the e2e matrix (tests/e2e/test_arm64_kdump.py, test_arm64_kexec_tools.py) -----------

@dataclass(frozen=True)
class Arm64Case:
    """One guest boot of the arm64 matrix: a crash load, a panic and the capture kernel's
    checks, or (`reboot`) a -l load and a -e boot."""

    name: str
    loader: str = "pykexec"          # LOADERS name
    firmware: str = "dt"             # dt | uefi
    memory_mib: int = 2048
    cpus: int = 1
    fmt: str = "image"               # image (Debian's PE-signed Image) | gz (Image.gz)
    extra: Tuple[str, ...] = ()      # more loader options
    reboot: bool = False
    crashkernel: str = "crashkernel=256M"
    # QEMU start to exit: ~90 s on two idle cores, 270 s seen on a machine loaded 4x over
    timeout: float = 600


@dataclass
class Arm64Outcome:
    case: Arm64Case
    kernel: Kernel
    cycle: "generic_qemu.CycleResult"
    dump: Optional[DumpToolResult] = None    # crash cases
    reboot: Optional["generic_qemu.LoadExecResult"] = None    # reboot cases
    chosen: Dict[str, object] = field(default_factory=dict)   # capture kernel: chosen.json

    def verdict(self) -> str:
        """A one-line account: the checks the tests make, and the cycle's timings."""
        res, t = self.cycle, self.cycle.timings

        def s(x):
            return "-" if x is None else f"{x:.0f}s"
        times = f"cycle {s(t.total)} (boot {s(t.boot)}, load {s(t.load)}"
        if self.reboot is not None:
            rb = self.reboot
            load = rb.before.get("load_seconds")
            return (f"-l exit {rb.before.get('load_exit')}, -e "
                    f"{'booted the new kernel' if rb.rebooted else 'NO new kernel'}; "
                    f"cycle {s(t.total)} (load {s(load)})")
        p, d = res.pattern, self.dump or DumpToolResult()
        return (f"load exit {res.loader_exit}, captured {res.captured}, "
                f"{res.nt_prstatus} NT_PRSTATUS, pattern {p.matched}/{p.recorded}, "
                f"vmcore-dmesg {'ok' if res.panic_line_found else 'FAIL'}, makedumpfile -d 31 "
                f"{'ok' if d.dump_exit == 0 and d.panic_line_found else 'FAIL'}; {times}, "
                f"panic->capture init {s(t.panic_to_capture_init)})")


def run_case(case: Arm64Case, run_dir: Optional[Path] = None) -> Arm64Outcome:
    """Boot `case` once (the kernel, userland and initramfs are the cached shared ones)."""
    import secrets
    kernel = get_kernel()
    initrd = get_initramfs(kernel, get_root())
    image = get_image_gz(kernel) if case.fmt == "gz" else kernel.bzimage
    common = dict(memory_mib=case.memory_mib, cpus=case.cpus, firmware=case.firmware,
                  kernel=kernel, name=f"arm64-{case.name}", run_dir=run_dir,
                  timeout=case.timeout)
    if case.reboot:
        marker = "bed_marker=" + secrets.token_hex(6)
        prefix = LOADERS[case.loader]
        load = [*prefix, "-l", guest_path(image), f"--initrd={guest_path(initrd)}",
                f"--append={reboot_append(marker)}", *case.extra]
        rb = run_arm64_reboot(cycle_config(loader_argv=None, cmdline_extra="", **common),
                              load, [*prefix, "-e"], marker)
        return Arm64Outcome(case, kernel, rb.cycle, reboot=rb)
    # pykexec's load takes ~20 s under TCG, 60 s on a loaded machine (stage 1's default
    # allows 120 s)
    cfg = cycle_config(loader_argv=crash_argv(case.loader, image, initrd, case.extra),
                       cmdline_extra=case.crashkernel, guest_config={"loader_timeout": 300},
                       **common)
    res, dump = run_arm64_cycle(cfg)
    chosen = res.run_dir / "results" / "chosen.json"
    return Arm64Outcome(case, kernel, res, dump=dump,
                        chosen=json.loads(chosen.read_text()) if chosen.exists() else {})


class Arm64Pool:
    """Runs the wanted cases `parallel` at a time, as soon as the first one is asked for:
    a TCG guest keeps about one host core busy per vCPU, and CI has two cores."""

    def __init__(self, run_dir_for, parallel: int = 2):
        import threading
        self.run_dir_for = run_dir_for        # case name -> a fresh folder
        self.parallel = parallel
        self.lock = threading.Lock()
        self.pool = None
        self.futures: Dict[str, object] = {}
        self.wanted: List[Arm64Case] = []
        self.purgatory_error: Optional[str] = None   # pykexec's arm64 purgatory did not build

    def get(self, case: Arm64Case) -> Arm64Outcome:
        from concurrent.futures import ThreadPoolExecutor
        with self.lock:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="arm64-case")
                for c in self.wanted:
                    self._submit(c)
            if case.name not in self.futures:
                self._submit(case)
        return self.futures[case.name].result()

    def _submit(self, case: Arm64Case) -> None:
        if case.name not in self.futures:
            self.futures[case.name] = self.pool.submit(run_case, case, self.run_dir_for(case.name))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def summary_lines(self) -> List[str]:
        """One line per case that ran: what it showed and how long its boot took."""
        lines = []
        for name, future in self.futures.items():
            if not future.done() or future.cancelled():
                continue
            if future.exception() is not None:
                lines.append(f"{name}: ERROR {future.exception()!r}"[:200])
                continue
            out = future.result()
            lines.append(f"{name}: {out.verdict()}")
        return lines


# --- machine snapshots of arm64 guests -----------------------------------------------------

SNAPSHOTS_DIR = REPO_ROOT / "tests" / "snapshots"
_FIRMWARE = {"dt": "device tree boot (QEMU's DTB, no EFI)",
             "uefi": "UEFI boot (edk2 qemu-efi-aarch64, ACPI; the DTB is a /chosen stub)"}


@dataclass(frozen=True)
class Arm64Machine:
    name: str
    memory_mib: int
    cpus: int
    firmware: str
    exercises: str
    crashkernel: str = "crashkernel=256M"


ARM64_MACHINES = (
    Arm64Machine("qemu-arm64-2g-1cpu", 2048, 1, "dt",
                 "the smallest arm64 machine: one CPU, RAM 0x40000000-0xbfffffff, QEMU's DTB"),
    Arm64Machine("qemu-arm64-2g-2cpu", 2048, 2, "dt",
                 "two CPUs (two crash_notes, two cpu nodes in the DTB)"),
    Arm64Machine("qemu-arm64-5g-2cpu", 5120, 2, "dt",
                 "RAM above 4 GiB (0x40000000-0x17fffffff in one range): PT_LOADs above 4 GiB, "
                 "a crash region the kernel keeps below 4 GiB (ZONE_DMA)"),
    Arm64Machine("qemu-arm64-2g-1cpu-uefi", 2048, 1, "uefi",
                 "UEFI boot with ACPI: /sys/firmware/efi, the firmware's reserved ranges in "
                 "/proc/iomem, a DTB with only /chosen (the EFI stub's)"),
)


def take_arm64_snapshot(machine: Arm64Machine, dest: Path, timeout: float = 600):
    """Boot `machine`, take its snapshot and the kexec-tools record, copy them to `dest`."""
    kernel = get_kernel()
    initrd = get_initramfs(kernel, get_root())
    notes = (f"{machine.name}: QEMU 7.2 virt, qemu-system-aarch64 TCG -cpu max, "
             f"{_FIRMWARE[machine.firmware]}, Debian kernel {kernel.release}, KASLR on; "
             f"{machine.memory_mib} MiB, {machine.cpus} CPU(s), {machine.crashkernel}. "
             f"Exercises {machine.exercises}. sys/firmware/fdt is the machine's "
             f"/sys/firmware/fdt; oracle/ holds Debian's kexec-tools:arm64 `kexec -d -p` of the "
             f"bed's kernel and initramfs in this guest: kexec-p-d.json a real load, shim/ the "
             f"same under the recording shim (every segment's bytes, getrandom fixed).")
    cfg = cycle_config(loader_argv=None, memory_mib=machine.memory_mib, cpus=machine.cpus,
                       cmdline_extra=machine.crashkernel, take_snapshot=True,
                       snapshot_notes=notes, name=f"snap-{machine.name}", kernel=kernel,
                       firmware=machine.firmware, timeout=timeout,
                       guest_config={"record_kexec_argv": kexec_argv(kernel, initrd, debug=True),
                                     "record_shim": guest_path(oracle.shim_library(cc=CROSS_CC))})
    res, _ = run_arm64_cycle(cfg)
    if res.snapshot is None:
        raise BedError(f"{machine.name}: no snapshot taken\n{res.describe()}")
    if not (res.snapshot / "sys" / "firmware" / "fdt").exists():
        raise BedError(f"{machine.name}: the snapshot has no sys/firmware/fdt\n{res.describe()}")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(res.snapshot, dest)
    trim_shim_record(dest / "oracle" / "shim")
    return res


SEGMENT_KEEP = 1 << 20


def trim_shim_record(folder: Path) -> None:
    """Replace the recorded segments over SEGMENT_KEEP bytes (the kernel, the initrd: not
    for the repository) by their SHA-256 in `<file>.sha256`; the DTB, purgatory and core
    header stay."""
    for blob in sorted(folder.glob("c*-seg*.bin")):
        if blob.stat().st_size > SEGMENT_KEEP:
            digest = hashlib.sha256(blob.read_bytes()).hexdigest()
            blob.with_name(blob.name + ".sha256").write_text(f"{digest}  {blob.name}\n")
            blob.unlink()


def take_arm64_snapshots_main(argv: Sequence[str]) -> int:
    known = {m.name: m for m in ARM64_MACHINES}
    wanted = list(argv) or list(known)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        print(f"unknown snapshot names {unknown}; known: {sorted(known)}", file=sys.stderr)
        return 2
    failed = 0
    for n in wanted:      # one at a time: the machine has 2 cores for everyone
        try:
            res = take_arm64_snapshot(known[n], SNAPSHOTS_DIR / n)
            print(f"{n}: {' '.join(res.crash_region)} (boot {res.timings.boot} s, "
                  f"total {res.timings.total:.1f} s)")
        except BedError as e:
            failed += 1
            print(f"{n}: FAILED: {e}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:  # pragma: no cover - manual use
    import argparse
    import secrets
    ap = argparse.ArgumentParser(description="one arm64 kdump cycle (or -l/-e with --reboot)")
    ap.add_argument("--loader", default="pykexec", choices=sorted(LOADERS),
                    help="pykexec (this checkout, in the guest's Python) or Debian's kexec")
    ap.add_argument("--format", default="image", choices=("image", "gz"),
                    help="Debian's (PE-signed) Image, or it gzip-compressed (Image.gz)")
    ap.add_argument("--firmware", default="dt", choices=("dt", "uefi"))
    ap.add_argument("--memory", type=int, default=2048)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--pattern-mib", type=int, default=64)
    ap.add_argument("--extra", default="", help="more loader options (split on blanks)")
    ap.add_argument("--reboot", action="store_true", help="-l then -e instead of -p and a panic")
    ap.add_argument("--take-snapshots", nargs="*", metavar="NAME",
                    help="boot the ARM64_MACHINES (or those named) and save their snapshots")
    args = ap.parse_args(argv)
    if args.take_snapshots is not None:
        return take_arm64_snapshots_main(args.take_snapshots)
    kernel = get_kernel()
    initrd = get_initramfs(kernel, get_root())
    image = get_image_gz(kernel) if args.format == "gz" else kernel.bzimage
    if args.loader == "pykexec":
        prepare_pykexec()
    common = dict(memory_mib=args.memory, cpus=args.cpus, firmware=args.firmware, kernel=kernel,
                  name=f"arm64-{args.loader}-{args.firmware}")
    if args.reboot:
        marker = "bed_marker=" + secrets.token_hex(6)
        prefix = LOADERS[args.loader]
        load = [*prefix, "-l", guest_path(image), f"--initrd={guest_path(initrd)}",
                f"--append={reboot_append(marker)}", *args.extra.split()]
        rb = run_arm64_reboot(cycle_config(loader_argv=None, cmdline_extra="", **common),
                              load, [*prefix, "-e"], marker)
        print(rb.describe())
        print(f"rebooted: {rb.rebooted}, total {rb.cycle.timings.total} s")
        return 0 if rb.rebooted else 1
    cfg = cycle_config(loader_argv=crash_argv(args.loader, image, initrd, args.extra.split()),
                       pattern_mib=args.pattern_mib, **common)
    res, dump = run_arm64_cycle(cfg)
    print(res.summary())
    print(f"vmcore-dmesg exit {res.vmcore_dmesg_exit}; makedumpfile -d 31 exit {dump.dump_exit} "
          f"({dump.dump_size} bytes), --dump-dmesg exit {dump.dmesg_exit}, panic line "
          f"{'found' if dump.panic_line_found else 'NOT found'}{' ' + dump.error if dump.error else ''}")
    return 0 if res.ok and dump.panic_line_found else 1


if __name__ == "__main__":
    sys.exit(main())
