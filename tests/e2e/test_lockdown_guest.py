"""A kernel booted with lockdown=integrity: what pykexec says, and what the kernel does.

In a QEMU guest (Debian's 6.1 kernel, crashkernel=256M, lockdown=integrity, no Secure Boot
keys) through pykexec's `kexec` wrapper and, for comparison, Debian's kexec-tools:
- kexec_load (-c) is refused by lockdown: pykexec exits as kexec-tools does, with one line
  naming lockdown and what to do instead (-s with a signed kernel);
- kexec_file_load (-s) of Debian's signed kernel reaches the signature check: the guest
  has no key that signed it in its keyrings (no UEFI db here), so the kernel refuses it
  with a signature errno, which pykexec names; again the exit status is kexec-tools';
- an unload with the default syscall choice goes through kexec_file_load, which lockdown
  allows, while `-c -pu` (kexec_load) is refused with the same diagnosis.
"""

from __future__ import annotations

import shutil

import pytest

from tests.bed.kernels import BedError, get_kernel
from tests.conftest import require, require_root

pytestmark = pytest.mark.e2e

ERRS = "2> /tmp/results/{name}.err; echo $? > /tmp/results/{name}.rc"
COMMANDS = [
    # as systemd does at boot: pykexec reads the lockdown mode there to word its diagnosis
    "mount -t securityfs securityfs /sys/kernel/security",
    "cat /sys/kernel/security/lockdown > /tmp/results/lockdown",
    "{kexec} -c -p {kernel} --initrd={initrd} --append='{append}' " + ERRS.format(name="c"),
    "/usr/sbin/kexec -c -p {kernel} --initrd={initrd} --append='{append}' "
    + ERRS.format(name="tools-c"),
    "{kexec} -s -p {kernel} --initrd={initrd} --append='{append}' " + ERRS.format(name="s"),
    "/usr/sbin/kexec -s -p {kernel} --initrd={initrd} --append='{append}' "
    + ERRS.format(name="tools-s"),
    "cat /sys/kernel/kexec_crash_loaded > /tmp/results/loaded",
    "{kexec} -pu " + ERRS.format(name="unload-auto"),
    "{kexec} -c -pu " + ERRS.format(name="unload-c"),
    "/usr/sbin/kexec -c -pu " + ERRS.format(name="tools-unload-c"),
]


def test_lockdown_diagnoses_on_a_real_kernel():
    require_root()
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64 not installed")
    require(shutil.which("/usr/sbin/kexec") is not None, "kexec-tools not installed")
    try:
        kernel = get_kernel()
    except BedError as e:
        require(False, f"test bed not available: {e}")
    from tests.bed.reboot_cycle import RebootConfig, run_reboot_cycle
    res = run_reboot_cycle(RebootConfig(
        commands=COMMANDS, memory_mib=1024, cpus=1,
        first_cmdline_extra="crashkernel=256M lockdown=integrity", name="lockdown",
        kernel=kernel, timeout=400))
    out = res.results

    def read(name):
        path = out / name
        return path.read_text().strip() if path.exists() else None

    assert read("lockdown") == "none [integrity] confidentiality", res.describe()
    # kexec_load: refused by lockdown, the same exit status as kexec-tools, one line
    assert read("c.rc") == read("tools-c.rc") and read("c.rc") != "0", (read("c.rc"),
                                                                         read("tools-c.rc"))
    lines = read("c.err").splitlines()
    assert len(lines) == 1 and "locked down (integrity)" in lines[0] and "-s" in lines[0], lines
    # kexec_file_load of the signed kernel: refused at the signature check here (no db key)
    assert read("s.rc") == read("tools-s.rc"), (read("s.rc"), read("tools-s.rc"), read("s.err"))
    lines = read("s.err").splitlines()
    assert read("s.rc") != "0" and read("loaded") == "0", (read("s.rc"), read("loaded"))
    assert lines and "signature" in lines[0] and "kexec_file_load failed" in lines[0], lines
    # unloading: kexec_file_load (the default first choice) is allowed, kexec_load is not
    assert read("unload-auto.rc") == "0", read("unload-auto.err")
    assert read("unload-c.rc") == read("tools-unload-c.rc") != "0", (read("unload-c.rc"),
                                                                     read("tools-unload-c.rc"))
    assert "locked down (integrity)" in read("unload-c.err"), read("unload-c.err")
