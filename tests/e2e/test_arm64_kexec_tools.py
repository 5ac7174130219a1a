"""Debian's kexec-tools 2.0.25 on Debian 12's arm64 kernel: the crash dump it makes is unreadable.

One kdump cycle under qemu-system-aarch64 -M virt (TCG, device tree, 1 CPU, 2 GiB,
crashkernel=256M; tests/bed/arm64guest.py) with Debian's kexec-tools:arm64 `kexec -p` of
Debian's own arm64 Image and the bed's initramfs. The kernel has no KALLSYMS_ALL, so
/proc/kallsyms has no `_text`: kexec-tools says it cannot compute page_offset and writes a
kernel-text PT_LOAD with a wrong virtual address. What this test measures, as observed:

- the load succeeds (stderr: "Can't get the symbol of _text to calculate page_offset.")
  and the capture kernel boots; /proc/vmcore has an ELF64 AArch64 header, one NT_PRSTATUS
  and VMCOREINFO (VA_BITS, kimage_voffset, PHYS_OFFSET, KERNELOFFSET, _stext: all a
  loader needs);
- the first PT_LOAD, kexec-tools' kernel text, is garbage: vaddr 0xffffffffffffffff, a
  paddr outside RAM, a size beyond 2**63; the RAM PT_LOADs map paddr at vaddr
  paddr - PHYS_OFFSET (page_offset 0);
- so /proc/vmcore places every RAM PT_LOAD past 2**63 (its size overflows: stat gives a
  negative number) and no page of memory can be read: the 64 MiB pattern is recorded
  inside the header's RAM ranges, yet all 16384 pages are unreadable;
- Debian's vmcore-dmesg exits 30 with "No program header covering vaddr";
- Debian's makedumpfile -d 31 exits 1: "Can't seek the dump memory(/proc/vmcore)",
  "vaddr_to_paddr_arm64: Can't read pgd", "Can't get the address of system_utsname";
  so no dump, and no --dump-dmesg either.

pykexec's arm64 loader (issue 11) must pass all of these checks on the same guest (the
pattern intact page by page, vmcore-dmesg and makedumpfile finding the panic).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.bed import arm64guest

pytestmark = pytest.mark.e2e


# One guest of the arm64 pool (tests/e2e/conftest.py arm64_cycles), beside pykexec's.
KEXEC_CASE = arm64guest.Arm64Case("kexec-tools-dt-2g-1cpu", loader="kexec")
ARM64_CASES = (KEXEC_CASE,)


@pytest.fixture(scope="module")
def cycle(arm64_cycles):
    out = arm64_cycles.get(KEXEC_CASE)
    res = out.cycle
    stage2 = {}
    path = res.run_dir / "results" / "stage2.json"
    if path.exists():
        stage2 = json.loads(path.read_text())
    return res, out.dump, stage2


def test_load_succeeds_but_warns_about_text(cycle):
    res, _, _ = cycle
    assert res.loader_exit == 0 and res.crash_loaded == 1, res.describe()
    assert "Can't get the symbol of _text to calculate page_offset." in res.loader_stderr


def test_core_header_is_read(cycle):
    res, _, _ = cycle
    assert res.captured, res.describe()
    assert (res.vmcore_class, res.vmcore_type, res.vmcore_machine) == (64, "ET_CORE", "EM_AARCH64")
    assert res.nt_prstatus == 1
    # arm64 passes the core header's address in the DTB (/chosen linux,elfcorehdr)
    assert res.capture_cmdline == arm64guest.CAPTURE_APPEND
    for key in ("NUMBER(VA_BITS)", "NUMBER(kimage_voffset)", "NUMBER(PHYS_OFFSET)",
                "KERNELOFFSET", "SYMBOL(_stext)"):
        assert key in res.vmcoreinfo, key


def test_kernel_text_header_is_garbage(cycle):
    res, _, stage2 = cycle
    info = res.vmcoreinfo
    stext = int(info["SYMBOL(_stext)"], 16)
    phys_offset = int(info["NUMBER(PHYS_OFFSET)"], 16)
    text, *ram = res.pt_loads
    # kexec-tools puts its kernel-text PT_LOAD first; with page_offset 0 it has a vaddr
    # of all ones, a paddr outside RAM and a size beyond 2**63.
    assert text["vaddr"] == (1 << 64) - 1 and text["memsz"] >= 1 << 63
    assert not any(r["paddr"] <= text["paddr"] < r["paddr"] + r["filesz"] for r in ram)
    # No PT_LOAD maps the kernel image's own virtual addresses...
    assert not any(p["vaddr"] <= stext < p["vaddr"] + p["memsz"] for p in res.pt_loads)
    # ...and the RAM ones map paddr at page_offset 0, not at the linear map.
    assert ram and all(r["vaddr"] == r["paddr"] - phys_offset for r in ram)
    assert stage2["vmcore_size"] < 0        # /proc/vmcore's size overflowed


def test_memory_is_unreachable(cycle):
    """Every RAM PT_LOAD comes after the text one, so /proc/vmcore places it past 2**63:
    the pattern pages are in the header's ranges but not one can be read."""
    res, _, stage2 = cycle
    text, *ram = res.pt_loads
    assert all(r["offset"] >= 1 << 63 for r in ram)
    pattern = stage2["pattern"]
    assert pattern["recorded"] == 16384 and pattern["missing"] == 0
    assert (pattern["checked"], pattern["unreadable"]) == (0, 16384), pattern
    assert not res.pattern.intact


def test_vmcore_dmesg_fails(cycle):
    res, _, stage2 = cycle
    assert res.vmcore_dmesg_exit == 30
    assert re.fullmatch(r"No program header covering vaddr 0x[0-9a-f]+found kexec bug\?\n",
                        stage2["vmcore_dmesg"]["stderr"]), stage2["vmcore_dmesg"]
    assert not res.panic_line_found


def test_makedumpfile_fails(cycle):
    _, dump, _ = cycle
    assert dump.error is None
    assert dump.dump_exit == 1
    # it cannot read the page tables (their RAM lies past 2**63 in /proc/vmcore), so it
    # cannot translate the kernel's addresses
    for line in ("read_from_vmcore: Can't seek the dump memory(/proc/vmcore).",
                 "vaddr_to_paddr_arm64: Can't read pgd",
                 "check_release: Can't get the address of system_utsname."):
        assert line in dump.dump_stderr, dump.dump_stderr
    assert dump.dump_size is None and dump.dmesg_exit is None and not dump.panic_line_found
