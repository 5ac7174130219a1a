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


@pytest.fixture(scope="session")
def arm64_cycles(request):
    """The arm64 matrix's guests (tests/bed/arm64guest.py Arm64Pool), two at a time: every
    case the session's tests ask for (an Arm64Case parameter, or a module's ARM64_CASES)
    starts when the first is needed."""
    from tests.bed import arm64guest
    require_root()
    require(shutil.which(arm64guest.QEMU_ARM64) is not None,
            f"{arm64guest.QEMU_ARM64} not installed (apt-get install qemu-system-arm)")
    try:
        kernel = arm64guest.get_kernel()
        arm64guest.get_initramfs(kernel, arm64guest.get_root())
    except BedError as err:
        require(False, f"arm64 test bed not available: {err}")
    wanted = []
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        cases = [v for v in (spec.params.values() if spec else ())
                 if isinstance(v, arm64guest.Arm64Case)]
        cases += getattr(getattr(item, "module", None), "ARM64_CASES", ())
        wanted += [c for c in cases if c not in wanted]
    # run folders in the bed cache (qemu.new_run_dir: kept after the session, for the logs)
    pool = arm64guest.Arm64Pool(lambda name: None)
    if any(c.loader == "pykexec" for c in wanted):
        try:
            arm64guest.prepare_pykexec()
        except BedError as err:        # the pykexec cases fail on it, kexec-tools' still run
            pool.purgatory_error = str(err)
            wanted = [c for c in wanted if c.loader != "pykexec"]
    pool.wanted = wanted
    _ARM64_POOLS.append(pool)
    yield pool
    pool.close()


_ARM64_POOLS = []
# (title, a callable giving one line per case that ran): other matrices' summaries
SUMMARIES = []


def pytest_terminal_summary(terminalreporter):
    """Each arm64 case's outcome and cycle time (QEMU start to exit), for the matrix table;
    then the SUMMARIES that test modules registered."""
    for title, lines in SUMMARIES:
        if lines():
            terminalreporter.write_sep("-", title)
            for line in lines():
                terminalreporter.write_line(line)
    for pool in _ARM64_POOLS:
        lines = pool.summary_lines()
        if lines:
            terminalreporter.write_sep("-", "arm64 matrix (one guest boot per case)")
            for line in lines:
                terminalreporter.write_line(line)
