"""Debian's kexec-tools 2.0.25 on Debian 12's arm64 kernel: the crash dump it makes is unreadable.

One kdump cycle under qemu-system-aarch64 -M virt (TCG, device tree, 1 CPU, 2 GiB,
crashkernel=256M; tests/bed/arm64guest.py) with Debian's kexec-tools:arm64 `kexec -p` of
Debian's own arm64 Image and the bed's initramfs. The kernel has no KALLSYMS_ALL, so
/proc/kallsyms has no `_text`: kexec-tools says it cannot compute page_offset and writes a
kernel-text PT_LOAD with a wrong virtual address. What this test measures, as observed:

- the load succeeds and the capture kernel boots; the memory itself is dumped right (the
  64 MiB pattern is intact page by page, the PFN+1 control fails every page, one
  NT_PRSTATUS, VMCOREINFO present);
- no PT_LOAD maps the kernel image at its real virtual address (vaddr = paddr +
  kimage_voffset, from VMCOREINFO), and the header's bogus kernel-text PT_LOAD makes
  /proc/vmcore's size overflow (stat gives a negative size);
- Debian's vmcore-dmesg exits 30 with "No program header covering vaddr";
- Debian's makedumpfile -d 31 fails: it cannot translate the kernel's addresses and
  "Can't get the address of system_utsname"; so no dump, and no --dump-dmesg either.

pykexec's arm64 loader (issue 11) must pass all of these checks on the same guest.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.bed import arm64guest
from tests.bed.kernels import BedError
from tests.conftest import require, require_root

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cycle():
    require_root()
    import shutil
    require(shutil.which(arm64guest.QEMU_ARM64), "qemu-system-aarch64 is missing "
            "(apt-get install qemu-system-arm)")
    try:
        kernel = arm64guest.get_kernel()
        initrd = arm64guest.get_initramfs(kernel, arm64guest.get_root())
    except BedError as e:
        require(False, f"arm64 bed: {e}")
    cfg = arm64guest.cycle_config(loader_argv=arm64guest.kexec_argv(kernel, initrd),
                                  name="arm64-kexec-tools", kernel=kernel)
    res, dump = arm64guest.run_arm64_cycle(cfg)
    stage2 = {}
    path = res.run_dir / "results" / "stage2.json"
    if path.exists():
        stage2 = json.loads(path.read_text())
    return res, dump, stage2


def test_load_succeeds_but_warns_about_text(cycle):
    res, _, _ = cycle
    assert res.loader_exit == 0 and res.crash_loaded == 1, res.describe()
    assert "Can't get the symbol of _text to calculate page_offset." in res.loader_stderr


def test_memory_is_dumped_right(cycle):
    res, _, _ = cycle
    assert res.captured, res.describe()
    assert (res.vmcore_class, res.vmcore_type, res.vmcore_machine) == (64, "ET_CORE", "EM_AARCH64")
    assert res.nt_prstatus == 1
    assert res.pattern.recorded == 16384 and res.pattern.intact, res.pattern
    assert res.pattern.shifted_mismatched == res.pattern.shifted_checked == 16384
    assert "elfcorehdr=" in res.capture_cmdline
    for key in ("NUMBER(VA_BITS)", "NUMBER(kimage_voffset)", "NUMBER(PHYS_OFFSET)",
                "KERNELOFFSET", "SYMBOL(_stext)"):
        assert key in res.vmcoreinfo, key


def test_kernel_text_header_is_wrong(cycle):
    res, _, stage2 = cycle
    info = res.vmcoreinfo
    voffset = int(info["NUMBER(kimage_voffset)"], 16)
    stext = int(info["SYMBOL(_stext)"], 16)
    stext_pa = stext - voffset
    # RAM holding the kernel image is dumped (a linear-map PT_LOAD covers _stext's page)...
    assert any(p["paddr"] <= stext_pa < p["paddr"] + p["filesz"] for p in res.pt_loads)
    # ...but no PT_LOAD maps the kernel image's own virtual addresses.
    assert not any(p["vaddr"] <= stext < p["vaddr"] + p["memsz"] for p in res.pt_loads), \
        [hex(p["vaddr"]) for p in res.pt_loads]
    assert stage2["vmcore_size"] < 0        # /proc/vmcore's size overflowed


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
    assert "Can't get the address of system_utsname." in dump.dump_stderr, dump.dump_stderr
    assert dump.dump_size is None and dump.dmesg_exit is None and not dump.panic_line_found
