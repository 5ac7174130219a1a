"""The packages in a QEMU guest (tests/bed): Debian's kdump-tools through load, status,
unload and a panic with the .deb installed in the guest's root (a writable overlay on the
host root, never the host itself), and a kdump cycle loaded by the wheel's `pykexec`
installed in a fresh virtualenv (the guest runs the host's Python over 9p)."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.conftest import require, require_root

pytestmark = [pytest.mark.e2e, pytest.mark.packaging]


@pytest.fixture(scope="module")
def guest_kernel():
    from tests.bed.kernels import BedError, get_kernel
    require_root()
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64 not installed")
    require(os.path.exists("/bin/busybox"), "busybox-static not installed")
    try:
        return get_kernel()
    except BedError as e:
        require(False, f"test bed not available: {e}")


def test_debian_kdump_tools_with_the_deb_installed(guest_kernel, deb_build):
    from tests.bed.reboot_cycle import run_reboot_cycle
    from tests.e2e.test_reboot import check_kdump_tools_cycle, kdump_tools_config
    res = run_reboot_cycle(kdump_tools_config(guest_kernel, debs=deb_build.debs))
    log = res.before_log
    assert "Setting up pykexec-kexec (0.1.0-1)" in log, res.describe()
    assert "module: /usr/lib/python3/dist-packages/pykexec/__init__.py" in log, res.describe()
    assert "diversion of /sbin/kexec to /sbin/kexec.kexec-tools by pykexec-kexec" in log, \
        res.describe()
    check_kdump_tools_cycle(res)
    print(f"kdump-tools with the .deb: {res.times}")


def test_kdump_cycle_loaded_by_the_installed_wheel(guest_kernel, installed):
    from tests.bed.initramfs import get_initramfs
    from tests.bed.qemu import DEFAULT_APPEND, CycleConfig, run_kdump_cycle
    argv = [str(installed / "bin" / "pykexec"), "-p", str(guest_kernel.bzimage),
            f"--initrd={get_initramfs(guest_kernel)}", f"--append={DEFAULT_APPEND}"]
    res = run_kdump_cycle(CycleConfig(loader_argv=argv, memory_mib=1024, cpus=2,
                                      cmdline_extra="crashkernel=256M", pattern_mib=32,
                                      name="pykexec-wheel", kernel=guest_kernel, timeout=300))
    assert res.ok, res.describe()
    print(f"load with the wheel in the guest: {res.timings.load} s")
