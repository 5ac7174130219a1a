"""Crash hotplug on bookworm-backports' kernel (6.12): the kernel keeps the core header current.

A guest with 1 GiB and 1 CPU (room for 4 GiB in 4 DIMM slots and 4 CPUs) loads a crash
kernel with `kexec_load` (-c) and `--hotplug`; the host then hot-adds a CPU and a 128 MiB
DIMM through QMP, the guest onlines both and panics, with no reload in between. With
`--hotplug` the capture kernel's /proc/vmcore must have a PT_LOAD over the added DIMM and
an NT_PRSTATUS note for each CPU online at the panic (2). The same cycle without
`--hotplug` is the control: the header written at load time has no PT_LOAD over the DIMM
and one CPU note, so both assertions discriminate. (The guest detects a hypervisor so
that it accepts a hot-added CPU at all: tests/bed/hotplug.py says how.)

A load with kexec_file_load (-s) gets the same without `--hotplug`: the kernel builds the
header and keeps it current (pykexec only).

The loader is a parameter (HOTPLUG_LOADERS): Debian's kexec-tools 2.0.28+ built from source
(tests/bed/kexec_tools.py) is the oracle, and pykexec is held to the same test.
"""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.bed.hotplug import HotplugPlan, pt_load_covering, run_hotplug_cycle
from tests.bed.initramfs import get_initramfs
from tests.bed.kernels import BedError, get_kernel
from tests.bed.qemu import DEFAULT_APPEND, CycleConfig, loader_argv
from tests.conftest import require, require_root

pytestmark = pytest.mark.e2e

CPU_SYSFS = "/sys/devices/system/cpu/crash_hotplug"
MEMORY_SYSFS = "/sys/devices/system/memory/crash_hotplug"
PLAN = HotplugPlan(cpus=1, dimms=(128,))


def built_kexec():
    from tests.bed.kexec_tools import get_kexec_tools
    return [str(get_kexec_tools().kexec)]


def pykexec():
    from pykexec.arch.x86 import purgatory_spec
    from pykexec.purgatory.build import purgatory_object
    purgatory_object(purgatory_spec.X86_64)     # built on the host: the guest's view is read-only
    return [sys.executable, "-m", "pykexec"]


# name -> a function giving the loader's argv prefix (it may build or download first).
HOTPLUG_LOADERS = {"kexec-tools-built": built_kexec, "pykexec": pykexec}


@pytest.fixture(scope="module")
def backports_bed():
    require_root()
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64 not installed")
    try:
        import qemu.qmp  # noqa: F401
    except ImportError:
        require(False, "qemu.qmp not installed (pip install -e .[test])")
    try:
        kernel = get_kernel(series="backports")
        initrd = get_initramfs(kernel)
    except BedError as err:
        require(False, f"backports kernel not available: {err}")
    return kernel, initrd


@pytest.fixture(scope="module", params=sorted(HOTPLUG_LOADERS))
def loader(request, backports_bed):
    try:
        return HOTPLUG_LOADERS[request.param]()
    except BedError as err:
        require(False, f"loader {request.param} not available: {err}")


# The capture kernel must not hot-add the DIMM itself (QEMU's ACPI tables still list it):
# it would take the old memory there for its own RAM, and /proc/vmcore could not read it
# ("ioremap on RAM"). Fedora's kdump adds the same option.
CAPTURE_APPEND = DEFAULT_APPEND + " acpi_no_memhotplug"


def cycle(backports_bed, loader, hotplug: bool, tmp_path, syscall: str = "-c"):
    kernel, initrd = backports_bed
    extra = [syscall] + (["--hotplug"] if hotplug else [])
    cfg = CycleConfig(
        loader_argv=loader_argv(loader, str(kernel.bzimage), str(initrd),
                                append=CAPTURE_APPEND, extra=extra),
        memory_mib=1024, cpus=1, cmdline_extra="crashkernel=256M", pattern_mib=16,
        name="hotplug" if hotplug else "hotplug-control", kernel=kernel, initramfs=initrd,
        run_dir=tmp_path / "run", timeout=300)
    return run_hotplug_cycle(cfg, PLAN)


def _common(res, report):
    """What both cycles must show; returns the DIMM QEMU placed."""
    assert res.loader_exit == 0 and res.crash_loaded == 1, res.describe()
    assert not report.errors and "error" not in report.guest, (report, res.describe())
    # the host added the DIMM and the guest has it as System RAM
    assert len(report.dimms) == 1, report
    assert report.guest["after"]["blocks"] > report.guest["before"]["blocks"], report.guest
    # and the CPU: present and online in the first kernel before the panic
    assert len(report.cpus) == 1, report
    assert report.guest["before"]["cpus"] == [0], report.guest
    assert report.guest["after"]["cpus"] == [0, 1], report.guest
    assert report.guest["after"]["online_cpus"] == "0-1", report.guest
    ram = report.guest["after"]["system_ram"]
    dimm = report.dimms[0]
    assert any(s <= dimm["addr"] and dimm["addr"] + dimm["size"] - 1 <= e for s, e in ram), \
        (dimm, ram)
    # still loaded after the hotplug: nothing unloaded or reloaded it
    assert report.crash_hotplug_after["/sys/kernel/kexec_crash_loaded"] == "1"
    assert res.captured, res.describe()
    return dimm


def pattern_pages_in(res, dimm) -> int:
    """How many of stage 1's pattern pages the kernel placed in the DIMM."""
    lines = (res.run_dir / "results" / "pattern.txt").read_text().splitlines()[1:]
    pfns = [int(line.split()[1]) for line in lines if line.strip()]
    first, end = dimm["addr"] >> 12, (dimm["addr"] + dimm["size"]) >> 12
    return sum(1 for pfn in pfns if first <= pfn < end)


def assert_header_kept_current(res, report):
    """The kernel had crash hotplug on for the load and rewrote the header on the hot-add."""
    assert report.crash_sysfs_loaded[CPU_SYSFS] == "1", report.crash_sysfs_loaded
    assert report.crash_sysfs_loaded[MEMORY_SYSFS] == "1", report.crash_sysfs_loaded
    dimm = _common(res, report)
    assert pt_load_covering(res.phdrs, dimm["addr"], dimm["size"]), (dimm, res.pt_loads)
    # the kernel gave the added CPU a note in the header: both CPUs saved their registers
    assert res.nt_prstatus == 2, res.describe()
    # every pattern page is in the dump, those the kernel put in the new DIMM included
    assert res.pattern.intact, (res.pattern, pattern_pages_in(res, dimm))


def test_hotplug_load_keeps_the_core_header_current(backports_bed, loader, tmp_path):
    assert_header_kept_current(*cycle(backports_bed, loader, True, tmp_path))


def test_without_hotplug_the_header_stays_stale(backports_bed, loader, tmp_path):
    res, report = cycle(backports_bed, loader, False, tmp_path)
    assert report.crash_sysfs_loaded[CPU_SYSFS] == "0", report.crash_sysfs_loaded
    assert report.crash_sysfs_loaded[MEMORY_SYSFS] == "0", report.crash_sysfs_loaded
    dimm = _common(res, report)
    assert pt_load_covering(res.phdrs, dimm["addr"], dimm["size"]) is None, res.pt_loads
    # the header knows only the CPU present at load time
    assert res.nt_prstatus == 1, res.describe()
    # pattern pages in the DIMM are missing from the dump, the others are intact
    in_dimm = pattern_pages_in(res, dimm)
    assert res.pattern.mismatched == 0 and res.pattern.missing == in_dimm, (res.pattern, in_dimm)
    assert res.pattern.checked == res.pattern.recorded - in_dimm, res.pattern


def test_file_load_gets_crash_hotplug_without_asking(backports_bed, tmp_path):
    """kexec_file_load (-s): the kernel builds the core header itself and keeps it current
    with no --hotplug; pykexec's -s path must not get in the way of that."""
    try:
        loader = HOTPLUG_LOADERS["pykexec"]()
    except BedError as err:
        require(False, f"pykexec not available: {err}")
    assert_header_kept_current(*cycle(backports_bed, loader, False, tmp_path, syscall="-s"))
