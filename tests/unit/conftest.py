"""Unit tests never reach the kernel through kexec_file_load, reboot, ifdown or shutdown(8).

pykexec's default syscall mode (-a) tries kexec_file_load first. Tests that replace only
`pykexec.host.syscall.kexec_load` (as the bad-input table does) would otherwise make a real
kexec_file_load on a host that has it. Here every unit test runs with a backend where
kexec_file_load answers ENOSYS (a kernel without CONFIG_KEXEC_FILE, so -a falls back to
the monkeypatchable kexec_load), reboot(LINUX_REBOOT_CMD_KEXEC) answers EPERM, and
interfaces and shutdown(8) are only recorded. Tests that want a full recorder install
their own with `pykexec.host.syscall.use(...)`.
"""

import errno

import pytest

from pykexec.host import syscall
class _SafeHost(syscall.Host):
    live = True

    def kexec_file_load(self, kernel_fd, initrd_fd, cmdline, flags):
        raise syscall.KexecError(syscall.explain_errno(errno.ENOSYS, "kexec_file_load"),
                                 errno.ENOSYS)

    def reboot_kexec(self):
        raise syscall.KexecError("reboot refused in unit tests", errno.EPERM)

    def ifdown(self):
        return []

    def shutdown(self):
        return True


@pytest.fixture(autouse=True)
def _never_touch_the_host():
    with syscall.use(_SafeHost()):
        yield
