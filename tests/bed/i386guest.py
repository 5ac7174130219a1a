"""The i386 test bed: Debian's 32-bit kernels, a 32-bit Python, kdump cycles under
qemu-system-i386 (TCG; qemu-system-x86_64 for guests with more than 4 GiB, see qemu_for).

    python -m tests.bed.i386guest [--format elf|bzimage] [--loader pykexec|kexec]   one cycle
    python -m tests.bed.i386guest --reboot [--flavour 686-pae --memory 5120]   -l, then -e
    python -m tests.bed.i386guest --take-snapshots [NAME...]      tests/snapshots/qemu-i386-*

Built from Debian's i386 packages (needs `dpkg --add-architecture i386` and an
`apt-get update`; scripts/setup-host does both), fetched with `apt-get download` and
unpacked with `dpkg -x` into the bed cache ($PYKEXEC_BED_CACHE or ~/.cache/pykexec-bed):

    i386/linux-image-6.1.0-NN-686[-pae]_<version>/   root/ (boot/vmlinuz-*, modules), vmlinux
    i386/root-<digest>/                               a 32-bit userland (see `get_root`)
    i386/initramfs-<release>-<digest>.cpio.gz          busybox (i386) + virtio/9p modules + /init

The guest runs the 32-bit userland from the host through the read-only 9p share, as a
chroot (tests/bed/guest_i386/init): Debian's python3.11:i386 with pyelftools, construct
and click (pure Python, copied from the host's site-packages), busybox and Debian's
kexec-tools:i386 (`kexec`, `vmcore-dmesg`). The host folder is mounted at /host inside
that chroot, so the repository, the kernels and the results are reached as /host/<host
path>. Keeping the userland out of the initramfs keeps the capture kernel small: the
2006 document's crash region is 64 MiB, which could not hold the kernel plus a 40 MiB
initramfs with Python in it.

One kdump cycle is tests/bed/qemu.py's `run_kdump_cycle` with this module's QEMU binary,
kernel and initramfs in its CycleConfig (`run_i386_cycle`); the generic stage scripts run under the 32-bit
Python, wrapped by guest_i386/stage{1,2}.py, which add the low-memory check: a copy of
the low 640 KiB read through /proc/kcore before the panic, compared with what
/proc/vmcore shows for that range in the capture kernel (the backup copy purgatory made).

A reboot case (`run_i386_reboot`, tests/e2e/test_i386_reboot.py) loads with -l and boots
with -e instead (tests/bed/qemu.py run_load_exec, tests/bed/guest/load_exec.py).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tests.bed import initramfs as generic_initramfs
from tests.bed import qemu as generic_qemu
from tests.bed.kernels import (BedError, Kernel, cache_lock, cache_root, extract_vmlinux,
                               package_version, resolve_package, staged)

ARCH = "i386"
QEMU_I386 = os.environ.get("PYKEXEC_BED_QEMU_I386", "qemu-system-i386")
# QEMU 7.2's qemu-system-i386 (TCG) boots a PAE kernel with RAM above 4 GiB but hangs as
# soon as user space runs there; qemu-system-x86_64 runs the same 32-bit kernel and
# userland correctly (its CPU model starts in legacy mode like any PC). Guests with more
# than 4 GiB use it.
QEMU_X86_64 = os.environ.get("PYKEXEC_BED_QEMU", "qemu-system-x86_64")


def qemu_for(memory_mib: int) -> str:
    return QEMU_X86_64 if memory_mib > 4096 else QEMU_I386
GUEST_DIR = Path(__file__).resolve().parent / "guest_i386"
REPO_ROOT = GUEST_DIR.parents[2]
FLAVOURS = {"686": "linux-image-686:i386", "686-pae": "linux-image-686-pae:i386"}

# The 32-bit userland: Python and what it links, busybox, Debian's i386 kexec-tools.
ROOT_PACKAGES = (
    "libc6", "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "zlib1g", "libexpat1", "libffi8", "libbz2-1.0", "liblzma5", "libuuid1", "libcrypt1",
    "libzstd1", "busybox-static", "kexec-tools",
)
PURE_PYTHON = ("elftools", "construct", "click")
STDLIB_DROP = ("test", "idlelib", "tkinter", "lib2to3", "ensurepip", "distutils", "turtledemo",
               "pydoc_data", "sqlite3", "curses", "dbm", "unittest/test")
ROOT_BUILDER_VERSION = "1"
APPLETS = ("sh", "dmesg", "env", "cat", "ls", "mount", "sync", "sleep", "dd")


def _run(argv, **kw) -> str:
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise BedError(f"{argv[0]}: not installed") from None
    if proc.returncode != 0:
        raise BedError(f"{' '.join(map(str, argv))} failed ({proc.returncode}): "
                       f"{proc.stderr.strip()[-800:]}")
    return proc.stdout


def _need_i386_apt() -> None:
    out = _run(["dpkg", "--print-foreign-architectures"])
    if "i386" not in out.split():
        raise BedError("Debian's i386 packages are not available: run `dpkg --add-architecture "
                       "i386 && apt-get update` (scripts/setup-host does)")


# --- kernels -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def get_kernel(flavour: str = "686") -> Kernel:
    """Debian's current 32-bit kernel package of `flavour` ("686" or "686-pae"), unpacked."""
    base = cache_root() / ARCH
    base.mkdir(exist_ok=True)
    try:
        _need_i386_apt()
        package = resolve_package(FLAVOURS[flavour])
        if not package.endswith(":i386"):
            package += ":i386"
        version = package_version(package)
    except BedError:
        cached = sorted(p for p in base.glob(f"linux-image-*-{flavour}_*") if (p / "READY").exists())
        if not cached:
            raise
        return _ready(cached[-1])
    folder = base / f"{package.split(':')[0]}_{version}"
    if (folder / "READY").exists():
        return _ready(folder)
    with cache_lock(f"i386-{folder.name}"):
        if (folder / "READY").exists():
            return _ready(folder)
        with staged(folder) as tmp:
            _run(["apt-get", "download", f"{package}={version}"], cwd=tmp)
            deb = next(tmp.glob("*.deb"))
            _run(["dpkg", "-x", str(deb), str(tmp / "root")])
            deb.unlink()
            release = next((tmp / "root" / "lib" / "modules").iterdir()).name
            bz = tmp / "root" / "boot" / f"vmlinuz-{release}"
            (tmp / "vmlinux").write_bytes(extract_vmlinux(bz.read_bytes()))
            (tmp / "READY").write_text(f"{package.split(':')[0]}\n{version}\n{release}\n")
    return _ready(folder)


def _ready(folder: Path) -> Kernel:
    package, version, release = (folder / "READY").read_text().split()[:3]
    return Kernel(package=package, version=version, release=release, folder=folder)


# --- the 32-bit userland -----------------------------------------------------------------

def _versions() -> Dict[str, str]:
    """Candidate versions of ROOT_PACKAGES (one apt-cache call: it is slow to start)."""
    import re
    out = _run(["apt-cache", "policy", *(f"{p}:i386" for p in ROOT_PACKAGES)])
    found = dict(re.findall(r"^(\S+?):i386:\n\s+Installed:.*\n\s+Candidate:\s*(\S+)", out, re.M))
    missing = [p for p in ROOT_PACKAGES if found.get(p) in (None, "(none)")]
    if missing:
        raise BedError(f"apt-cache policy: no i386 candidate for {missing} (apt-get update?)")
    return {p: found[p] for p in ROOT_PACKAGES}


def _host_package_dir(name: str) -> Path:
    import importlib
    mod = importlib.import_module(name)
    return Path(mod.__file__).resolve().parent


def _pure_version(name: str) -> str:
    """The installed distribution version of a pure-Python package copied into the tree."""
    import importlib.metadata
    dist = {"elftools": "pyelftools"}.get(name, name)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def root_python_env(root: Path) -> Dict[str, str]:
    """Environment to run the tree's python3.11 on this (x86_64) host, if it runs i386."""
    libs = [root / "lib" / "i386-linux-gnu", root / "usr" / "lib" / "i386-linux-gnu"]
    return {"LD_LIBRARY_PATH": ":".join(map(str, libs)), "PYTHONHOME": str(root / "usr"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def root_loader(root: Path) -> List[str]:
    """argv prefix running the tree's python3.11 through the tree's own dynamic loader."""
    return [str(root / "lib" / "ld-linux.so.2"), "--library-path",
            f"{root}/lib/i386-linux-gnu:{root}/usr/lib/i386-linux-gnu",
            str(root / "usr" / "bin" / "python3.11")]


@functools.lru_cache(maxsize=None)
def get_root() -> Path:
    """The 32-bit userland tree (cached, keyed by the package versions and the builder)."""
    base = cache_root() / ARCH
    base.mkdir(exist_ok=True)
    try:
        _need_i386_apt()
        versions = _versions()
    except BedError:
        cached = sorted(base.glob("root-*/READY"))
        if not cached:
            raise
        return cached[-1].parent
    pure = {n: _host_package_dir(n) for n in PURE_PYTHON}
    key = hashlib.sha256(json.dumps([ROOT_BUILDER_VERSION, versions,
                                     {n: _pure_version(n) for n in PURE_PYTHON}]).encode())
    folder = base / f"root-{key.hexdigest()[:16]}"
    if (folder / "READY").exists():
        return folder
    with cache_lock(f"i386-{folder.name}"):
        if (folder / "READY").exists():
            return folder
        with staged(folder) as tree, tempfile.TemporaryDirectory(dir=base) as debs:
            _run(["apt-get", "download", *(f"{p}:i386={v}" for p, v in versions.items())], cwd=debs)
            for deb in sorted(Path(debs).glob("*.deb")):
                _run(["dpkg", "-x", str(deb), str(tree)])
            _finish_tree(tree, pure)
            (tree / "READY").write_text(json.dumps(versions, indent=1) + "\n")
    return folder


def _finish_tree(tree: Path, pure: Dict[str, Path]) -> None:
    lib = tree / "usr" / "lib" / "python3.11"
    for name in STDLIB_DROP:
        shutil.rmtree(lib / name, ignore_errors=True)
    site = tree / "usr" / "lib" / "python3" / "dist-packages"
    site.mkdir(parents=True, exist_ok=True)
    for name, src in pure.items():
        shutil.copytree(src, site / name, ignore=shutil.ignore_patterns("__pycache__"))
    for d in ("proc", "sys", "dev", "tmp", "host", "usr/sbin", "usr/bin", "bin", "sbin"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    (tree / "usr" / "bin" / "python3").symlink_to("python3.11")
    for applet in APPLETS:
        link = tree / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    for tool in ("kexec", "vmcore-dmesg"):
        if (tree / "sbin" / tool).exists() and not (tree / "usr" / "sbin" / tool).exists():
            (tree / "usr" / "sbin" / tool).symlink_to(f"../../sbin/{tool}")
    # Byte-compile with the tree's own interpreter (the host runs i386 programs when it
    # has libc6:i386's kernel support; without it, the guest compiles on first import).
    try:
        subprocess.run([*root_loader(tree), "-m", "compileall", "-q", "-j", "0",
                        str(lib), str(site)], env=root_python_env(tree), check=False,
                       capture_output=True, timeout=600)
    except OSError:
        pass


# --- initramfs ---------------------------------------------------------------------------

def _conf(root: Path) -> bytes:
    return (f"BED_I386_ROOT={root}\nBED_I386_GUEST={GUEST_DIR}\n"
            f"BED_I386_REPO={REPO_ROOT}\n").encode()


def get_initramfs(kernel: Kernel, root: Optional[Path] = None) -> Path:
    """The busybox (i386) initramfs for `kernel` (cached by its inputs)."""
    root = root or get_root()
    return generic_initramfs.foreign_initramfs(kernel, ARCH, root / "bin" / "busybox",
                                               GUEST_DIR / "init", _conf(root))


# --- one cycle ---------------------------------------------------------------------------

GUEST_PYTHON = "/usr/bin/python3.11"
def guest_path(host_path) -> str:
    """A host path as the guest's chroot sees it."""
    return "/host" + str(Path(host_path).resolve())


def pykexec_argv() -> List[str]:
    return [GUEST_PYTHON, "-m", "pykexec"]


KEXEC_I386 = ["/sbin/kexec"]


@dataclass
class LowMemCheck:
    """The low 640 KiB: pre-panic read (/proc/kcore) vs /proc/vmcore in the capture kernel."""

    start: int = 0
    size: int = 0
    pages: int = 0
    equal_pages: int = 0
    differing_pages: List[int] = field(default_factory=list)
    nonzero_bytes: int = 0
    vmcore_offset_phdr: Optional[int] = None     # the PT_LOAD's p_offset (the backup copy)
    error: Optional[str] = None

    @property
    def intact(self) -> bool:
        return self.error is None and self.pages > 0 and self.equal_pages == self.pages \
            and self.nonzero_bytes > 0


def run_i386_cycle(cfg: "generic_qemu.CycleConfig") -> Tuple["generic_qemu.CycleResult", LowMemCheck]:
    """One kdump cycle under qemu-system-i386; cfg.kernel must be an i386 Kernel."""
    kernel = cfg.kernel or get_kernel()
    cfg = dataclasses.replace(cfg, kernel=kernel, qemu=cfg.qemu or qemu_for(cfg.memory_mib),
                              initramfs=cfg.initramfs or get_initramfs(kernel, get_root()))
    res = generic_qemu.run_kdump_cycle(cfg)
    low = LowMemCheck()
    path = res.run_dir / "results" / "lowmem.json"
    if path.exists():
        data = json.loads(path.read_text())
        low = LowMemCheck(**{k: v for k, v in data.items() if k in LowMemCheck.__dataclass_fields__})
    elif res.captured:
        low.error = "stage 2 wrote no lowmem.json"
    return res, low


# --- pykexec in the guest, and a normal load (-l) booted with -e ----------------------------

def prepare_pykexec() -> None:
    """The checkout ready for the i386 guest (tests/bed/qemu.py prepare_checkout_for_guest)."""
    generic_qemu.prepare_checkout_for_guest(ARCH)


FIRST_CMDLINE = "console=ttyS0 panic=1 loglevel=4"


def reboot_append(marker: str) -> str:
    """The command line a reboot case's -l gives the new kernel (`marker` on it)."""
    return generic_qemu.load_exec_append(FIRST_CMDLINE, marker)


def run_i386_reboot(load: Sequence[str], exec_: Sequence[str], marker: str, *,
                    kernel: Kernel, memory_mib: int = 1024, cpus: int = 1,
                    name: str = "i386-reboot", run_dir: Optional[Path] = None,
                    timeout: float = 300) -> "generic_qemu.LoadExecResult":
    """Boot `kernel` (no crash region), run `load` (a -l whose --append carries
    `reboot_append(marker)`) and `exec_` (-e) in it; the kernel -e boots records its
    command line and release (tests/bed/guest/load_exec.py)."""
    cfg = generic_qemu.CycleConfig(
        loader_argv=None, memory_mib=memory_mib, cpus=cpus, cmdline_extra="",
        first_cmdline=FIRST_CMDLINE, name=name, run_dir=run_dir, kernel=kernel,
        qemu=qemu_for(memory_mib), initramfs=get_initramfs(kernel, get_root()),
        timeout=timeout, attempts=1)
    return generic_qemu.run_load_exec(cfg, load, exec_, marker)


# --- machine snapshots of i386 guests ------------------------------------------------------

SNAPSHOTS_DIR = REPO_ROOT / "tests" / "snapshots"
_NOTES = ("QEMU 7.2 pc (i440FX, SeaBIOS), qemu-system-i386 TCG -cpu max, Debian kernel {release}, "
          "KASLR on, no EFI")


@dataclass(frozen=True)
class I386Machine:
    name: str
    flavour: str
    memory_mib: int
    cpus: int
    crashkernel: str
    exercises: str


I386_MACHINES = (
    I386Machine("qemu-i386-1g-2cpu-at16m", "686", 1024, 2, "crashkernel=64M@16M",
                "the 2006 kdump document's machine: crashkernel=64M@16M, where a 686 vmlinux "
                "is linked; 1 GiB, so RAM above the 0x38000000 direct-map limit (highmem)"),
    I386Machine("qemu-i386-2g-1cpu", "686", 2048, 1, "crashkernel=128M",
                "one CPU, 2 GiB (1.1 GiB of highmem), a crash region the kernel placed"),
    I386Machine("qemu-i386-pae-5g-2cpu", "686-pae", 5120, 2, "crashkernel=64M",
                "the PAE kernel with RAM above 4 GiB: ELF64 core headers by default, "
                "--elf32-core-headers refused"),
)


def take_i386_snapshot(machine: I386Machine, dest: Path, timeout: float = 240):
    """Boot `machine`, take its snapshot before anything is loaded, copy it to `dest`."""
    kernel = get_kernel(machine.flavour)
    notes = (f"{machine.name}: {_NOTES.format(release=kernel.release)}; {machine.memory_mib} MiB, "
             f"{machine.cpus} CPU(s), {machine.crashkernel}. Exercises {machine.exercises}.")
    cfg = generic_qemu.CycleConfig(
        loader_argv=None, memory_mib=machine.memory_mib, cpus=machine.cpus,
        cmdline_extra=machine.crashkernel, take_snapshot=True, snapshot_notes=notes,
        name=f"snap-{machine.name}", kernel=kernel, timeout=timeout)
    res, _ = run_i386_cycle(cfg)
    if res.snapshot is None:
        raise BedError(f"{machine.name}: no snapshot taken\n{res.describe()}")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(res.snapshot, dest)
    return res


def take_i386_snapshots_main(argv: Sequence[str]) -> int:
    known = {m.name: m for m in I386_MACHINES}
    wanted = list(argv) or list(known)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        print(f"unknown snapshot names {unknown}; known: {sorted(known)}", file=sys.stderr)
        return 2
    from concurrent.futures import ThreadPoolExecutor
    failed = 0
    with ThreadPoolExecutor(2) as pool:
        jobs = {n: pool.submit(take_i386_snapshot, known[n], SNAPSHOTS_DIR / n) for n in wanted}
        for n, job in jobs.items():
            try:
                res = job.result()
                print(f"{n}: {' '.join(res.crash_region)} (total {res.timings.total:.1f} s, "
                      f"{res.attempts} boot(s))")
            except BedError as e:
                failed += 1
                print(f"{n}: FAILED: {e}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:  # pragma: no cover - manual use
    import argparse
    ap = argparse.ArgumentParser(description="one i386 kdump cycle")
    ap.add_argument("--flavour", default="686", choices=sorted(FLAVOURS))
    ap.add_argument("--format", default="elf", choices=("elf", "bzimage"))
    ap.add_argument("--loader", default="pykexec", choices=("pykexec", "kexec"))
    ap.add_argument("--memory", type=int, default=1024)
    ap.add_argument("--crashkernel", default="crashkernel=64M@16M")
    ap.add_argument("--snapshot", action="store_true")
    ap.add_argument("--extra", default="")
    ap.add_argument("--reboot", action="store_true",
                    help="-l the bzImage (with the initramfs) then -e, instead of -p and a panic")
    ap.add_argument("--take-snapshots", nargs="*", metavar="NAME",
                    help="boot the I386_MACHINES (or those named) and save their snapshots "
                         "into tests/snapshots/")
    args = ap.parse_args(argv)
    if args.take_snapshots is not None:
        return take_i386_snapshots_main(args.take_snapshots)
    kernel = get_kernel(args.flavour)
    root = get_root()
    if args.reboot:
        import secrets
        if args.loader == "pykexec":
            prepare_pykexec()
        marker = "bed_marker=" + secrets.token_hex(6)
        prefix = pykexec_argv() if args.loader == "pykexec" else KEXEC_I386
        load = [*prefix, "-l", guest_path(kernel.bzimage),
                f"--initrd={guest_path(get_initramfs(kernel, root))}",
                f"--append={reboot_append(marker)}", *args.extra.split()]
        rb = run_i386_reboot(load, [*prefix, "-e"], marker, kernel=kernel,
                             memory_mib=args.memory, name=f"i386-reboot-{args.loader}")
        print(rb.describe() if not rb.rebooted else rb.after)
        print(f"rebooted: {rb.rebooted}, load {rb.before.get('load_seconds')} s, {rb.timings}")
        return 0 if rb.rebooted else 1
    image = kernel.vmlinux if args.format == "elf" else kernel.bzimage
    loader = pykexec_argv() if args.loader == "pykexec" else KEXEC_I386
    extra = (["--args-linux", "--elf32-core-headers"] if args.format == "elf" else []) + args.extra.split()
    cfg = generic_qemu.CycleConfig(
        loader_argv=generic_qemu.loader_argv(
            loader, guest_path(image), guest_path(get_initramfs(kernel, root)),
            append="console=ttyS0 init 1 irqpoll maxcpus=1 reset_devices panic=1", extra=extra),
        memory_mib=args.memory, cpus=2, cmdline_extra=args.crashkernel, pattern_mib=32,
        take_snapshot=args.snapshot, name=f"i386-{args.format}", kernel=kernel, timeout=300)
    res, low = run_i386_cycle(cfg)
    print(res.summary())
    print(low)
    return 0


if __name__ == "__main__":
    sys.exit(main())
