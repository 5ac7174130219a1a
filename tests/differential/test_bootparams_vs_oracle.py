"""boot_params fields kexec-tools fills from the machine, byte for byte against Debian's kexec.

compare_plans (test_pykexec_vs_oracle.py) checks what every crash plan must agree on; this
file checks the zero-page fields that only some machines exercise: the legacy memory sizes
(ext_mem_k at 0x02, alt_mem_k at 0x1e0) when the capture kernel's RAM holds 1 MiB, and the
BIOS disk data (EDD: counts at 0x1e9/0x1ea, edd_mbr_sig_buffer at 0x290, eddbuf at 0xd00).
"""

from __future__ import annotations

import pytest

from pykexec.arch import plan_load
from pykexec.machine import Machine
from pykexec.views.planfacts import boot_params_segment
from pykexec.request import parse_args
from pykexec.arch.x86 import bootparams as bp
from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, make_bzimage
from tests.bed.oracle import run_oracle
from tests.conftest import require_root

pytestmark = pytest.mark.differential

APPEND = "--append=console=ttyS0 irqpoll nr_cpus=1 reset_devices"
# (name, offset, size) of every zero-page field compared here.
FIELDS = (("ext_mem_k", 0x02, 2), ("alt_mem_k", 0x1E0, 4), ("eddbuf_entries", 0x1E9, 1),
          ("edd_mbr_sig_buf_entries", 0x1EA, 1),
          ("edd_mbr_sig_buffer", 0x290, 4 * bp.EDD_MBR_SIG_MAX),
          ("eddbuf", 0xD00, bp.EddInfo.sizeof() * bp.EDD_MAX_ENTRIES))


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    return make_bzimage(str(tmp_path_factory.mktemp("k") / "bzImage"), FakeKernel())


def zero_pages(tmp_path, preset, argv):
    require_root()
    snap = str(tmp_path / preset)
    synthetic.make_machine(snap, synthetic.PRESETS[preset])
    oracle = run_oracle(snap, argv)
    assert oracle.exit_code == 0, oracle.stderr
    mine = plan_load(parse_args(argv + ["--sysroot", snap]), Machine.read(snap),
                     random_bytes=lambda n: bytes(n))
    pages = []
    for plan in (oracle.plan, mine):
        seg = boot_params_segment(plan)
        pages.append(seg.read(seg.mem, bp.BOOT_PARAMS_SIZE))
    return pages


def fields(page):
    return {name: page[at:at + size].hex() for name, at, size in FIELDS}


@pytest.mark.parametrize("preset", ["crash_at_1m", "edd_bios_disks", "qemu_like_1g"])
def test_machine_fields_of_the_crash_zero_page_match_kexec_tools(tmp_path, kernel, preset):
    theirs, mine = zero_pages(tmp_path, preset, ["-p", kernel, APPEND])
    assert fields(mine) == fields(theirs)


def test_low_crash_region_gives_the_legacy_memory_sizes(tmp_path, kernel):
    # With the crash region at [1 MiB, 129 MiB) the capture e820 has a RAM entry that runs
    # past 1 MiB; kexec-tools counts its size from the entry's inclusive last byte.
    theirs, mine = zero_pages(tmp_path, "crash_at_1m", ["-p", kernel, APPEND])
    for page in (theirs, mine):
        params = bp.BootParams.parse(page)
        lasts = [e.addr + e.size - 1 for e in params.e820_table[:params.e820_entries]
                 if e.type == bp.E820_RAM and e.addr <= 0x100000 < e.addr + e.size - 1]
        assert len(lasts) == 1
        expected = (lasts[0] >> 10) - 1024
        assert expected > 0 and params.alt_mem_k == expected
        assert int.from_bytes(page[2:4], "little") == min(expected, 0xFC00)


def test_edd_disks_reach_the_capture_kernel(tmp_path, kernel):
    theirs, mine = zero_pages(tmp_path, "edd_bios_disks", ["-p", kernel, APPEND])
    files = synthetic.edd_files(synthetic.PRESETS["edd_bios_disks"])
    sigs = sorted(int(v, 16) for k, v in files.items() if k.endswith("mbr_signature"))
    for page in (theirs, mine):
        params = bp.BootParams.parse(page)
        assert (params.eddbuf_entries, params.edd_mbr_sig_buf_entries) == (3, 3)
        assert sorted(params.edd_mbr_sig_buffer[:3]) == sigs
        assert sorted(e.device for e in params.eddbuf[:3]) == [0x80, 0x81, 0x82]
