"""Real kdump cycles in QEMU: load a capture kernel, panic, check /proc/vmcore.

Parametrized by loader (tests.bed.qemu.LOADERS: Debian's kexec now; pykexec joins with one
line there) x case (kernel format and machine). Each case is one QEMU boot shared by all
the assertions about it; the boots run two at a time in a session-wide pool, started
when the first case is needed. With Debian's kexec the loader runs with -d and the guest
takes a machine snapshot before loading, so the same boot also proves the oracle faithful:
the oracle, run on the host on that snapshot with the same argv, must plan exactly the
segments the guest's kexec printed.
"""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import pytest

from tests.bed.kernels import BedError, Kernel, get_kernel
from tests.bed.initramfs import get_initramfs
from tests.bed.qemu import (DEFAULT_APPEND, LOADERS, PANIC_LINE, CycleConfig, CycleResult,
                            loader_argv, ovmf_path, run_kdump_cycle)
from tests.conftest import require, require_root

pytestmark = pytest.mark.e2e

PATTERN_MIB = 64
PARALLEL = 2


@dataclass(frozen=True)
class Case:
    """A kernel format on a machine."""

    fmt: str             # "bzimage" | "elf"
    memory_mib: int
    cpus: int
    crashkernel: str
    firmware: str = "bios"
    elf32: bool = False          # --elf32-core-headers (x86_64 loaders write ELF64 anyway)
    compress: str = ""           # the kernel file compressed whole: "zstd" | "xz" | "gzip"
    uki: bool = False            # the kernel, initrd and command line as one UKI, no options
    syscall: str = "-c"          # pykexec's syscall option (-s: the kernel places the image)
    series: str = ""             # the kernel series ("": Debian 12's; "backports": 6.12)

    @property
    def name(self) -> str:
        suffix = "" if self.firmware == "bios" else f"-{self.firmware}"
        at = "-at16m" if "@16M" in self.crashkernel else ""
        return f"{self.fmt}-{self.memory_mib // 1024}g-{self.cpus}cpu{at}{suffix}" + \
            ("-elf32" if self.elf32 else "") + (f"-{self.compress}" if self.compress else "") + \
            ("-uki" if self.uki else "") + (f"-{self.series}" if self.series else "") + \
            ("" if self.syscall == "-c" else self.syscall)


CASES = (
    Case("bzimage", 1024, 2, "crashkernel=256M"),
    # kexec-tools loads an ELF vmlinux at its link address (16 MiB): the region must be there.
    Case("elf", 1024, 2, "crashkernel=256M@16M"),
    # 4 GiB: RAM above 4 GiB, so the core header has a PT_LOAD there too.
    Case("bzimage", 4096, 2, "crashkernel=256M"),
    # UEFI (OVMF): EFI runtime map and efi_info instead of acpi_rsdp=, an EFI setup_data.
    Case("bzimage", 1024, 2, "crashkernel=256M", firmware="uefi"),
    # The second kernel series (bookworm-backports, 6.12): the oracle stays faithful there.
    Case("bzimage", 1024, 2, "crashkernel=256M", series="backports"),
)
# pykexec: 1 and 2 CPUs, 1 and 4 GiB, bzImage and ELF, with and without
# --elf32-core-headers; the ELF vmlinux both at its link address and moved into a crash
# region elsewhere (kexec-tools cannot do the latter).
PYKEXEC_CASES = (
    Case("bzimage", 1024, 1, "crashkernel=256M", elf32=True),
    Case("bzimage", 4096, 2, "crashkernel=256M"),
    Case("elf", 1024, 2, "crashkernel=256M"),
    Case("elf", 1024, 1, "crashkernel=256M@16M", elf32=True),
    # UEFI: pykexec passes the EFI runtime map and SETUP_EFI, as kexec-tools does.
    Case("bzimage", 1024, 2, "crashkernel=256M", firmware="uefi"),
    # A whole-file-compressed kernel (compressed by the zstd, xz and gzip tools): decompressed
    # by pykexec for kexec_load (-c), and into a memfd for kexec_file_load (-s, and -a, which
    # tries kexec_file_load first: Debian's kernels have it).
    Case("bzimage", 1024, 1, "crashkernel=256M", compress="zstd"),
    Case("bzimage", 1024, 1, "crashkernel=256M", compress="xz", syscall="-s"),
    Case("bzimage", 1024, 1, "crashkernel=256M", compress="gzip", syscall="-a"),
    # A unified kernel image under OVMF, loaded with no --initrd/--append: the capture kernel
    # must boot with the UKI's .cmdline and .initrd (the bed's initramfs).
    Case("bzimage", 1024, 1, "crashkernel=256M", firmware="uefi", uki=True, syscall="-s"),
    # The same UKI with kexec_load (-c) on a BIOS machine: pykexec takes .linux, .initrd and
    # .cmdline out of it and plans them itself (the EFI stub never runs).
    Case("bzimage", 1024, 2, "crashkernel=256M", uki=True),
    # The second kernel series (6.12): RAM above 4 GiB with a bzImage, and an ELF vmlinux.
    Case("bzimage", 4096, 2, "crashkernel=256M", series="backports"),
    Case("elf", 1024, 1, "crashkernel=256M", series="backports"),
)
UKI_MARK = "pykexec.uki=1"    # only in the UKI's .cmdline
LOADER_CASES = {"kexec": CASES, "pykexec": PYKEXEC_CASES}
# Loaders whose -d output we parse and compare with the oracle.
DEBUG_LOADERS = {"kexec"}
# Loaders that save their plan, so the vmcore can be checked against what was planned.
PLANNING_LOADERS = {"pykexec"}
PLAN_IN_GUEST = "/tmp/results/plan"   # the results share, as the guest's chroot sees it
PARAMS = [(loader, case) for loader in LOADERS for case in LOADER_CASES[loader]]


def param_id(p) -> str:
    loader, case = p
    return f"{loader}-{case.name}"


@dataclass
class Bed:
    kernel: Kernel
    initrd: str
    _series: Dict[str, Tuple[Kernel, str]] = None

    def for_case(self, case: "Case") -> Tuple[Kernel, str]:
        """The kernel and initramfs of the case's series (fetched and cached on first use)."""
        if not case.series:
            return self.kernel, self.initrd
        if self._series is None:
            self._series = {}
        if case.series not in self._series:
            kernel = get_kernel(series=case.series)
            self._series[case.series] = (kernel, str(get_initramfs(kernel)))
        return self._series[case.series]


@pytest.fixture(scope="session")
def bed() -> Bed:
    require_root()
    for tool in ("qemu-system-x86_64", "/usr/sbin/kexec", "/usr/sbin/vmcore-dmesg", "zstd", "xz",
                 "objcopy", UKI_STUB):
        require(shutil.which(tool) is not None or (tool == UKI_STUB and os.path.exists(tool)),
                f"{tool} not installed")
    require(os.path.exists("/bin/busybox"), "busybox-static not installed")
    try:
        kernel = get_kernel()
        initrd = str(get_initramfs(kernel))
    except BedError as e:
        require(False, f"test bed not available: {e}")
    return Bed(kernel=kernel, initrd=initrd)


COMPRESSORS = {"zstd": ["zstd", "-q", "-19", "-c"], "xz": ["xz", "-c", "--check=crc32"],
               "gzip": ["gzip", "-9", "-n", "-c"]}


def compressed_kernel(image: str, kind: str) -> str:
    """`image` compressed whole by the `kind` tool (not pykexec's library), cached beside
    the bed's other files."""
    import subprocess
    from tests.bed.kernels import cache_lock, cache_root
    out = cache_root() / "compressed" / f"{os.path.basename(os.path.dirname(os.path.dirname(image)))}-" \
        f"{os.path.basename(image)}.{kind}"
    with cache_lock("compressed-kernels"):
        if not out.exists():
            out.parent.mkdir(exist_ok=True)
            tmp = out.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                subprocess.run(COMPRESSORS[kind] + [image], stdout=f, check=True)
            os.replace(tmp, out)
    return str(out)


UKI_STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"


def uki_of(image: str, initrd: str, cmdline: str) -> str:
    """A UKI (objcopy onto systemd-boot's stub, as systemd documents) of the bed's kernel and
    initramfs, cached by their names and the command line."""
    import hashlib
    import subprocess
    import tempfile
    from tests.bed.kernels import cache_lock, cache_root
    key = hashlib.sha256(f"{image}\0{initrd}\0{cmdline}".encode()).hexdigest()[:16]
    out = cache_root() / "uki" / f"{key}.efi"
    with cache_lock("uki"):
        if not out.exists():
            out.parent.mkdir(exist_ok=True)
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                cmd = os.path.join(tmp, "cmdline")
                with open(cmd, "w") as f:
                    f.write(cmdline)
                built = os.path.join(tmp, "uki.efi")
                subprocess.run(["objcopy", "--add-section", f".cmdline={cmd}",
                                "--change-section-vma", ".cmdline=0x30000",
                                "--add-section", f".linux={image}",
                                "--change-section-vma", ".linux=0x2000000",
                                "--add-section", f".initrd={initrd}",
                                "--change-section-vma", ".initrd=0x3000000",
                                UKI_STUB, built], check=True)
                os.replace(built, out)
    return str(out)


def config_for(bed: Bed, loader: str, case: Case, run_dir) -> CycleConfig:
    kernel, initrd = bed.for_case(case)
    image = kernel.bzimage if case.fmt == "bzimage" else kernel.vmlinux
    if case.compress:
        image = compressed_kernel(str(image), case.compress)
    extra = ("--args-linux",) if case.fmt == "elf" else ()
    if case.elf32:
        extra += ("--elf32-core-headers",)
    if loader in PLANNING_LOADERS:
        # -c: this matrix is about kexec_load with pykexec's own purgatory and headers.
        extra += (case.syscall, f"--save-plan={PLAN_IN_GUEST}")
    debug = loader in DEBUG_LOADERS
    if case.uki:
        argv = [*LOADERS[loader], "-p", uki_of(str(image), initrd,
                                               f"{DEFAULT_APPEND} {UKI_MARK}"), *extra]
    else:
        argv = loader_argv(LOADERS[loader], str(image), initrd, append=DEFAULT_APPEND,
                           extra=extra, debug=debug)
    return CycleConfig(loader_argv=argv, memory_mib=case.memory_mib, cpus=case.cpus,
                       cmdline_extra=case.crashkernel, firmware=case.firmware,
                       pattern_mib=PATTERN_MIB,
                       take_snapshot=debug, name=f"{loader}-{case.name}", run_dir=run_dir,
                       kernel=kernel, timeout=300)


class CyclePool:
    """Runs every (loader, case) boot, PARALLEL at a time, starting all at first use."""

    def __init__(self, bed: Bed, tmp_factory, wanted):
        self.bed, self.tmp_factory = bed, tmp_factory
        self.wanted = [key for key in PARAMS if key in wanted]
        self.lock = threading.Lock()
        self.pool: Optional[ThreadPoolExecutor] = None
        self.futures: Dict[Tuple[str, Case], Future] = {}

    def _submit(self, key):
        if key[1].firmware == "uefi" and ovmf_path() is None:
            return                            # the test fails (CI) or skips via require()
        cfg = config_for(self.bed, *key, self.tmp_factory.mktemp(param_id(key)))
        self.futures[key] = self.pool.submit(run_kdump_cycle, cfg)

    def get(self, loader: str, case: Case) -> CycleResult:
        key = (loader, case)
        if case.firmware == "uefi":
            require(ovmf_path() is not None, "UEFI case needs OVMF (apt-get install ovmf)")
        with self.lock:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="kdump")
                for k in self.wanted:
                    self._submit(k)
            if key not in self.futures:
                self._submit(key)
        return self.futures[key].result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def cycles(bed, tmp_path_factory, request):
    # Boot only what the selected tests need (e.g. with -k), all of it from the start.
    wanted = set()
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        for name in ("cycle", "param"):
            if spec is not None and name in spec.params and spec.params[name] in PARAMS:
                wanted.add(spec.params[name])
    pool = CyclePool(bed, tmp_path_factory, wanted)
    yield pool
    pool.close()


@pytest.fixture(params=PARAMS, ids=param_id)
def cycle(request, cycles) -> CycleResult:
    loader, case = request.param
    return cycles.get(loader, case)


# ---------------------------------------------------------------------------------------------


def test_crash_kernel_loaded(cycle):
    assert cycle.loader_exit == 0, cycle.describe()
    assert cycle.crash_loaded == 1, cycle.describe()
    assert cycle.crash_region, cycle.describe()


def test_capture_kernel_boots_with_elfcorehdr(cycle):
    assert cycle.captured, cycle.describe()
    assert "elfcorehdr=" in cycle.capture_cmdline, cycle.capture_cmdline
    assert DEFAULT_APPEND in cycle.capture_cmdline
    assert "Linux version" in cycle.capture_dmesg and "nr_cpus=1" in cycle.capture_dmesg
    assert not cycle.timed_out and not cycle.errors, cycle.describe()


def test_a_uki_boots_with_its_own_command_line(cycle):
    """The UKI case had no --append: the capture kernel's line is the .cmdline's; and it got
    to stage 2, which only the .initrd (the bed's initramfs) runs."""
    uki = "-uki" in cycle.config.name
    assert (UKI_MARK in cycle.capture_cmdline) == uki, cycle.capture_cmdline
    if uki:
        assert cycle.captured and cycle.pattern.checked > 0, cycle.describe()


def test_vmcore_is_elf64_with_a_prstatus_per_cpu(cycle, bed):
    assert cycle.captured, cycle.describe()
    assert cycle.vmcore_class == 64
    assert cycle.vmcore_type == "ET_CORE" and cycle.vmcore_machine == "EM_X86_64"
    assert cycle.nt_prstatus == cycle.config.cpus, cycle.note_counts
    assert cycle.osrelease == cycle.config.kernel.release
    assert cycle.pt_loads, cycle.phdrs
    if cycle.config.memory_mib > 4096 - 1024:
        assert any(p["paddr"] + p["filesz"] > 1 << 32 for p in cycle.pt_loads), cycle.phdrs


def test_pattern_survives_the_crash(cycle):
    p = cycle.pattern
    pages = PATTERN_MIB * 256
    assert p.recorded == pages, cycle.describe()
    assert (p.checked, p.mismatched, p.missing) == (pages, 0, 0), (p, cycle.describe())


def test_pattern_check_discriminates_in_the_guest(cycle):
    """Negative control on the real vmcore: every PFN shifted by one must mismatch."""
    p = cycle.pattern
    assert p.shifted_checked > 0.99 * p.recorded, p
    assert p.shifted_mismatched == p.shifted_checked, p


def test_acpi_rsdp_only_without_efi(cycle):
    """Both loaders pass acpi_rsdp= on BIOS machines, and EFI data (not acpi_rsdp=) on UEFI,
    where the capture kernel then has EFI runtime services; with -s the running kernel
    writes the boot parameters itself."""
    assert cycle.captured, cycle.describe()
    argv = cycle.config.loader_argv
    if "-a" in argv:
        # -a tries kexec_file_load first and Debian's kernels have it: the running kernel
        # wrote the command line, its own "elfcorehdr=0x..." first
        assert cycle.capture_cmdline.startswith("elfcorehdr=0x"), cycle.capture_cmdline
    if "-s" in argv or "-a" in argv:
        # kexec_file_load: the running kernel wrote the boot parameters, RSDP included
        assert "acpi_rsdp=" not in cycle.capture_cmdline
    elif cycle.config.firmware == "uefi":
        assert "acpi_rsdp=" not in cycle.capture_cmdline
        assert cycle.capture_efi_runtime is True, cycle.describe()
        assert cycle.snapshot is None or (cycle.snapshot / "sys/firmware/efi/runtime-map").is_dir()
    else:
        assert "acpi_rsdp=0x" in cycle.capture_cmdline
        assert cycle.capture_efi_runtime is False


def test_vmcore_dmesg_shows_the_panic(cycle):
    assert cycle.vmcore_dmesg_exit == 0, cycle.describe()
    assert cycle.panic_line_found, cycle.vmcore_dmesg[-3000:]
    assert PANIC_LINE in cycle.panic_line()


def test_timings_recorded(cycle):
    t = cycle.timings
    assert t.boot and t.load is not None and t.panic_to_capture_init and t.total, t
    assert t.total < cycle.config.timeout


# (a -s load's saved plan is the kexec_file_load call: the kernel made the core header)
PLAN_PARAMS = [p for p in PARAMS if p[0] in PLANNING_LOADERS and p[1].syscall == "-c"]


@pytest.mark.parametrize("param", PLAN_PARAMS, ids=param_id)
def test_vmcore_headers_are_the_planned_ones(param, cycles):
    """/proc/vmcore's PT_LOADs are the planned core header's (the kernel only re-offsets them),
    and the capture kernel ran with the planned command line."""
    from pykexec.core.plan import load_plan
    from pykexec.views.planfacts import decode_plan
    cycle = cycles.get(*param)
    assert cycle.captured, cycle.describe()
    plan = load_plan(str(cycle.run_dir / "results" / "plan"))
    facts = decode_plan(plan)
    planned = [(p.paddr, p.vaddr, p.memsz) for p in facts.program_headers if p.type == "LOAD"]
    seen = [(p["paddr"], p["vaddr"], p["memsz"]) for p in cycle.pt_loads]
    assert seen == planned
    assert facts.core_class == 2  # ELF64 even when --elf32-core-headers was asked for
    assert cycle.capture_cmdline.split() == plan.cmdline.split()
    if param[1].elf32:
        assert "ELF64" in cycle.loader_stderr  # the one warning line
    if param[1].fmt == "elf" and "@16M" not in param[1].crashkernel:
        assert plan.notes["kernel_relocated_by"] != 0


ORACLE_PARAMS = [p for p in PARAMS if p[0] in DEBUG_LOADERS]


@pytest.mark.parametrize("param", ORACLE_PARAMS, ids=param_id)
def test_oracle_is_faithful_to_the_guest(param, cycles):
    """The oracle on the guest's snapshot plans exactly what kexec -d printed in the guest."""
    from tests.bed.oracle import parse_kexec_debug, run_oracle
    cycle = cycles.get(*param)
    assert cycle.snapshot is not None, cycle.describe()
    guest = parse_kexec_debug(cycle.loader_stderr)
    assert guest is not None, cycle.loader_stderr[-3000:]
    argv = list(cycle.config.loader_argv)
    assert argv[:len(LOADERS["kexec"])] == LOADERS["kexec"]
    result = run_oracle(str(cycle.snapshot), argv[len(LOADERS["kexec"]):],
                        out_dir=str(cycle.run_dir / "oracle-plan"))
    assert result.exit_code == 0, result.stderr[-3000:]
    plan = result.plan
    assert plan is not None and plan.syscall == "kexec_load"
    host = parse_kexec_debug(result.stderr)
    assert (plan.entry, plan.flags) == (guest.entry, guest.flags)
    assert [(s.mem, s.memsz, s.bufsz) for s in plan.segments] == sorted(guest.segments)
    # The oracle's own -d output agrees too (same parser, same numbers).
    assert host is not None and host.segments == guest.segments


UEFI_ORACLE = [p for p in ORACLE_PARAMS if p[1].firmware == "uefi"]


@pytest.mark.parametrize("param", UEFI_ORACLE, ids=param_id)
def test_pykexec_passes_the_efi_data_kexec_passes(param, cycles):
    """Differential on the UEFI guest's snapshot: Debian's kexec (under the recording shim)
    and pykexec, same argv, pass the same SETUP_EFI payload, the same runtime map and the
    same efi_info (the map's address included); neither adds acpi_rsdp=."""
    import struct
    from pykexec.arch import parse_args, plan_load
    from pykexec.arch.x86 import bootparams as bp
    from pykexec.machine import Machine
    from tests.bed.oracle import run_oracle
    cycle = cycles.get(*param)
    assert cycle.snapshot is not None, cycle.describe()
    args = [a for a in cycle.config.loader_argv[len(LOADERS["kexec"]):] if a != "-d"]
    theirs = run_oracle(str(cycle.snapshot), args).plan
    ours = plan_load(parse_args(["-c", *args, "--sysroot", str(cycle.snapshot)]),
                     Machine.read(str(cycle.snapshot)))

    def efi_parts(plan):
        setup = [s.data for s in plan.segments
                 if len(s.data) >= 16 and struct.unpack_from("<QII", s.data)[1:] == (bp.SETUP_EFI, 96)]
        pages = [s.data for s in plan.segments if s.data[0x202:0x206] == b"HdrS"
                 and s.data[0x1C0:0x1C4] == b"EL64"]
        assert len(setup) == 1 and len(pages) == 1, [(s.mem, s.memsz) for s in plan.segments]
        info = bp.EfiInfo.parse(pages[0][0x1C0:0x1E0])
        memmap = info.efi_memmap | info.efi_memmap_hi << 32
        [map_seg] = [s for s in plan.segments if s.mem <= memmap < s.mem + s.memsz]
        data, size = map_seg.read(memmap, info.efi_memmap_size), info.efi_memdesc_size
        # as a set: kexec-tools lists runtime-map/ in readdir order (here the snapshot
        # folder's, on a live machine sysfs' name-hash order), pykexec by entry number
        descriptors = sorted(data[i:i + size] for i in range(0, len(data), size))
        return setup[0][16:], descriptors, bp.EfiInfo.build(info)

    assert efi_parts(ours) == efi_parts(theirs)
    assert "acpi_rsdp=" not in ours.cmdline


def test_failed_load_is_reported_and_powers_off(bed, tmp_path):
    """A loader that fails: no panic into nothing, QEMU exits on its own, the result says why."""
    argv = loader_argv(LOADERS["kexec"], "/nonexistent/vmlinuz", bed.initrd)
    res = run_kdump_cycle(CycleConfig(loader_argv=argv, pattern_mib=4, run_dir=tmp_path,
                                      kernel=bed.kernel, timeout=120, name="failed-load"))
    assert not res.timed_out, res.describe()
    assert res.stage1_result == "load-failed", res.describe()
    assert res.loader_exit not in (0, None) and "nonexistent" in res.loader_stderr
    assert res.crash_loaded == 0
    assert not res.captured and not res.ok
    assert res.qemu_exit == (3 << 1) | 1      # stage 1's status through isa-debug-exit
    assert res.serial_log.is_file() and "BED: load failed" in res.serial_log.read_text()
