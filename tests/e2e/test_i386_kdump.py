"""Real i386 kdump cycles under qemu-system-i386 (TCG), with Debian's 32-bit kernels.

The 2006 kdump document's own command, on its own kind of machine:

    pykexec -p vmlinux --args-linux --elf32-core-headers \
            --append="... init 1 irqpoll maxcpus=1 ..."      (first kernel: crashkernel=64M@16M)

then the bzImage form, and the 686-pae kernel with RAM above 4 GiB, where the core header
must be ELF64. A fourth boot runs Debian's own i386 kexec (-d) in the guest after taking a
machine snapshot, so the host-side i386 oracle can be checked against it
(tests/differential/test_i386_vs_oracle.py uses the committed snapshots the same way).

Each case is one boot (tests/bed/i386guest.py): load, fill a memory pattern, keep a copy
of the low 640 KiB, panic, and in the capture kernel check /proc/vmcore.
"""

from __future__ import annotations

import shlex
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Optional

import pytest

from tests.bed import i386guest
from tests.bed.kernels import BedError
from tests.bed.qemu import GUEST_DIR, PANIC_LINE, CycleConfig, loader_argv
from tests.conftest import require, require_root

pytestmark = pytest.mark.e2e

APPEND = "console=ttyS0 init 1 irqpoll maxcpus=1 reset_devices panic=1"
PATTERN_MIB = 32
CORRUPTER = GUEST_DIR / "load_corrupted_plan.py"   # flips a kernel byte, then loads
PARALLEL = 2


@dataclass(frozen=True)
class Case:
    name: str
    loader: str          # "pykexec" | "kexec" (Debian's kexec-tools:i386 in the guest)
    fmt: str             # "elf" | "bzimage"
    flavour: str         # "686" | "686-pae"
    memory_mib: int
    crashkernel: str
    extra: tuple = ()
    elfclass: int = 32

    @property
    def snapshot(self) -> bool:
        return self.loader == "kexec"


CASES = (
    # The document's command and crash region (a 686 vmlinux is linked at 16 MiB).
    Case("doc-elf32", "pykexec", "elf", "686", 1024, "crashkernel=64M@16M",
         ("--args-linux", "--elf32-core-headers")),
    # The bzImage, relocated into a crash region the kernel chose; ELF32 by default;
    # purgatory reports on the serial console.
    Case("bzimage", "pykexec", "bzimage", "686", 1024, "crashkernel=64M", ("--console-serial",)),
    # PAE with RAM above 4 GiB: ELF64 core headers by default. Runs under
    # qemu-system-x86_64 (same 32-bit guest): see tests/bed/i386guest.py qemu_for().
    Case("pae-5g-elf64", "pykexec", "bzimage", "686-pae", 5120, "crashkernel=64M", elfclass=64),
    # Debian's kexec-tools:i386, for the oracle check and as a reference cycle.
    Case("kexec-elf", "kexec", "elf", "686", 1024, "crashkernel=64M@16M",
         ("--args-linux", "--elf32-core-headers")),
    # A plan saved with --dry-run, one kernel byte flipped, then loaded: the i386 purgatory
    # must refuse it (QEMU then idles until the timeout: purgatory halts for good).
    Case("corrupted", "corrupt", "bzimage", "686", 1024, "crashkernel=64M"),
)
# Tests that use a case directly instead of through the i386_case parameter.
DIRECT = {"test_debian_i386_kexec_in_the_guest_matches_the_host_oracle": "kexec-elf",
          "test_i386_purgatory_refuses_a_corrupted_kernel": "corrupted"}
PYKEXEC_CASES = [c for c in CASES if c.loader == "pykexec"]


class Pool:
    def __init__(self, tmp_factory):
        self.tmp_factory = tmp_factory
        self.lock = threading.Lock()
        self.pool: Optional[ThreadPoolExecutor] = None
        self.futures: Dict[str, Future] = {}
        self.wanted = []

    def _run(self, case: Case):
        kernel = i386guest.get_kernel(case.flavour)
        root = i386guest.get_root()
        initrd = i386guest.get_initramfs(kernel, root)
        image = kernel.vmlinux if case.fmt == "elf" else kernel.bzimage
        prefix = i386guest.KEXEC_I386 if case.loader == "kexec" else i386guest.pykexec_argv()
        timeout = 300
        if case.loader == "corrupt":
            plan_dir = "/tmp/results/plan"
            plan = shlex.join(loader_argv(
                prefix, i386guest.guest_path(image), i386guest.guest_path(initrd), append=APPEND,
                extra=("-c", "--console-serial", "--dry-run", f"--save-plan={plan_dir}")))
            load = shlex.join([i386guest.GUEST_PYTHON, i386guest.guest_path(CORRUPTER), plan_dir])
            argv = ["/bin/sh", "-c", f"{plan} >/dev/null && {load}"]
            timeout = 120
        else:
            argv = loader_argv(prefix, i386guest.guest_path(image), i386guest.guest_path(initrd),
                               append=APPEND, extra=case.extra, debug=case.loader == "kexec")
        cfg = CycleConfig(loader_argv=argv, memory_mib=case.memory_mib, cpus=2,
                          cmdline_extra=case.crashkernel,
                          pattern_mib=4 if case.loader == "corrupt" else PATTERN_MIB,
                          take_snapshot=case.snapshot, name=f"i386-{case.name}",
                          run_dir=self.tmp_factory.mktemp(case.name), kernel=kernel,
                          timeout=timeout)
        res, low = i386guest.run_i386_cycle(cfg)
        return kernel, res, low

    def get(self, case: Case):
        with self.lock:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="i386-kdump")
                for c in self.wanted or CASES:
                    self.futures[c.name] = self.pool.submit(self._run, c)
            if case.name not in self.futures:
                self.futures[case.name] = self.pool.submit(self._run, case)
        return self.futures[case.name].result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def i386_cycles(tmp_path_factory, request):
    require_root()
    require(shutil.which(i386guest.QEMU_I386) is not None,
            f"{i386guest.QEMU_I386} not installed (apt-get install qemu-system-x86)")
    try:
        i386guest.get_root()
        i386guest.get_kernel("686")
        i386guest.prepare_pykexec()     # the guest has no gcc and sees the checkout read-only
    except BedError as e:
        require(False, f"i386 test bed not available: {e}")
    pool = Pool(tmp_path_factory)
    by_name = {c.name: c for c in CASES}
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        case = spec.params.get("i386_case") if spec is not None else None
        if case is None and getattr(item, "originalname", None) in DIRECT:
            case = by_name[DIRECT[item.originalname]]
        if case in CASES and case not in pool.wanted:
            pool.wanted.append(case)
    # The corrupted-kernel boot idles until its timeout: start it first, beside the others.
    pool.wanted.sort(key=lambda c: c.loader != "corrupt")
    yield pool
    pool.close()


@pytest.fixture(params=PYKEXEC_CASES, ids=lambda c: c.name)
def i386_case(request):
    return request.param


@pytest.fixture
def cycle(i386_case, i386_cycles):
    return i386_cycles.get(i386_case)


def test_loaded_and_captured(cycle, i386_case):
    kernel, res, _ = cycle
    assert res.loader_exit == 0 and res.crash_loaded == 1, res.describe()
    assert res.captured and not res.timed_out, res.describe()
    assert "elfcorehdr=" in res.capture_cmdline and APPEND in res.capture_cmdline
    assert not res.errors, res.describe()
    if "@16M" in i386_case.crashkernel:
        assert any(line.startswith("01000000-") for line in res.crash_region), res.crash_region


def test_vmcore_class_machine_and_notes(cycle, i386_case):
    kernel, res, _ = cycle
    assert res.captured, res.describe()
    assert res.vmcore_class == i386_case.elfclass, res.phdrs
    assert (res.vmcore_type, res.vmcore_machine) == ("ET_CORE", "EM_386")
    assert res.nt_prstatus == res.config.cpus, res.note_counts
    assert res.osrelease == kernel.release


def test_highmem_has_no_virtual_address(cycle, i386_case):
    """RAM above the 0x38000000 direct-map limit: p_vaddr all ones; below: 0xc0000000+pa."""
    _, res, _ = cycle
    ones = (1 << i386_case.elfclass) - 1
    high = [p for p in res.pt_loads if p["paddr"] >= 0x38000000]
    low = [p for p in res.pt_loads if p["paddr"] + p["filesz"] <= 0x38000000]
    assert high and low, res.phdrs
    assert all(p["vaddr"] == ones for p in high), high
    assert all(p["vaddr"] == 0xC0000000 + p["paddr"] for p in low), low
    if i386_case.memory_mib > 4096:
        assert any(p["paddr"] >= 1 << 32 for p in res.pt_loads), res.phdrs


def test_low_640k_is_the_backup_copy(cycle):
    """The vmcore's view of the low RAM equals what it held before the panic."""
    _, res, low = cycle
    assert low.start == 0x1000 and low.size == 0x9EC00, low
    assert low.intact, (low, res.describe())


def test_pattern_intact_and_check_discriminates(cycle):
    _, res, _ = cycle
    p = res.pattern
    assert p.recorded == PATTERN_MIB * 256 and p.intact, (p, res.describe())
    assert p.shifted_mismatched == p.shifted_checked > 0.99 * p.recorded, p


def test_vmcore_dmesg_finds_the_panic(cycle):
    _, res, _ = cycle
    assert res.vmcore_dmesg_exit == 0, res.vmcore_dmesg
    assert res.panic_line_found and PANIC_LINE in res.panic_line(), res.vmcore_dmesg[-2000:]


def test_purgatory_serial_console(cycle, i386_case):
    """--console-serial: purgatory says what it checked and copied, on ttyS0."""
    _, res, _ = cycle
    log = res.serial_log.read_text(errors="replace")
    said = "pykexec purgatory (i386): digest ok, jumping to" in log
    assert said == ("--console-serial" in i386_case.extra), res.serial_tail()
    if said:
        assert "pykexec purgatory (i386): backup 0x9ec00 bytes from 0x1000 to" in log


def test_debian_i386_kexec_in_the_guest_matches_the_host_oracle(i386_cycles):
    """Debian's kexec -d in the guest and the host's i386 oracle on that guest's snapshot
    plan the same segments: the oracle used by the differential tests is faithful."""
    from tests.bed.oracle import parse_kexec_debug
    from tests.bed.oracle_i386 import can_run_i386, run_oracle_i386
    case = next(c for c in CASES if c.loader == "kexec")
    kernel, res, low = i386_cycles.get(case)
    assert res.loader_exit == 0 and res.crash_loaded == 1, res.describe()
    assert res.captured and res.vmcore_class == 32 and res.panic_line_found, res.describe()
    assert low.intact, low
    guest = parse_kexec_debug(res.loader_stderr)
    assert guest is not None, res.loader_stderr[-2000:]
    why = can_run_i386()
    require(why is None, f"host cannot run the i386 oracle: {why}")
    assert res.snapshot is not None, res.describe()
    root = i386guest.get_root()
    initrd = i386guest.get_initramfs(kernel, root)
    argv = ["-d", "-p", str(kernel.vmlinux), *case.extra, f"--initrd={initrd}",
            f"--append={APPEND}"]
    host = run_oracle_i386(str(res.snapshot), argv)
    assert host.exit_code == 0, host.stderr[-2000:]
    assert host.plan is not None
    assert host.plan.flags == guest.flags == 0x1
    assert host.plan.entry == guest.entry
    assert [(s.mem, s.memsz, s.bufsz) for s in host.plan.segments] == guest.segments


def test_i386_purgatory_refuses_a_corrupted_kernel(i386_cycles):
    """A byte flipped after the digest was computed: the i386 purgatory says so on the
    serial console and never jumps to the kernel."""
    case = next(c for c in CASES if c.loader == "corrupt")
    _, res, _ = i386_cycles.get(case)
    assert res.loader_exit == 0 and res.crash_loaded == 1, res.describe()
    log = res.serial_log.read_text(errors="replace")
    at = log.find("sysrq: Trigger a crash")
    at = at if at >= 0 else log.find(PANIC_LINE)
    assert at >= 0, res.serial_tail()
    tail = log[at:]
    assert "pykexec purgatory (i386): sha256 digest mismatch, halting" in tail, res.serial_tail()
    assert "Linux version" not in tail and not res.captured
