"""pykexec capture kernels in the cases the shared matrix (test_kdump.py) cannot check:
a capture kernel without an initrd, and a corrupted segment that purgatory must refuse."""

from __future__ import annotations

import re
import shlex
import sys

import pytest

from tests.bed.initramfs import get_initramfs
from tests.bed.kernels import BedError, get_kernel
from tests.bed.qemu import (DEFAULT_APPEND, GUEST_DIR, LOADERS, PANIC_LINE, CycleConfig,
                            loader_argv, run_kdump_cycle)
from tests.conftest import require, require_root

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def kernel():
    require_root()
    try:
        k = get_kernel()
        return k, str(get_initramfs(k))
    except BedError as err:
        require(False, f"test bed not available: {err}")


def after_panic(serial: str) -> str:
    at = serial.find(PANIC_LINE)
    assert at >= 0, serial[-3000:]
    return serial[at:]


def test_capture_kernel_without_initrd_boots_to_its_root_mount(kernel, tmp_path):
    """No initrd: nothing can run in the capture kernel, but it must boot with the planned
    command line, the planned memory map, and get as far as looking for its root."""
    k, _initrd = kernel
    argv = loader_argv(LOADERS["pykexec"], str(k.bzimage), None, append=DEFAULT_APPEND,
                       extra=("-c",))
    res = run_kdump_cycle(CycleConfig(loader_argv=argv, pattern_mib=4, run_dir=tmp_path,
                                      kernel=k, timeout=180, name="pykexec-no-initrd"))
    assert res.loader_exit == 0 and res.crash_loaded == 1, res.describe()
    tail = after_panic(res.serial_log.read_text(errors="replace"))
    assert "Linux version" in tail, res.describe()
    assert re.search(r"Command line: .*elfcorehdr=\d+K", tail), res.describe()
    assert "VFS: Unable to mount root fs" in tail, res.describe()
    assert not res.timed_out, res.describe()


def test_purgatory_refuses_a_corrupted_kernel(kernel, tmp_path):
    """A byte flipped after the digest was computed: purgatory says so and never jumps."""
    k, initrd = kernel
    plan_dir = "/tmp/results/plan"
    plan = shlex.join(loader_argv(LOADERS["pykexec"], str(k.bzimage), initrd,
                                  append=DEFAULT_APPEND,
                                  extra=("-c", "--console-serial", "--dry-run",
                                         f"--save-plan={plan_dir}")))
    load = shlex.join([sys.executable, str(GUEST_DIR / "load_corrupted_plan.py"), plan_dir])
    res = run_kdump_cycle(CycleConfig(loader_argv=["/bin/sh", "-c", f"{plan} >/dev/null && {load}"],
                                      pattern_mib=4, run_dir=tmp_path, kernel=k, timeout=90,
                                      name="pykexec-corrupted"))
    assert res.loader_exit == 0 and res.crash_loaded == 1, res.describe()
    tail = after_panic(res.serial_log.read_text(errors="replace"))
    assert "pykexec purgatory: sha256 digest mismatch, halting" in tail, res.describe()
    assert "Linux version" not in tail
    assert not res.captured
