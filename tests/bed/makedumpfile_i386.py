"""Debian's i386 makedumpfile, runnable on the amd64 host: the oracle for i386 dumps.

Debian's makedumpfile handles only the arch it was built for (the amd64 one refuses an
i386 dump: "vtop4_x86_64: Can't get the symbol of init_top_pgt"). This fetches
makedumpfile:i386 and the libraries it needs with `apt-get download` (the i386 foreign
architecture is enabled by scripts/setup-host), unpacks them into the bed cache and runs
the binary with the host's i386 loader (libc6:i386, installed by setup-host).

    makedumpfile_i386_argv() -> ["/lib/ld-linux.so.2", "--library-path", ..., ".../makedumpfile"]
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List

from tests.bed.kernels import BedError, cache_lock, cache_root

PACKAGES = ("makedumpfile", "libdw1", "libelf1", "liblzo2-2", "libzstd1", "liblzma5",
            "libbz2-1.0", "zlib1g")
LOADER = Path("/lib/ld-linux.so.2")


def makedumpfile_i386_argv() -> List[str]:
    if not LOADER.exists():
        raise BedError(f"{LOADER} missing: apt-get install libc6:i386 (scripts/setup-host)")
    base = cache_root() / "i386" / "makedumpfile"
    with cache_lock("makedumpfile-i386"):
        if not (base / "READY").exists():
            if base.exists():
                shutil.rmtree(base)
            with tempfile.TemporaryDirectory() as tmp:
                p = subprocess.run(["apt-get", "download", *(f"{x}:i386" for x in PACKAGES)],
                                   cwd=tmp, capture_output=True, text=True)
                if p.returncode != 0:
                    raise BedError(f"apt-get download makedumpfile:i386 failed: {p.stderr[-500:]}")
                tree = base / "tree"
                tree.mkdir(parents=True)
                for deb in sorted(Path(tmp).glob("*.deb")):
                    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
            (base / "READY").write_text("\n".join(PACKAGES) + "\n")
    tree = base / "tree"
    libs = ":".join(str(tree / d) for d in ("usr/lib/i386-linux-gnu", "lib/i386-linux-gnu"))
    return [str(LOADER), "--library-path", libs, str(tree / "usr" / "bin" / "makedumpfile")]
