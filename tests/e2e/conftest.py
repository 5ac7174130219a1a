"""Session fixtures shared by e2e test files: the kept vmcores (tests/bed/keep.py).

One QEMU cycle per arch and per session, whichever test files ask; the copied vmcore
(~1 GiB) is deleted when the session ends."""

from __future__ import annotations

import shutil

import pytest

from tests.bed.kernels import BedError
from tests.conftest import require, require_root


def _kept(arch, tmp_path_factory):
    from tests.bed.keep import capture_kept_vmcore
    require_root()
    try:
        kept = capture_kept_vmcore(arch, tmp_path_factory.mktemp(f"kept-vmcore-{arch}"))
    except BedError as err:
        require(False, f"test bed not available: {err}")
    assert kept.path is not None and kept.path.exists(), kept.result.describe()
    return kept


@pytest.fixture(scope="session")
def kept_vmcore_x86_64(tmp_path_factory):
    kept = _kept("x86_64", tmp_path_factory)
    yield kept
    kept.path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def kept_vmcore_i386(tmp_path_factory):
    from tests.bed.i386guest import QEMU_I386
    require(shutil.which(QEMU_I386) is not None, f"{QEMU_I386} not installed")
    kept = _kept("i386", tmp_path_factory)
    yield kept
    kept.path.unlink(missing_ok=True)
