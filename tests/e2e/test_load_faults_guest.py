"""What a refused crash load costs on a real kernel (the model of tests/unit/test_load_faults.py).

In a QEMU guest with crashkernel=256M, through pykexec's `kexec` wrapper: load a capture
kernel; hand kexec_file_load a file that is no kernel (the kernel refuses it with ENOEXEC
only after it has freed the loaded crash image: no capture kernel afterwards, and pykexec
says so); load again; then with kexec_load_disabled=1 (refused up front with EPERM) the
capture kernel stays, for kexec_load and kexec_file_load alike.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.bed.kernels import BedError, get_kernel
from tests.conftest import require, require_root

pytestmark = pytest.mark.e2e

LOAD = "{kexec} %s -p {kernel} --initrd={initrd} --append='{append}'"
FLAG = "cat /sys/kernel/kexec_crash_loaded > /tmp/results/%s"
COMMANDS = [
    LOAD % "-c", FLAG % "loaded-1",
    "printf 'this is not a kernel' > /tmp/results/garbage",
    "{kexec} -s -p /tmp/results/garbage 2> /tmp/results/garbage.err; "
    "echo $? > /tmp/results/garbage.rc",
    FLAG % "loaded-2",
    LOAD % "-c", FLAG % "loaded-3",
    "echo 1 > /proc/sys/kernel/kexec_load_disabled",
    "{kexec} -c -p {kernel} --initrd={initrd} 2> /tmp/results/disabled-c.err; "
    "echo $? > /tmp/results/disabled-c.rc",
    FLAG % "loaded-4",
    "{kexec} -s -p {kernel} --initrd={initrd} 2> /tmp/results/disabled-s.err; "
    "echo $? > /tmp/results/disabled-s.rc",
    FLAG % "loaded-5",
]


def test_refused_crash_loads_on_a_real_kernel():
    require_root()
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64 not installed")
    try:
        kernel = get_kernel()
    except BedError as e:
        require(False, f"test bed not available: {e}")
    from tests.bed.reboot_cycle import RebootConfig, run_reboot_cycle
    res = run_reboot_cycle(RebootConfig(
        commands=COMMANDS, memory_mib=1024, cpus=1, first_cmdline_extra="crashkernel=256M",
        name="load-faults", kernel=kernel, timeout=400))
    out = res.results

    def read(name):
        path = out / name
        return path.read_text().strip() if path.exists() else None

    assert read("loaded-1") == "1", res.describe()
    # ENOEXEC comes after the kernel freed the crash image: -s exits 253 (kexec-tools'
    # EFALLBACK) and nothing is loaded any more
    assert read("garbage.rc") == "253", res.describe()
    assert read("loaded-2") == "0", res.describe()
    assert "no capture kernel is loaded now" in read("garbage.err"), read("garbage.err")
    assert read("loaded-3") == "1", res.describe()
    # EPERM comes before: the capture kernel stays
    for mode in ("c", "s"):
        assert read(f"disabled-{mode}.rc") == "255", res.describe()
        assert "kexec_load_disabled" in read(f"disabled-{mode}.err"), read(f"disabled-{mode}.err")
    assert read("loaded-4") == "1" and read("loaded-5") == "1", res.describe()
