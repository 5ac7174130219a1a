"""A private apt state for the test bed: Debian suites the machine's own apt does not list.

The bed needs bookworm-backports' kernel and newer kexec-tools source packages (trixie,
sid), but must never add them to the machine's /etc/apt. `BedApt` keeps its own sources
list, package lists and archive cache under the bed cache and passes them to apt-get and
apt-cache with `-o Dir::...` options, so the machine's apt state is only read (dpkg's
status file), never changed:

    <bed cache>/apt/
      sources.list        written from SOURCES
      lists/              Dir::State::Lists (refreshed when older than MAX_AGE or changed)
      cache/              Dir::Cache (pkgcache.bin, archives/)

Downloads run as root without apt's `_apt` sandbox user, which cannot enter root's cache.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional, Sequence

from tests.bed.kernels import BedError, _run, cache_lock, cache_root

MIRROR = "http://deb.debian.org/debian"
# Binary packages from bookworm-backports (the 6.12 kernel); source packages from the
# suites that may hold a newer kexec-tools than bookworm's 2.0.25.
SOURCES = (
    f"deb {MIRROR} bookworm-backports main\n"
    f"deb-src {MIRROR} bookworm-backports main\n"
    f"deb-src {MIRROR} trixie main\n"
    f"deb-src {MIRROR} sid main\n"
)
MAX_AGE = 86400.0


class BedApt:
    """apt-get / apt-cache on the bed's own sources list and state folders."""

    def __init__(self, folder: Optional[Path] = None, sources: str = SOURCES):
        self.folder = Path(folder) if folder else cache_root() / "apt"
        self.sources = sources

    @property
    def options(self) -> List[str]:
        f = self.folder
        return ["-o", f"Dir::Etc::SourceList={f / 'sources.list'}",
                "-o", "Dir::Etc::SourceParts=/dev/null",
                "-o", f"Dir::State::Lists={f / 'lists'}",
                "-o", f"Dir::Cache={f / 'cache'}",
                "-o", "APT::Sandbox::User=root",
                "-q"]

    def _stale(self) -> bool:
        stamp = self.folder / "lists" / "UPDATED"
        listed = self.folder / "sources.list"
        if not stamp.exists() or not listed.exists() or listed.read_text() != self.sources:
            return True
        return time.time() - stamp.stat().st_mtime > MAX_AGE

    def update(self, force: bool = False) -> None:
        """`apt-get update` on the private state, once a day (or when SOURCES changed)."""
        with cache_lock("bed-apt"):
            if not force and not self._stale():
                return
            for d in ("lists/partial", "cache/archives/partial"):
                (self.folder / d).mkdir(parents=True, exist_ok=True)
            (self.folder / "sources.list").write_text(self.sources)
            _run(["apt-get", *self.options, "update"])
            (self.folder / "lists" / "UPDATED").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))

    def cache(self, *args: str) -> str:
        return _run(["apt-cache", *self.options, *args])

    def get(self, *args: str, cwd: Path) -> str:
        return _run(["apt-get", *self.options, *args], cwd=cwd)

    def source_versions(self, package: str) -> List[str]:
        """Versions of source package `package` the private lists know, as listed."""
        out = self.cache("showsrc", package)
        found: List[str] = []
        current = None
        for line in out.splitlines():
            if line.startswith("Package: "):
                current = line.split(None, 1)[1]
            elif line.startswith("Version: ") and current == package:
                found.append(line.split(None, 1)[1])
        return found

    def download_source(self, package: str, suites: Sequence[str], dest: Path) -> str:
        """Download source package `package` from the first suite that serves it whole.

        A suite whose index names files the mirror no longer has (sid, between an upload
        and the mirror's sync) fails and the next suite is tried. Returns the suite.
        """
        errors = []
        for suite in suites:
            for old in dest.glob("*"):
                old.unlink()
            try:
                self.get("source", "--download-only", f"{package}/{suite}", cwd=dest)
                return suite
            except BedError as err:
                errors.append(f"{suite}: {str(err).splitlines()[-1]}")
        raise BedError(f"no complete {package} source package in {', '.join(suites)}: "
                       + "; ".join(errors))
