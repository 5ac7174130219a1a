"""pykexec as /sbin/kexec in a QEMU guest: normal kexec reboots, kexec_file_load, kdump.

Reboot scenarios (tests/bed/reboot_cycle.py): the guest runs the commands an init system
runs, through pykexec's `kexec` wrapper on the read-only host root, and must come back in
the new kernel with the marker on its /proc/cmdline. Crash scenarios reuse the kdump bed
(tests/bed/qemu.py: run_kdump_cycle): `-s -p` and a `-p` that falls back from
kexec_file_load to kexec_load on a kernel that (as the fault layer plays it) lacks it.
Debian's kdump-tools (downloaded with apt-get, unpacked, never installed) runs in the guest
with pykexec as /sbin/kexec (kdump_tools_config: the wrapper bound over /usr/sbin/kexec, or
the .deb installed; tests/packaging/test_guest.py runs it with the .deb): `kdump-config
load`, `status`, `unload`, `status`, `load`, `status`, then a panic; the capture kernel runs
`kdump-config savecore`. Only kdump-config's two fixed paths (/etc/default/kdump-tools and
/var/lib/kdump) are moved to writable places; the root stays read-only.
Boots run two at a time, all of the selected ones from the first use.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Dict

import pytest

from tests.bed.kernels import BedError, get_kernel
from tests.conftest import require, require_root

pytestmark = pytest.mark.e2e

PARALLEL = 2
LOAD = "{kexec} --load {kernel} --append '{append}' --initrd {initrd}"   # systemd's argv

# name -> (commands in the first kernel, memory MiB, what it proves)
REBOOTS = {
    "systemd-argv-then-e": ([LOAD, "{kexec} -e"], 1024,
                            "systemctl kexec's exact argv, then systemd-shutdown's `kexec -e`; "
                            "the default (-a) takes kexec_file_load"),
    "kexec_load-c": (["{kexec} -c --load {kernel} --append '{append}' --initrd {initrd}",
                      "{kexec} -e"], 1024,
                     "pykexec's own normal bzImage64 plan through kexec_load"),
    "kexec_load-c-4g": (["{kexec} -c -l {kernel} --append='{append}' --initrd={initrd}",
                         "{kexec} -e"], 4096,
                        "top-down placement above 4 GiB: ext_cmd_line_ptr, ext_ramdisk_image"),
    "file-s": (["{kexec} -s -l {kernel} --append='{append}' --initrd={initrd}", "{kexec} -e"],
               1024, "kexec_file_load only"),
    "force": (["{kexec} -f {kernel} --append='{append}' --initrd={initrd}"], 1024,
              "-f: load and boot at once (default syscall)"),
    "force-c": (["{kexec} -c -f {kernel} --append='{append}' --initrd={initrd}"], 1024,
                "-f through kexec_load"),
    "elf-args-linux": (["{kexec} -c -l {vmlinux} --args-linux --append='{append}' "
                        "--initrd={initrd}", "{kexec} -e"], 1024,
                       "an ELF vmlinux at its link address, Linux boot parameters"),
    "auto-fallback": (["PYKEXEC_SYSCALL_FAULTS=kexec_file_load=ENOSYS {kexec} -d -l {kernel} "
                       "--append='{append}' --initrd={initrd} 2>/tmp/results/load.err; "
                       "grep -c 'falling back to kexec_load' /tmp/results/load.err",
                       "{kexec} -e"], 1024,
                      "-a on a kernel without kexec_file_load (fault layer): kexec_load"),
    "ifdown-then-e": (["busybox insmod {modules}/kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
                       "ip link set eth0 up; sleep 1; ip -o link show eth0 > /tmp/results/link-up",
                       LOAD,
                       "PYKEXEC_SYSCALL_FAULTS=reboot=EPERM {kexec} -e; echo $? > /tmp/results/e-rc",
                       "ip -o link show eth0 > /tmp/results/link-after-e",
                       "{kexec} -e"], 1024,
                      "-e takes eth0 down (first with reboot refused by the fault layer, to "
                      "look), then boots"),
    # A UKI built in the guest (objcopy onto systemd-boot's stub, as systemd documents)
    # whose .cmdline is the marked command line: -s -l with no --append/--initrd must boot
    # with the UKI's command line (the marker) and initrd (the bed's, which runs after.sh).
    "uki-s-l": (["printf '%s' '{append}' > /tmp/results/uki-cmdline",
                 "objcopy --add-section .cmdline=/tmp/results/uki-cmdline "
                 "--change-section-vma .cmdline=0x30000 --add-section .linux={kernel} "
                 "--change-section-vma .linux=0x2000000 --add-section .initrd={initrd} "
                 "--change-section-vma .initrd=0x3000000 "
                 "/usr/lib/systemd/boot/efi/linuxx64.efi.stub /tmp/results/uki.efi",
                 "{kexec} -s -l /tmp/results/uki.efi", "{kexec} -e"], 1024,
                "a unified kernel image: its .linux, .initrd and .cmdline through kexec_file_load"),
    "debian-kexec-load-init": (['/bin/sh -c \'{kexec} -l "$0" --initrd="$1" --append="$2"\' '
                                "{kernel} {initrd} '{append}'",
                                "test \"$(cat /sys/kernel/kexec_loaded)\" = 1 && {kexec} -e"],
                               1024, "Debian's init.d/kexec-load and init.d/kexec spellings"),
}


@pytest.fixture(scope="session")
def bed_kernel():
    require_root()
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64 not installed")
    require(os.path.exists("/bin/busybox"), "busybox-static not installed")
    try:
        return get_kernel()
    except BedError as e:
        require(False, f"test bed not available: {e}")


class Pool:
    def __init__(self, kernel, wanted):
        self.kernel = kernel
        self.wanted = wanted
        self.lock = threading.Lock()
        self.pool = None
        self.futures: Dict[str, object] = {}

    def _submit(self, name):
        from tests.bed.qemu import CycleConfig, run_kdump_cycle
        from tests.bed.reboot_cycle import RebootConfig, run_reboot_cycle
        if name == "uefi-efi-data":
            from tests.bed.reboot_cycle import RebootConfig, run_reboot_cycle
            self.futures[name] = self.pool.submit(run_reboot_cycle, RebootConfig(
                commands=UEFI_COMMANDS, after_commands=UEFI_AFTER, firmware="uefi",
                name="reboot-uefi-efi-data", kernel=self.kernel, timeout=300))
        elif name in REBOOTS:
            commands, mib, _ = REBOOTS[name]
            cfg = RebootConfig(commands=commands, memory_mib=mib, name=f"reboot-{name}",
                               kernel=self.kernel, timeout=300)
            self.futures[name] = self.pool.submit(run_reboot_cycle, cfg)
        else:
            argv = CRASHES[name](self.kernel)
            cfg = CycleConfig(loader_argv=argv, memory_mib=1024, cpus=2,
                              cmdline_extra="crashkernel=256M", pattern_mib=32,
                              name=f"pykexec-{name}", kernel=self.kernel, timeout=300)
            self.futures[name] = self.pool.submit(run_kdump_cycle, cfg)

    def get(self, name):
        with self.lock:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="reboot")
                for n in self.wanted:
                    self._submit(n)
            if name not in self.futures:
                self._submit(name)
        return self.futures[name].result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _crash_argv(*options, env=()):
    def build(kernel):
        from tests.bed.initramfs import get_initramfs
        from tests.bed.qemu import DEFAULT_APPEND
        prefix = ["env", *env] if env else []
        return [*prefix, sys.executable, "-m", "pykexec", *options, "-p", str(kernel.bzimage),
                f"--initrd={get_initramfs(kernel)}", f"--append={DEFAULT_APPEND}"]
    return build


UEFI_COMMANDS = [
    "{python} -m pykexec snapshot /tmp/results/snap",
    "{kexec} -c -l {kernel} --append '{append}' --initrd {initrd}",
    "{kexec} -e",
]
UEFI_AFTER = ["ls /sys/firmware/efi/runtime-map | wc -l > /tmp/results/after-runtime-map",
              "test -d /sys/firmware/efi/efivars && echo efivars > /tmp/results/after-efivars"]

KC = "sh /tmp/results/kdump-config"
KDUMP_TOOLS_COMMANDS = [
    "mkdir -p /tmp/kdump-lib /tmp/results/crash",
    "/sbin/kexec -v",
    "echo '== load'; " + KC + " load; echo \"load rc=$?\"",
    "echo '== status'; " + KC + " status",
    "echo '== unload'; " + KC + " unload; echo \"unload rc=$?\"",
    "echo '== status'; " + KC + " status",
    "echo '== load again'; " + KC + " load; echo \"load rc=$?\"",
    "echo '== status'; " + KC + " status",
    "cat /sys/kernel/kexec_crash_loaded",
    "sync; echo c > /proc/sysrq-trigger",
]
KDUMP_TOOLS_DEFAULTS = """USE_KDUMP=1
KDUMP_KERNEL={kernel}
KDUMP_INITRD={initrd}
KDUMP_COREDIR=/tmp/results/crash
"""
KDUMP_TOOLS_CAPTURE = (KC + " savecore; echo \"savecore rc=$?\"; ls -lR /tmp/results/crash\n")


# With the .deb: installed in the guest's overlay root; pykexec-kexec diverts kexec-tools'
# /sbin/kexec and becomes it. Then where Python finds pykexec, and the diversion.
DEB_INSTALL = [
    "dpkg -i /tmp/results/pykexec.deb /tmp/results/pykexec-kexec.deb",
    "python3 -c 'import pykexec; print(\"module:\", pykexec.__file__)'",
    "dpkg-divert --list '*sbin/kexec'",
]


def kdump_tools_config(kernel, debs=None):
    """Debian's kdump-tools with pykexec as /sbin/kexec: the checkout's wrapper bound over
    it, or (debs: {"pykexec": path, "pykexec-kexec": path}) the .deb packages installed."""
    from tests.bed.reboot_cycle import RebootConfig, get_kdump_tools, kdump_config_for_guest
    root = get_kdump_tools()
    packages = {f"{name}.deb": Path(path).read_bytes() for name, path in (debs or {}).items()}
    return RebootConfig(
        commands=(DEB_INSTALL if debs else []) + KDUMP_TOOLS_COMMANDS, memory_mib=1024, cpus=2,
        first_cmdline_extra="crashkernel=256M",
        name="reboot-kdump-tools" + ("-deb" if debs else ""), kernel=kernel,
        timeout=600 if debs else 420, overlay_root=bool(debs),
        # /sbin -> usr/sbin
        bind_files={} if debs else {"/usr/sbin/kexec": "/tmp/results/bin/kexec"},
        extra_files={"kdump-tools.default": KDUMP_TOOLS_DEFAULTS},
        raw_files={"kdump-config": kdump_config_for_guest(root, "/tmp/results/kdump-tools.default",
                                                          "/tmp/kdump-lib"),
                   "capture.sh": KDUMP_TOOLS_CAPTURE.encode(), **packages})


CRASHES = {
    "crash-file-s": _crash_argv("-s"),
    "crash-auto-fallback": _crash_argv("-d", env=("PYKEXEC_SYSCALL_FAULTS=kexec_file_load=ENOSYS",)),
}


@pytest.fixture(scope="session")
def pool(bed_kernel, request):
    wanted = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec and item.module.__name__ == __name__:
            name = callspec.params.get("name")
            if name and name not in wanted:
                wanted.append(name)
    p = Pool(bed_kernel, wanted)
    yield p
    p.close()


@pytest.mark.parametrize("name", list(REBOOTS))
def test_kexec_reboots_into_the_new_kernel(pool, name):
    res = pool.get(name)
    assert res.rebooted, res.describe()
    assert res.boots[:2] == [b for b in res.boots[:2] if b.startswith(("before", "after"))]
    assert [b.split()[0] for b in res.boots] == ["before", "after"], res.describe()
    if name == "ifdown-then-e":
        results = res.run_dir / "results"
        assert ",UP" in (results / "link-up").read_text() or "<BROADCAST,MULTICAST,UP" in \
            (results / "link-up").read_text(), res.describe()
        assert (results / "e-rc").read_text().strip() == "255", res.describe()
        after = (results / "link-after-e").read_text()
        assert ",UP" not in after and "state DOWN" in after, after
    if name == "auto-fallback":
        err = (res.run_dir / "results" / "load.err").read_text()
        assert "kexec_file_load failed: this kernel has no kexec_file_load" in err, err
        assert "falling back to kexec_load" in err, err


@pytest.mark.parametrize("name", list(CRASHES))
def test_crash_load_is_captured(pool, name):
    res = pool.get(name)
    assert res.loader_exit == 0, res.describe()
    assert res.ok, res.describe()
    if name == "crash-auto-fallback":
        assert "falling back to kexec_load" in res.loader_stderr, res.describe()


# Debian's kdump-tools runs with pykexec as /sbin/kexec from the .deb (installed in the
# guest's overlay root): tests/packaging/test_guest.py, with kdump_tools_config(debs=...) and
# check_kdump_tools_cycle below. (Here it ran with the checkout's wrapper bound over
# /usr/sbin/kexec; one kdump-tools boot of ~5 minutes under TCG is enough for CI.)


def check_kdump_tools_cycle(res):
    log = res.before_log
    assert "(pykexec " in log, res.describe()                      # /sbin/kexec is pykexec
    sections = re.split(r"^== ", log, flags=re.M)   # the echoed headers, not `+ echo` traces
    status = [s for s in sections if s.startswith("status")]
    assert len(status) == 3, res.describe()
    assert "ready to kdump" in status[0] and "Not ready" not in status[0], res.describe()
    assert "Not ready to kdump" in status[1], res.describe()
    assert "ready to kdump" in status[2] and "Not ready" not in status[2], res.describe()
    assert len(re.findall(r"^load rc=0$", log, flags=re.M)) == 2, res.describe()
    assert re.search(r"^unload rc=0$", log, flags=re.M), res.describe()
    kexec_cmd = (res.results / "crash" / "kexec_cmd").read_text()
    assert kexec_cmd.startswith("/sbin/kexec -p"), kexec_cmd
    # the capture kernel ran kdump-config savecore: a dump and its dmesg with the panic
    assert "savecore rc=0" in res.capture, res.describe() + res.capture
    dmesg = [p for p in (res.results / "crash").rglob("dmesg.*")]
    dumps = [p for p in (res.results / "crash").rglob("dump.*")]
    assert dmesg and dumps, res.capture
    assert "sysrq triggered crash" in dmesg[0].read_text(errors="replace")


@pytest.mark.parametrize("name", ["uefi-efi-data"])
def test_uefi_normal_kexec_keeps_efi_runtime_services(pool, name, tmp_path):
    """On OVMF, `-c -l` passes the EFI runtime data: the new kernel has EFI (runtime map,
    efivars), and the EFI buffers equal Debian's kexec's on the guest's own snapshot."""
    from tests.bed.oracle import run_oracle
    from tests.bed.reboot_cycle import ovmf_image
    require(ovmf_image() is not None, "UEFI case needs OVMF (apt-get install ovmf)")
    res = pool.get(name)
    assert res.rebooted, res.describe()
    results = res.results
    assert int((results / "after-runtime-map").read_text()) > 0, res.describe()
    assert (results / "after-efivars").exists(), res.describe()
    # the same load planned on the guest's snapshot, by both loaders
    from pykexec.arch import plan_load
    from pykexec.machine import Machine
    from pykexec.arch import parse_args
    snap = str(results / "snap")
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"x" * 5000)
    argv = ["-l", str(pool.kernel.bzimage), "--append=console=ttyS0", f"--initrd={initrd}"]
    theirs = run_oracle(snap, argv)
    assert theirs.exit_code == 0, theirs.stderr
    segs = {s.mem: s.data for s in theirs.calls[-1].segments}
    mine = plan_load(parse_args(["-c", *argv, "--sysroot", snap]), Machine.read(snap))
    setup = [s for s in mine.segments if s.kind == "setup_data"]
    assert len(setup) == 3, mine.segments            # SETUP_EFI, runtime map, RNG seed
    efi, runtime_map = setup[0], setup[1]
    assert segs[efi.mem] == efi.data                 # SETUP_EFI byte for byte
    records = lambda b: sorted(b[i:i + 40] for i in range(0, len(b), 40))
    assert records(segs[runtime_map.mem]) == records(runtime_map.data)  # order: readdir
    zero_theirs = next(s.data for s in theirs.calls[-1].segments if 0x4000 < s.bufsz < 0x8000)
    zero_mine = mine.segments_of("boot_params")[0].data
    assert zero_theirs[0x1C0:0x1E0] == zero_mine[0x1C0:0x1E0]   # efi_info
