"""The test bed's busybox initramfs (first kernel and capture kernel alike).

Contents: Debian's static busybox as /bin/busybox (applet links are made at boot), the
virtio + 9p modules of the kernel (plain .ko, decompressed here if the package ships
.ko.xz/.ko.zst) in /lib/modules/bed/ with their load order in /lib/modules/bed/order,
and tests/bed/guest/init as /init. The Python stages are not inside: the guest runs them
from the repository through the read-only 9p share of the host root.

Built with our own newc cpio writer, gzip-compressed, cached in the bed cache keyed by the
kernel release and a digest of every input, so editing /init rebuilds it automatically.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import subprocess
from pathlib import Path
from typing import Iterable, List, Tuple

from elftools.elf.elffile import ELFFile

from tests.bed.kernels import ARCH, BedError, Kernel, cache_lock, cache_root, staged

GUEST_DIR = Path(__file__).resolve().parent / "guest"
INIT_SCRIPT = GUEST_DIR / "init"
BUSYBOX = Path(os.environ.get("PYKEXEC_BED_BUSYBOX", "/bin/busybox"))

# Preferred order: virtio core, PCI transport, 9p; load_order() moves a module after
# what its .modinfo says it depends on (the package ships no modules.dep).
MODULES: Tuple[Tuple[str, str], ...] = (
    ("virtio_ring", "kernel/drivers/virtio"),
    ("virtio", "kernel/drivers/virtio"),
    ("virtio_pci_legacy_dev", "kernel/drivers/virtio"),
    ("virtio_pci_modern_dev", "kernel/drivers/virtio"),
    ("virtio_pci", "kernel/drivers/virtio"),
    ("9pnet", "kernel/net/9p"),
    ("9pnet_virtio", "kernel/net/9p"),
    ("netfs", "kernel/fs/netfs"),
    ("fscache", "kernel/fs/fscache"),
    ("9p", "kernel/fs/9p"),
)
# fscache became part of netfs in Linux 6.4: newer kernels have no module of that name.
MERGED_AWAY = {"fscache"}
BUILDER_VERSION = "3"


def _builtin_modules(kernel: Kernel) -> set:
    """Names of the modules built into the kernel (modules.builtin; empty if absent)."""
    listing = kernel.modules_dir / "modules.builtin"
    if not listing.exists():
        return set()
    return {Path(line).name.split(".ko")[0] for line in listing.read_text().split()}


def bed_modules(kernel: Kernel) -> List[Tuple[str, str]]:
    """MODULES that `kernel` ships as loadable modules (6.12 builds virtio in, 6.1 does not)."""
    builtin = _builtin_modules(kernel)
    wanted = []
    for name, subdir in MODULES:
        if name in builtin:
            continue
        if name in MERGED_AWAY and not any(
                (kernel.modules_dir / subdir / f"{name}.ko{ext}").exists()
                for ext in ("", ".xz", ".zst")):
            continue
        wanted.append((name, subdir))
    return wanted


def module_depends(blob: bytes) -> List[str]:
    """The `depends=` names in a module's .modinfo section."""
    section = ELFFile(io.BytesIO(blob)).get_section_by_name(".modinfo")
    for field in (section.data() if section else b"").split(b"\0"):
        if field.startswith(b"depends="):
            return [d for d in field[8:].decode().split(",") if d]
    return []


def load_order(modules: List[Tuple[str, str, bytes]]) -> List[Tuple[str, str, bytes]]:
    """`modules` (name, subdir, bytes) reordered so each comes after what it depends on.

    The order changes between kernels (6.12's 9pnet needs netfs), so it is read from the
    modules themselves; dependencies outside the set are built in or missing (insmod says).
    """
    names = {name for name, _, _ in modules}
    deps = {name: [d for d in module_depends(blob) if d in names] for name, _, blob in modules}
    placed: List[str] = []
    while len(placed) < len(modules):
        ready = [name for name, _, _ in modules
                 if name not in placed and all(d in placed for d in deps[name])]
        if not ready:
            raise BedError(f"module dependency cycle among {sorted(names - set(placed))}")
        placed.append(ready[0])
    by_name = {m[0]: m for m in modules}
    return [by_name[name] for name in placed]


def _module_bytes(kernel: Kernel, name: str, subdir: str) -> bytes:
    base = kernel.modules_dir / subdir / f"{name}.ko"
    if base.exists():
        return base.read_bytes()
    xz = base.with_name(base.name + ".xz")
    if xz.exists():
        return lzma.decompress(xz.read_bytes())
    zst = base.with_name(base.name + ".zst")
    if zst.exists():
        return subprocess.run(["zstd", "-dc", str(zst)], capture_output=True, check=True).stdout
    raise BedError(f"{kernel.package}: module {subdir}/{name}.ko not found")


# --- newc cpio ------------------------------------------------------------------------

def _newc_entry(name: str, mode: int, data: bytes = b"", ino: int = 0, nlink: int = 1,
                rdev: Tuple[int, int] = (0, 0)) -> bytes:
    namez = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0)
    head = b"070701" + b"".join(b"%08X" % v for v in fields)
    out = head + namez
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def newc_archive(entries: Iterable[Tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (path, mode, data) entries (mode includes the file type).

    For a character device (CHR) `data` is b"MAJOR:MINOR" and the file itself is empty.
    """
    parts = []
    for i, (name, mode, data) in enumerate(entries):
        if mode & 0o170000 == CHR & 0o170000:
            major, minor = (int(x) for x in data.split(b":"))
            parts.append(_newc_entry(name, mode, b"", ino=i + 1, rdev=(major, minor)))
        else:
            parts.append(_newc_entry(name, mode, data, ino=i + 1))
    parts.append(_newc_entry("TRAILER!!!", 0))
    blob = b"".join(parts)
    return blob + b"\0" * (-len(blob) % 512)


DIR = 0o040755
FILE = 0o100644
EXEC = 0o100755
CHR = 0o020600


def initramfs_entries(kernel: Kernel) -> List[Tuple[str, int, bytes]]:
    if not BUSYBOX.exists():
        raise BedError(f"{BUSYBOX}: missing (apt-get install busybox-static)")
    entries: List[Tuple[str, int, bytes]] = [
        (d, DIR, b"") for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "lib", "lib/modules",
                                 "lib/modules/bed", "results", "host")
    ]
    entries.append(("dev/console", CHR, b"5:1"))
    entries.append(("bin/busybox", EXEC, BUSYBOX.read_bytes()))
    entries.append(("init", EXEC, INIT_SCRIPT.read_bytes()))
    modules = load_order([(name, subdir, _module_bytes(kernel, name, subdir))
                          for name, subdir in bed_modules(kernel)])
    for name, _, blob in modules:
        entries.append((f"lib/modules/bed/{name}.ko", FILE, blob))
    entries.append(("lib/modules/bed/order", FILE, "".join(m[0] + "\n" for m in modules).encode()))
    return entries


def _inputs_digest(kernel: Kernel) -> str:
    h = hashlib.sha256(BUILDER_VERSION.encode())
    h.update(kernel.release.encode() + kernel.version.encode())
    h.update(INIT_SCRIPT.read_bytes())
    st = BUSYBOX.stat()
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def get_initramfs(kernel: Kernel) -> Path:
    """Path of the (cached) gzip'd busybox initramfs for `kernel`."""
    out = cache_root() / ARCH / f"initramfs-{kernel.release}-{_inputs_digest(kernel)}.cpio.gz"
    if out.exists():
        return out
    with cache_lock(out.name):
        if out.exists():
            return out
        with staged(out, file=True) as tmp:
            tmp.write_bytes(gzip.compress(newc_archive(initramfs_entries(kernel)),
                                          compresslevel=6, mtime=0))
        _prune(out)
    return out


FOREIGN_BUILDER_VERSION = "1"


def foreign_initramfs(kernel: Kernel, arch: str, busybox: Path, init: Path,
                      conf: bytes) -> Path:
    """The initramfs of a foreign-architecture bed (i386, arm64), cached in the bed cache's
    `arch` folder by a digest of every input: that architecture's static `busybox` (from
    its userland tree), `init` as /init, `conf` as /bed-i386.conf (where /init finds the
    tree it chroots into) and the kernel's virtio + 9p modules in load order."""
    modules = load_order([(name, subdir, _module_bytes(kernel, name, subdir))
                          for name, subdir in bed_modules(kernel)])
    entries: List[Tuple[str, int, bytes]] = [
        (d, DIR, b"") for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "lib", "lib/modules",
                                 "lib/modules/bed", "results", "host")]
    entries.append(("dev/console", CHR, b"5:1"))
    entries.append(("bin/busybox", EXEC, busybox.read_bytes()))
    entries.append(("init", EXEC, init.read_bytes()))
    entries.append(("bed-i386.conf", FILE, conf))
    for name, _, blob in modules:
        entries.append((f"lib/modules/bed/{name}.ko", FILE, blob))
    entries.append(("lib/modules/bed/order", FILE, "".join(m[0] + "\n" for m in modules).encode()))
    h = hashlib.sha256(FOREIGN_BUILDER_VERSION.encode())
    h.update(kernel.release.encode() + b"\0" + kernel.version.encode())
    for name, mode, data in entries:
        h.update(f"{name}:{mode:o}:".encode() + hashlib.sha256(data).digest())
    out = cache_root() / arch / f"initramfs-{kernel.release}-{h.hexdigest()[:16]}.cpio.gz"
    if out.exists():
        return out
    with cache_lock(f"{arch}-{out.name}"):
        if not out.exists():
            with staged(out, file=True) as tmp:
                tmp.write_bytes(gzip.compress(newc_archive(entries), compresslevel=6, mtime=0))
            _prune(out)
    return out


def _prune(keep: Path, age: float = 86400.0) -> None:
    """Remove initramfs images of the same release unused for a day (older inputs)."""
    import time
    for old in keep.parent.glob(keep.name.rsplit("-", 1)[0] + "-*.cpio.gz"):
        try:
            if old != keep and time.time() - old.stat().st_atime > age:
                old.unlink()
        except OSError:
            pass


if __name__ == "__main__":  # pragma: no cover
    from tests.bed.kernels import get_kernel
    print(get_initramfs(get_kernel()))
