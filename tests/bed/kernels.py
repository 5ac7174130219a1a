"""Debian kernels for the QEMU test bed: download, unpack, and extract an ELF vmlinux.

`get_kernel()` returns a `Kernel` for Debian's current `linux-image-6.1.0-NN-amd64`
(the one `linux-image-amd64` depends on), fetched with `apt-get download` and unpacked
with `dpkg -x` into a cache outside the repository. `get_kernel(series="backports")`
does the same for bookworm-backports' `linux-image-amd64` (6.12 in 2026), through the
bed's private apt state (tests/bed/aptstate.py), never the machine's sources:

    $PYKEXEC_BED_CACHE (default ~/.cache/pykexec-bed)/
      x86_64/kernel-<package version>/
        linux-image-....deb
        root/                      dpkg -x output (boot/vmlinuz-*, lib/modules/*)
        vmlinux                    ELF, extracted from the bzImage by `extract_vmlinux`
        READY                      written last (package, version, release, series);
                                   a folder without it is rebuilt

Everything is keyed by the package name and version, so a new Debian kernel gets a new
folder. Concurrent callers (two test workers) serialise on a lock file.
"""

from __future__ import annotations

import fcntl
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ARCH = "x86_64"
META_PACKAGE = "linux-image-amd64"
# Kernel series the bed boots: "6.1" is bookworm's own kernel (the machine's apt lists),
# "backports" bookworm-backports' newer one (the bed's private apt state). Both follow
# the meta package, never a pinned version.
SERIES = ("6.1", "backports")
DEFAULT_SERIES = "6.1"


class BedError(RuntimeError):
    """The test bed cannot be prepared (missing tool, download failure, bad image)."""


def cache_root() -> Path:
    """The bed's cache folder ($PYKEXEC_BED_CACHE or ~/.cache/pykexec-bed), created."""
    env = os.environ.get("PYKEXEC_BED_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "pykexec-bed"
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def cache_lock(name: str):
    """An exclusive lock (flock) named `name` in the cache, for build-once steps."""
    lockdir = cache_root() / "locks"
    lockdir.mkdir(exist_ok=True)
    with open(lockdir / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def staged(dest: Path, *, file: bool = False):
    """Build `dest` out of sight: yields a fresh path beside it (an empty folder, or with
    `file` a path to write), renamed onto `dest` when the block succeeds (replacing an old
    one) and removed when it fails, so no reader ever sees half a build. Callers hold
    `cache_lock` around it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if file:
        tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    else:
        tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        yield tmp
        if not file and dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        if file:
            tmp.unlink(missing_ok=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass(frozen=True)
class Kernel:
    """An unpacked Debian kernel package."""

    package: str          # linux-image-6.1.0-56-amd64
    version: str          # 6.1.192-2 (Debian package version)
    release: str          # 6.1.0-56-amd64 (uname -r)
    folder: Path          # the cache folder holding root/ and vmlinux
    series: str = DEFAULT_SERIES   # SERIES: which meta package it came from

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def bzimage(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    @property
    def vmlinux(self) -> Path:
        """ELF vmlinux extracted from the bzImage (cached)."""
        return self.folder / "vmlinux"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"


def _run(argv, **kw) -> str:
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise BedError(f"{argv[0]}: not installed") from None
    if proc.returncode != 0:
        raise BedError(f"{' '.join(map(str, argv))} failed ({proc.returncode}): "
                       f"{proc.stderr.strip()[-500:]}")
    return proc.stdout


def _apt_cache(series: str):
    """apt-cache for `series`: the machine's for 6.1, the bed's private state for backports."""
    if series == DEFAULT_SERIES:
        return lambda *args: _run(["apt-cache", *args])
    from tests.bed.aptstate import BedApt
    apt = BedApt()
    apt.update()
    return apt.cache


def resolve_package(meta: str = META_PACKAGE, series: str = DEFAULT_SERIES) -> str:
    """The versioned kernel package `meta` depends on, e.g. linux-image-6.1.0-56-amd64."""
    out = _apt_cache(series)("depends", meta)
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-[0-9][\w.+-]*)", line)
        if m:
            return m.group(1)
    raise BedError(f"apt-cache depends {meta}: no linux-image-* dependency in {out!r}")


def package_version(package: str, series: str = DEFAULT_SERIES) -> str:
    """The candidate version apt would download for `package`."""
    out = _apt_cache(series)("policy", package)
    m = re.search(r"Candidate:\s*(\S+)", out)
    if not m or m.group(1) == "(none)":
        raise BedError(f"apt-cache policy {package}: no candidate version (run apt-get update?)")
    return m.group(1)


def _cached_kernels(base: Path, series: str):
    return sorted(p for p in base.glob("linux-image-*")
                  if (p / "READY").exists() and _load_ready(p).series == series)


def get_kernel(package: Optional[str] = None, series: Optional[str] = None) -> Kernel:
    """Download (once) and unpack a Debian kernel package; also extract its vmlinux.

    `series` (SERIES; default $PYKEXEC_BED_SERIES, else "6.1") picks the meta package's
    suite. `package` defaults to $PYKEXEC_BED_KERNEL (6.1 series only), else what
    `linux-image-amd64` depends on in that suite. Offline, an already cached kernel of
    the series is used when apt cannot answer.
    """
    series = series or os.environ.get("PYKEXEC_BED_SERIES") or DEFAULT_SERIES
    if series not in SERIES:
        raise BedError(f"kernel series {series!r}: expected one of {', '.join(SERIES)}")
    base = cache_root() / ARCH
    base.mkdir(exist_ok=True)
    if series == DEFAULT_SERIES:
        package = package or os.environ.get("PYKEXEC_BED_KERNEL")
    try:
        package = package or resolve_package(series=series)
        version = package_version(package, series)
    except BedError:
        cached = [p for p in _cached_kernels(base, series)
                  if package is None or p.name.startswith(package + "_")]
        if not cached:
            raise
        return _load_ready(cached[-1])
    folder = base / f"{package}_{version}"
    if (folder / "READY").exists():
        return _load_ready(folder)
    with cache_lock(folder.name):
        if (folder / "READY").exists():
            return _load_ready(folder)
        with staged(folder) as tmp:
            if series == DEFAULT_SERIES:
                _run(["apt-get", "download", f"{package}={version}"], cwd=tmp)
            else:
                from tests.bed.aptstate import BedApt
                BedApt().get("download", f"{package}={version}", cwd=tmp)
            debs = list(tmp.glob("*.deb"))
            if len(debs) != 1:
                raise BedError(f"apt-get download {package}: expected one .deb, got {debs}")
            _run(["dpkg", "-x", str(debs[0]), str(tmp / "root")])
            releases = [p.name for p in (tmp / "root" / "lib" / "modules").iterdir()]
            if len(releases) != 1:
                raise BedError(f"{debs[0].name}: expected one lib/modules/<release>, got {releases}")
            release = releases[0]
            bz = tmp / "root" / "boot" / f"vmlinuz-{release}"
            data = extract_vmlinux(bz.read_bytes())
            (tmp / "vmlinux").write_bytes(data)
            (tmp / "READY").write_text(f"{package}\n{version}\n{release}\n{series}\n")
    return _load_ready(folder)


def _load_ready(folder: Path) -> Kernel:
    fields = (folder / "READY").read_text().split()
    package, version, release = fields[:3]
    # folders cached before the series existed are bookworm's own kernels
    series = fields[3] if len(fields) > 3 else DEFAULT_SERIES
    return Kernel(package=package, version=version, release=release, folder=folder,
                  series=series)


# --- bzImage → vmlinux ---------------------------------------------------------------

def bzimage_payload(image: bytes) -> bytes:
    """The compressed kernel payload of a bzImage (boot protocol >= 2.08).

    The setup header gives `setup_sects` (0x1f1), the "HdrS" magic (0x202), the protocol
    version (0x206), and payload_offset/payload_length (0x248/0x24c), the offset being
    relative to the start of the protected-mode code, which follows the
    (setup_sects + 1) * 512 bytes of real-mode setup.
    """
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        raise BedError("not a bzImage (no HdrS setup header)")
    (version,) = struct.unpack_from("<H", image, 0x206)
    if version < 0x208:
        raise BedError(f"boot protocol {version:#x} has no payload fields (needs >= 2.08)")
    setup_sects = image[0x1F1] or 4
    pm_start = (setup_sects + 1) * 512
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = pm_start + offset
    if start + length > len(image):
        raise BedError(f"payload {start:#x}+{length:#x} runs past the image ({len(image):#x})")
    return image[start:start + length]


def decompress_payload(payload: bytes) -> bytes:
    """Decompress a kernel payload (xz, as Debian builds it; also lzma/gzip/zstd if present)."""
    if payload.startswith(b"\xfd7zXZ\x00"):
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        # The build appends the uncompressed size (4 bytes) after the xz stream: ignored.
        return dec.decompress(payload)
    if payload.startswith(b"\x1f\x8b"):
        import zlib
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    if payload.startswith(b"\x28\xb5\x2f\xfd"):
        # As for xz, the build appends the uncompressed size (4 bytes), which zstd would
        # read as the start of a second frame; the kernel's zstd -22 window needs --long.
        out = subprocess.run(["zstd", "-dc", "--long=31"], input=payload[:-4],
                             capture_output=True, check=False)
        if out.returncode != 0:
            raise BedError(f"zstd: {out.stderr.decode(errors='replace').strip()}")
        return out.stdout
    if payload[:1] == b"\x5d":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
    raise BedError(f"unknown payload compression (magic {payload[:6].hex()})")


def extract_vmlinux(image: bytes) -> bytes:
    """The ELF vmlinux inside a bzImage."""
    elf = decompress_payload(bzimage_payload(image))
    if elf[:4] != b"\x7fELF":
        raise BedError("decompressed payload is not an ELF file")
    return elf


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys
    k = get_kernel(series=sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"{k.package} {k.version} ({k.release}, series {k.series})")
    print(f"bzImage {k.bzimage}\nvmlinux {k.vmlinux}\nmodules {k.modules_dir}")
