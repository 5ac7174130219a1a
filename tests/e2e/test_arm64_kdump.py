"""pykexec on arm64, end to end: Debian 12's arm64 kernel under qemu-system-aarch64 -M virt
-cpu max (TCG), pykexec running in the guest under Debian's python3.11:arm64 (this checkout
over 9p, the arm64 purgatory cross-built on the host; tests/bed/arm64guest.py).

Crash cases: `pykexec -p IMAGE --initrd --append` in the first kernel, 64 MiB of memory
filled with a pattern, sysrq panic; in the capture kernel /proc/vmcore must be an ELF64
AArch64 core with one NT_PRSTATUS per CPU, every pattern page intact (and the same check
with every PFN + 1 failing, so the check can fail), Debian's vmcore-dmesg:arm64 must find
the panic, and Debian's makedumpfile:arm64 must write a `-d 31` dump whose --dump-dmesg
shows it too: the checks kexec-tools 2.0.25 fails on the same guest
(tests/e2e/test_arm64_kexec_tools.py, in the same pool of guests). The kernel-text and
linear-map program headers are checked against VMCOREINFO by the kernel's own
definitions (Documentation/arm64/memory.rst: PAGE_OFFSET = -(1 << VA_BITS); a kernel
image address minus kimage_voffset is its physical address).

The matrix covers each axis once at least: device tree and UEFI/ACPI boot, 1 and 2 CPUs,
2 GiB and 5 GiB (RAM above 4 GiB), Debian's PE-signed Image and an Image.gz, and a
normal load (-l) booted with -e. Each case is one guest boot; two run at a time.
"""

from __future__ import annotations

import re

import pytest

from tests.bed import arm64guest
from tests.bed.arm64guest import Arm64Case
from tests.bed.qemu import PANIC_LINE
from tests.conftest import require

pytestmark = pytest.mark.e2e

PATTERN_PAGES = 64 * 256
CRASH_CASES = (
    # Started in this order, two at a time: the slowest first.
    Arm64Case("uefi-2g-1cpu-gz", firmware="uefi", fmt="gz"),
    Arm64Case("dt-5g-2cpu-image", memory_mib=5120, cpus=2),
    # -d: the plan on stderr; --serial: purgatory reports on the PL011 (ttyAMA0)
    Arm64Case("dt-2g-2cpu-gz", cpus=2, fmt="gz", extra=("-d", "--serial=ttyAMA0")),
    Arm64Case("dt-2g-1cpu-image"),
)
REBOOT_CASES = (
    Arm64Case("dt-2g-1cpu-reboot", reboot=True),
)
U64 = 1 << 64


def _outcome(arm64_cycles, case):
    if case.loader == "pykexec":
        require(arm64_cycles.purgatory_error is None, str(arm64_cycles.purgatory_error))
    return arm64_cycles.get(case)


@pytest.fixture(params=CRASH_CASES, ids=lambda c: c.name)
def arm64_case(request):
    return request.param


@pytest.fixture
def crash(arm64_case, arm64_cycles):
    return _outcome(arm64_cycles, arm64_case)


def test_loaded_and_captured(crash):
    res = crash.cycle
    assert res.loader_exit == 0 and res.crash_loaded == 1, res.describe()
    assert res.captured and not res.timed_out and not res.errors, res.describe()
    # arm64 passes the core header and the usable memory in the DTB, not the command line
    assert res.capture_cmdline == arm64guest.CAPTURE_APPEND, res.capture_cmdline


def test_vmcore_is_an_aarch64_core_with_a_note_per_cpu(crash):
    res = crash.cycle
    assert res.captured, res.describe()
    assert (res.vmcore_class, res.vmcore_type, res.vmcore_machine) == (64, "ET_CORE", "EM_AARCH64")
    assert res.nt_prstatus == crash.case.cpus, res.note_counts
    assert res.osrelease == crash.kernel.release
    assert 0 < res.vmcore_size < U64 >> 1


def test_program_headers_follow_vmcoreinfo(crash):
    """One PT_LOAD maps the kernel image (its _stext), every other the linear map:
    vaddr = paddr - PHYS_OFFSET + PAGE_OFFSET; together they cover the guest's RAM
    (from 0x40000000 on QEMU virt) except the crash region."""
    res = crash.cycle
    assert res.captured, res.describe()
    info = res.vmcoreinfo
    va_bits = int(info["NUMBER(VA_BITS)"])
    page_offset = (-(1 << va_bits)) % U64
    phys_offset = int(info["NUMBER(PHYS_OFFSET)"], 16) % U64
    voffset = int(info["NUMBER(kimage_voffset)"], 16) % U64
    stext = int(info["SYMBOL(_stext)"], 16)
    text = [p for p in res.pt_loads if p["vaddr"] <= stext < p["vaddr"] + p["memsz"]]
    assert len(text) == 1, res.phdrs
    assert text[0]["paddr"] == (text[0]["vaddr"] - voffset) % U64, text
    ram = [p for p in res.pt_loads if p is not text[0]]
    assert ram and all(p["vaddr"] == (p["paddr"] - phys_offset + page_offset) % U64
                       for p in ram), ram
    crash_start, crash_end = _crash_region(res)
    assert not any(p["paddr"] < crash_end and crash_start < p["paddr"] + p["memsz"]
                   for p in ram), (res.crash_region, ram)
    outside = (crash.case.memory_mib << 20) - (crash_end - crash_start)
    covered = sum(p["memsz"] for p in ram)
    if crash.case.firmware == "dt":
        assert covered == outside, ram
    else:       # UEFI keeps its runtime and reserved ranges out of System RAM
        assert outside - (64 << 20) <= covered < outside, ram
    if crash.case.memory_mib > 3072:
        assert any(p["paddr"] + p["memsz"] > 1 << 32 for p in ram), ram


def _crash_region(res):
    start, end = (int(x, 16) for x in res.crash_region[0].split(" : ")[0].split("-"))
    return start, end + 1


def _cells(hexdata):
    """A property of 64-bit (address, size) pairs: QEMU virt's root has #address-cells
    and #size-cells 2."""
    data = bytes.fromhex(hexdata)
    assert len(data) % 16 == 0, hexdata
    return [(int.from_bytes(data[i:i + 8], "big"), int.from_bytes(data[i + 8:i + 16], "big"))
            for i in range(0, len(data), 16)]


def test_capture_kernel_got_the_crash_region_and_the_core_header(crash):
    """The capture kernel's System RAM is the crash region, all of it and nothing else. Its
    /chosen (DT boot: an ACPI boot does not unflatten the device tree) names that region
    as linux,usable-memory-range and a core header inside it as linux,elfcorehdr."""
    res, chosen = crash.cycle, crash.chosen
    assert res.captured and "error" not in chosen, (chosen, res.describe())
    start, end = _crash_region(res)
    ram = [tuple(int(x, 16) for x in r.split("-")) for r in chosen["system_ram"]]
    assert ram == [(start, end - 1)], (chosen["system_ram"], res.crash_region)
    if crash.case.firmware == "uefi":
        assert chosen["linux,usable-memory-range"] is None, chosen
        return
    assert _cells(chosen["linux,usable-memory-range"]) == [(start, end - start)], chosen
    [(hdr, hdr_size)] = _cells(chosen["linux,elfcorehdr"])
    assert start <= hdr and hdr + hdr_size <= end and 0 < hdr_size <= 1 << 16, chosen


def test_purgatory_console(crash):
    """--serial ttyAMA0: after the panic purgatory says the digest matched and enters the
    kernel segment with x0 = the DTB segment (from the plan -d printed); silent otherwise."""
    res = crash.cycle
    log = res.serial_log.read_text(errors="replace")
    at = log.find("sysrq: Trigger a crash")
    assert at >= 0, res.serial_tail()
    tail = log[at:]
    said = "pykexec purgatory: sha256 ok" in tail
    assert said == ("--serial=ttyAMA0" in crash.case.extra), res.serial_tail()
    if said:
        segments = dict(re.findall(r"^\s*\d+\s+(kernel|dtb)\s+0x([0-9a-f]+)-", res.loader_stderr,
                                   re.M))
        assert set(segments) == {"kernel", "dtb"}, res.loader_stderr[-3000:]
        entered = re.search(r"pykexec purgatory: entering 0x([0-9a-f]+) with x0 = 0x([0-9a-f]+)",
                            tail)
        assert entered, res.serial_tail()
        assert (int(entered[1], 16), int(entered[2], 16)) == \
            (int(segments["kernel"], 16), int(segments["dtb"], 16))
        start, end = _crash_region(res)
        assert start <= int(entered[1], 16) < int(entered[2], 16) < end
        assert tail.index("sha256 ok") < tail.index("Booting Linux"), res.serial_tail()


def test_pattern_intact_page_by_page(crash):
    p = crash.cycle.pattern
    assert p.recorded == PATTERN_PAGES and p.intact, (p, crash.cycle.describe())
    # the control: the same pages read one PFN further on must all differ
    assert p.shifted_mismatched == p.shifted_checked > 0.99 * p.recorded, p


def test_vmcore_dmesg_finds_the_panic(crash):
    res = crash.cycle
    assert res.vmcore_dmesg_exit == 0, res.vmcore_dmesg[-2000:]
    assert res.panic_line_found and PANIC_LINE in res.panic_line(), res.vmcore_dmesg[-2000:]


def test_makedumpfile_d31_dump_shows_the_panic(crash):
    dump = crash.dump
    assert dump.error is None and dump.dump_exit == 0, dump
    assert dump.dump_size and dump.dump_size < crash.case.memory_mib << 20, dump
    assert dump.dmesg_exit == 0 and dump.panic_line_found, dump.dmesg_stderr


@pytest.mark.parametrize("case", REBOOT_CASES, ids=lambda c: c.name)
def test_load_and_exec_boot_the_new_kernel(case, arm64_cycles):
    """pykexec -l Image --initrd --append (with a fresh marker), then pykexec -e: the
    kernel that comes up has the marker in /proc/cmdline and in its DTB's /chosen."""
    out = _outcome(arm64_cycles, case)
    rb = out.reboot
    assert rb.before.get("load_exit") == 0 and rb.before.get("kexec_loaded") == "1", rb.describe()
    assert rb.rebooted, rb.describe()
    assert rb.after["release"] == out.kernel.release
    assert rb.after["cmdline"] == arm64guest.reboot_append(rb.marker)
    assert rb.after["fdt_bootargs"] == rb.after["cmdline"]
    assert "exec_exit" not in rb.before, rb.describe()      # -e never returned
