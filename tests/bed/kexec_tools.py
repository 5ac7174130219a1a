"""A newer kexec-tools for the bed, built from Debian's source package: the second oracle.

Debian 12 ships kexec-tools 2.0.25, which has no `--hotplug` (crash hotplug, 2.0.28+).
`get_kexec_tools()` downloads the newest kexec-tools source package that Debian's archive
serves whole (SUITES in order, through the bed's private apt state, tests/bed/aptstate.py),
unpacks it with `dpkg-source -x` (Debian's patches applied), builds it with
`./configure && make` and caches the result:

    <bed cache>/x86_64/kexec-tools-<Debian version>/
      src/                 the unpacked source and the build
      READY                version line of `kexec --version`, suite, Debian version

The binaries are used in place (src/build/sbin/kexec, vmcore-dmesg); the guest reaches
them through its read-only 9p view of the host root. Build dependencies: gcc, make,
zlib1g-dev, liblzma-dev (scripts/setup-host).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tests.bed.kernels import ARCH, BedError, _run, cache_lock, cache_root, staged

SOURCE_PACKAGE = "kexec-tools"
# Newest first: sid's index can name files its mirror has not synced yet; then trixie.
SUITES = ("sid", "trixie")
MIN_VERSION = (2, 0, 28)    # crash hotplug (--hotplug) for kexec_load


@dataclass(frozen=True)
class KexecTools:
    version: str            # "2.0.29", from `kexec --version`
    debian_version: str     # "1:2.0.29-2"
    suite: str              # the suite it came from
    folder: Path

    @property
    def kexec(self) -> Path:
        return self.folder / "src" / "build" / "sbin" / "kexec"

    @property
    def vmcore_dmesg(self) -> Path:
        return self.folder / "src" / "build" / "sbin" / "vmcore-dmesg"

    @property
    def version_tuple(self):
        return tuple(int(x) for x in re.findall(r"\d+", self.version)[:3])


def _load_ready(folder: Path) -> KexecTools:
    version, suite, debian_version = (folder / "READY").read_text().split()[:3]
    return KexecTools(version=version, debian_version=debian_version, suite=suite, folder=folder)


def get_kexec_tools(suites: Sequence[str] = SUITES) -> KexecTools:
    """Build (once) and return the newest kexec-tools Debian's archive serves whole."""
    from tests.bed.aptstate import BedApt
    base = cache_root() / ARCH
    base.mkdir(parents=True, exist_ok=True)
    apt = BedApt()
    try:
        apt.update()
    except BedError:
        cached = sorted(p for p in base.glob("kexec-tools-*") if (p / "READY").exists())
        if cached:
            return _checked(_load_ready(cached[-1]))
        raise
    with cache_lock("kexec-tools-build"):
        # Built since the lists were last refreshed: what the archive serves has not moved.
        listed = (apt.folder / "lists" / "UPDATED").stat().st_mtime
        fresh = sorted((p for p in base.glob("kexec-tools-*/READY")
                        if p.stat().st_mtime >= listed), key=lambda p: p.stat().st_mtime)
        if fresh:
            return _checked(_load_ready(fresh[-1].parent))
        with tempfile.TemporaryDirectory(prefix="kexec-tools-dl.", dir=base) as dl:
            suite = apt.download_source(SOURCE_PACKAGE, suites, Path(dl))
            dscs = list(Path(dl).glob("*.dsc"))
            if len(dscs) != 1:
                raise BedError(f"{SOURCE_PACKAGE} from {suite}: expected one .dsc, got {dscs}")
            m = re.search(r"^Version:\s*(\S+)", dscs[0].read_text(), re.M)
            if not m:
                raise BedError(f"{dscs[0].name}: no Version field")
            debian_version = m.group(1)
            folder = base / f"kexec-tools-{debian_version.replace(':', '_')}"
            if (folder / "READY").exists():
                (folder / "READY").touch()
                return _checked(_load_ready(folder))
            with staged(folder) as tmp:
                src = tmp / "src"
                _run(["dpkg-source", "--no-check", "-x", str(dscs[0]), str(src)])
                _run(["./configure"], cwd=src)
                _run(["make", f"-j{min(2, os.cpu_count() or 1)}"], cwd=src)
                out = _run([str(src / "build" / "sbin" / "kexec"), "--version"])
                v = re.search(r"kexec-tools\s+(\S+)", out)
                if not v:
                    raise BedError(f"built kexec --version printed {out!r}")
                (tmp / "READY").write_text(f"{v.group(1)}\n{suite}\n{debian_version}\n")
    return _checked(_load_ready(folder))


def _checked(tools: KexecTools) -> KexecTools:
    if tools.version_tuple < MIN_VERSION:
        raise BedError(f"kexec-tools {tools.version} from {tools.suite}: the bed needs "
                       f"{'.'.join(map(str, MIN_VERSION))}+ (crash hotplug)")
    return tools


if __name__ == "__main__":  # pragma: no cover - manual use
    t = get_kexec_tools()
    print(f"kexec-tools {t.version} (Debian {t.debian_version}, {t.suite}): {t.kexec}")
