"""The Debian packages: built with dpkg-buildpackage from the tracked tree (in a temporary
folder), lintian-clean, with the expected files; installed into an overlay of this host's
root (a private mount namespace: the host itself is untouched) and removed again, with
pykexec-kexec diverting kexec-tools' /sbin/kexec and giving it back."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require, require_root

pytestmark = pytest.mark.packaging

def _contents(deb: Path) -> dict:
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    files = {}
    for line in out.splitlines():
        parts = line.split(None, 5)
        name = parts[5].split(" -> ")[0].lstrip(".")
        files[name] = parts[5].split(" -> ")[1] if " -> " in parts[5] else parts[0]
    return files


def test_lintian_is_clean(deb_build):
    print(f"lintian --pedantic --info {deb_build.changes.name}:\n{deb_build.lintian or '(no tags)'}")
    assert deb_build.lintian == "", deb_build.lintian


def test_packages_hold_the_program_man_page_and_completion(deb_build):
    assert set(deb_build.debs) == {"pykexec", "pykexec-kexec"}, deb_build.debs
    main = _contents(deb_build.debs["pykexec"])
    assert main["/usr/sbin/pykexec"].startswith("-rwx")
    assert "/usr/share/man/man8/pykexec.8.gz" in main
    assert "/usr/share/bash-completion/completions/pykexec" in main
    site = "/usr/lib/python3/dist-packages/pykexec/"
    assert site + "_purgatory/x86_64.o" in main and site + "_purgatory/i386.o" in main
    # with the records the build parsed them into (a load reads these, not the ELF)
    assert site + "_purgatory/x86_64.json" in main and site + "_purgatory/i386.json" in main
    assert not [f for f in main if "/bin/" in f and f.endswith("kexec") and "pykexec" not in f]
    assert not [f for f in main if f.endswith(".pyc")]   # compiled by py3compile at install
    alias = _contents(deb_build.debs["pykexec-kexec"])
    assert alias["/sbin/kexec"].startswith("-rwx")
    assert alias["/usr/share/man/man8/kexec.8.gz"] == "pykexec.8.gz"
    control = subprocess.run(["dpkg-deb", "-f", str(deb_build.debs["pykexec"]), "Depends"],
                             capture_output=True, text=True, check=True).stdout
    for dep in ("python3-pyelftools", "python3-construct", "python3-click", "python3-numpy",
                "python3-zstandard"):
        assert dep in control, control


OVERLAY_SCRIPT = r"""
set -eu
w=$1; shift
mount -t tmpfs tmpfs "$w"
mkdir "$w/upper" "$w/work" "$w/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$w/upper,workdir=$w/work" "$w/root"
for d in proc sys dev; do mount --bind /$d "$w/root/$d"; done
mount -t tmpfs tmpfs "$w/root/tmp"
cp "$@" "$w/root/tmp/"
in_root() { chroot "$w/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
echo "== before"; in_root sh -c 'sha256sum /sbin/kexec; dpkg-divert --list "*kexec*"'
echo "== installing"
in_root sh -c 'dpkg -i /tmp/pykexec_*.deb /tmp/pykexec-kexec_*.deb'
echo "== installed"
in_root sh -c 'sha256sum /sbin/kexec /sbin/kexec.kexec-tools; dpkg-divert --list "*kexec*"'
in_root /sbin/kexec -v
in_root pykexec -v
in_root sh -c 'echo "pyc: $(find /usr/lib/python3/dist-packages/pykexec -name "*.cpython-*.pyc" | wc -l)"'
in_root dpkg -r pykexec-kexec
echo "== removed"
in_root sh -c 'sha256sum /sbin/kexec; ls /sbin/kexec.kexec-tools 2>&1; dpkg-divert --list "*kexec*"'
in_root dpkg --purge pykexec
echo "== purged"
in_root sh -c 'ls /usr/lib/python3/dist-packages/pykexec 2>&1 || true'
"""


def test_install_and_removal_in_an_overlay_of_the_host_root(deb_build, tmp_path):
    require_root()
    require(os.path.exists("/sbin/kexec"), "kexec-tools not installed (its /sbin/kexec is diverted)")
    original = hashlib.sha256(Path("/sbin/kexec").read_bytes()).hexdigest()
    work = tmp_path / "overlay"
    work.mkdir()
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", OVERLAY_SCRIPT,
                           "overlay", str(work), str(deb_build.debs["pykexec"]),
                           str(deb_build.debs["pykexec-kexec"])],
                          capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    before, _, installed, removed, purged = (log.split("== ")[i] for i in (1, 2, 3, 4, 5))
    assert before == f"before\n{original}  /sbin/kexec\n", log    # no diversion yet
    # installed: /sbin/kexec is pykexec's; kexec-tools' program kept aside, diverted
    assert f"{original}  /sbin/kexec.kexec-tools" in installed, log
    assert f"{original}  /sbin/kexec\n" not in installed, log
    assert "diversion of /sbin/kexec to /sbin/kexec.kexec-tools by pykexec-kexec" in installed, log
    assert "(pykexec 0.1.0)" in installed and "kexec-tools" in installed, log
    assert int(re.search(r"^pyc: (\d+)$", installed, re.M).group(1)) > 10, log  # py3compile ran
    # removed: kexec-tools' program is back under its name, no diversion left
    assert f"{original}  /sbin/kexec\n" in removed, log
    assert "No such file" in removed and "diversion" not in removed, log
    assert "No such file" in purged, log
    # the host root did not change
    assert hashlib.sha256(Path("/sbin/kexec").read_bytes()).hexdigest() == original
    assert not os.path.exists("/sbin/kexec.kexec-tools")
