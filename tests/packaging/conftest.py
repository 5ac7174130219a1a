"""Session-wide builds shared by the packaging tests (one wheel, one .deb per run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import require
from tests.packaging.build import REPO, build_deb, build_python

BUILD_TOOLS = ("dpkg-buildpackage", "dh", "dh_python3", "lintian", "git")


@pytest.fixture(scope="session")
def dists(tmp_path_factory):
    require(subprocess.run([sys.executable, "-c", "import build"]).returncode == 0,
            "python -m build is not installed (pip install -e '.[test]')")
    require(shutil.which("git") is not None and (REPO / ".git").exists(), "needs a git checkout")
    return build_python(tmp_path_factory.mktemp("python-build"))


@pytest.fixture(scope="session")
def installed(dists, tmp_path_factory):
    """A fresh virtualenv with the wheel (and its dependencies from the index) installed."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # without the test run's PYTHONPATH: pip would take the checkout's egg-info for an
    # installed pykexec and skip the wheel
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                           str(dists.wheel)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return venv


@pytest.fixture(scope="session")
def deb_build(tmp_path_factory):
    missing = [t for t in BUILD_TOOLS if shutil.which(t, path="/usr/sbin:/usr/bin") is None]
    require(not missing, f"Debian packaging tools missing: {missing} (scripts/setup-host)")
    require((REPO / ".git").exists(), "needs a git checkout")
    return build_deb(tmp_path_factory.mktemp("deb-build"))
