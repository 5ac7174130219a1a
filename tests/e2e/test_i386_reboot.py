"""A normal load and its boot on i386, end to end: Debian's 32-bit kernels under QEMU (TCG),
pykexec running in the guest under Debian's python3.11:i386 (this checkout over 9p, the i386
purgatory built on the host; tests/bed/i386guest.py run_i386_reboot).

In the first kernel: `pykexec -l bzImage --initrd=INITRAMFS --append="... bed_marker=RANDOM"`,
then `pykexec -e`. The kernel -e boots comes up with the same busybox initramfs and records
its /proc/cmdline and release in the results folder the host reads
(tests/bed/guest/load_exec.py). It passes when that command line is the one the load gave,
marker included, and the release is the loaded kernel's. A fresh marker per boot, so no
earlier run's record can pass for this one.

Cases (one guest boot each, about 25 s; the PAE one about 55 s):
- 686-1g: the 686 (non-PAE) kernel, one CPU, 1 GiB;
- pae-5g: the 686-pae kernel with RAM above 4 GiB (qemu-system-x86_64, see i386guest.qemu_for);
- 686-to-pae: a 686 first kernel loads the 686-pae kernel: the release changes, so the
  kernel that came up is the file -l was given, not the one that was running;
- other-marker (control): the -l carries another fresh marker instead of the expected one;
  the new kernel boots, and the same check must fail on it;
- kexec-686-1g (peer): Debian's kexec-tools:i386 doing the same cycle in the same guest.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from typing import Dict

import pytest

from tests.bed import i386guest
from tests.bed.kernels import BedError
from tests.conftest import require, require_root
from tests.e2e.conftest import SUMMARIES

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class RebootCase:
    name: str
    first: str = "686"            # flavour of the running kernel
    loaded: str = "686"           # flavour of the bzImage -l loads
    memory_mib: int = 1024
    loader: str = "pykexec"       # or "kexec": Debian's kexec-tools:i386
    expected_marker: bool = True  # False: the control, whose -l carries another marker


CASES = (
    RebootCase("686-1g"),
    RebootCase("pae-5g", first="686-pae", loaded="686-pae", memory_mib=5120),
    RebootCase("686-to-pae", loaded="686-pae"),
    RebootCase("other-marker", expected_marker=False),
    RebootCase("kexec-686-1g", loader="kexec"),
)
BOOTING = [c for c in CASES if c.expected_marker]
CONTROL = next(c for c in CASES if not c.expected_marker)


@dataclass
class Outcome:
    case: RebootCase
    rb: object                    # tests.bed.qemu.LoadExecResult
    loaded_release: str
    first_release: str

    def verdict(self) -> str:
        """One line: what the case showed and its times (for the session's summary)."""
        rb, t = self.rb, self.rb.timings
        return (f"{self.case.loader} -l exit {rb.before.get('load_exit')} in "
                f"{rb.before.get('load_seconds')} s, -e "
                f"{'booted ' + str(rb.after.get('release')) if rb.after else 'booted NOTHING'}"
                f", marker {'found' if rb.rebooted else 'absent'}; boot {t.get('boot')} s, "
                f"-e to /init {t.get('exec_to_init')} s, cycle {t.get('total')} s")


class Reboots:
    """Runs each case once, when a test first asks for it: one guest at a time."""

    def __init__(self, tmp_factory):
        self.tmp_factory = tmp_factory
        self.done: Dict[str, Outcome] = {}

    def get(self, case: RebootCase) -> Outcome:
        if case.name not in self.done:
            self.done[case.name] = self._run(case)
        return self.done[case.name]

    def _run(self, case: RebootCase) -> Outcome:
        first = i386guest.get_kernel(case.first)
        loaded = i386guest.get_kernel(case.loaded)
        initrd = i386guest.get_initramfs(loaded, i386guest.get_root())
        marker = "bed_marker=" + secrets.token_hex(6)
        given = marker if case.expected_marker else "bed_marker=" + secrets.token_hex(6)
        prefix = i386guest.pykexec_argv() if case.loader == "pykexec" else i386guest.KEXEC_I386
        load = [*prefix, "-l", i386guest.guest_path(loaded.bzimage),
                f"--initrd={i386guest.guest_path(initrd)}",
                f"--append={i386guest.reboot_append(given)}"]
        rb = i386guest.run_i386_reboot(load, [*prefix, "-e"], marker, kernel=first,
                                       memory_mib=case.memory_mib, name=f"i386-{case.name}",
                                       run_dir=self.tmp_factory.mktemp(case.name))
        return Outcome(case, rb, loaded.release, first.release)


@pytest.fixture(scope="session")
def i386_reboots(tmp_path_factory):
    require_root()
    for qemu in {i386guest.qemu_for(c.memory_mib) for c in CASES}:
        require(shutil.which(qemu) is not None, f"{qemu} not installed (apt-get install qemu-system-x86)")
    try:
        i386guest.get_root()
        for flavour in {f for c in CASES for f in (c.first, c.loaded)}:
            i386guest.get_kernel(flavour)
        i386guest.prepare_pykexec()
    except BedError as e:
        require(False, f"i386 test bed not available: {e}")
    reboots = Reboots(tmp_path_factory)
    SUMMARIES.append(("i386 -l/-e (one guest boot per case)",
                      lambda: [f"{n}: {o.verdict()}" for n, o in reboots.done.items()]))
    return reboots


def _case_ids(case):
    return case.name


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_load_exits_0_and_is_timed(case, i386_reboots):
    """-l exits 0 and leaves /sys/kernel/kexec_loaded at 1; the load's time and the boot's
    (QEMU start to /init, -e to the new kernel's /init, QEMU start to exit) are recorded."""
    rb = i386_reboots.get(case).rb
    assert rb.before.get("load_exit") == 0, rb.describe()
    assert rb.before.get("kexec_loaded") == "1", rb.describe()
    assert 0 < rb.before["load_seconds"] < 300, rb.before
    t = rb.timings
    assert 0 < t["boot"] < t["boot"] + t["exec_to_init"] < t["total"] <= rb.cycle.config.timeout, t
    assert not rb.cycle.timed_out, rb.describe()


@pytest.mark.parametrize("case", BOOTING, ids=_case_ids)
def test_exec_boots_the_loaded_kernel_with_its_command_line(case, i386_reboots):
    """-e never returns; the kernel that comes up has exactly the command line -l gave it
    (the fresh marker on it) and the release of the bzImage -l was given."""
    out = i386_reboots.get(case)
    rb = out.rb
    assert rb.rebooted, rb.describe()
    assert rb.after["cmdline"] == i386guest.reboot_append(rb.marker), rb.after
    assert rb.after["release"] == out.loaded_release, rb.after
    assert rb.before["first_release"] == out.first_release, rb.before
    if case.first != case.loaded:   # the release proves the file, not the running kernel
        assert out.first_release != out.loaded_release, (out.first_release, out.loaded_release)
    assert "exec_exit" not in rb.before, rb.describe()      # -e never returned
    assert "fdt_bootargs" not in rb.after                   # a PC: no device tree


def test_control_another_marker_fails_the_check(i386_reboots):
    """The control: a -l whose --append lacks the expected marker (it carries another).
    The new kernel does boot, with the other marker, and the check used above says no."""
    out = i386_reboots.get(CONTROL)
    rb = out.rb
    assert rb.before.get("load_exit") == 0, rb.describe()
    assert rb.after.get("release") == out.loaded_release, rb.describe()
    cmdline = rb.after["cmdline"].split()
    assert i386guest.generic_qemu.LOAD_EXEC_MARK in cmdline
    assert rb.marker not in cmdline and any(w.startswith("bed_marker=") for w in cmdline)
    assert not rb.rebooted
