"""pykexec's crash plans against Debian's kexec's, on the same machines and files.

Both plans are decoded the same way (pykexec.views.planfacts) and must agree on everything that
does not depend on placement: the ELF core header's program headers (the backup one
pointing at each loader's own copy), the capture kernel's e820 outside the crash region,
the command line's parameters, the kernel and initrd bytes. Placement differs on purpose:
pykexec's purgatory is smaller than kexec-tools' (0x3000 vs 0x9000 bytes), so everything
placed after it sits a little higher; the tests name each such difference.
"""

from __future__ import annotations

import json
import os

import pytest

from pykexec.arch import plan_load
from pykexec.core.digest import sha256_regions
from pykexec.machine import Machine
from pykexec.views.planfacts import compare_plans, decode_plan
from pykexec.arch import parse_args
from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, make_bzimage, make_initrd
from tests.bed.oracle import run_oracle
from tests.conftest import require, require_root

pytestmark = pytest.mark.differential

HERE = os.path.dirname(os.path.abspath(__file__))
SNAPSHOTS = os.path.join(os.path.dirname(HERE), "snapshots")
APPEND = "console=ttyS0 irqpoll nr_cpus=1 reset_devices"
# What may differ between two correct loaders, and why.
PLACEMENT_FACTS = {
    "segment addresses": "purgatory sizes differ, so later segments shift",
    "entry": "purgatory sits elsewhere",
    "elfcorehdr= value": "not expected to differ (same top-down start), allowed",
    "e820 inside the crash region": "follows the elfcorehdr and backup placement",
}


def guest_snapshots():
    """Saved x86_64 QEMU guests that reserved crash memory (others test other things)."""
    if not os.path.isdir(SNAPSHOTS):
        return []
    found = []
    for name in sorted(os.listdir(SNAPSHOTS)):
        folder = os.path.join(SNAPSHOTS, name)
        iomem = os.path.join(folder, "proc/iomem")
        info = os.path.join(folder, "snapshot.json")
        if not (os.path.isfile(iomem) and "Crash kernel" in open(iomem).read()):
            continue
        if os.path.isfile(info) and json.load(open(info)).get("machine", "x86_64") != "x86_64":
            continue
        found.append(name)
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    return {"kernel": make_bzimage(str(d / "bzImage"), FakeKernel()),
            "initrd": make_initrd(str(d / "initrd.img"), 300 * 1024)}


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    d = tmp_path_factory.mktemp("machines")
    out = {}
    for name, spec in synthetic.PRESETS.items():
        synthetic.make_machine(str(d / name), spec)
        out[name] = str(d / name)
    for name in guest_snapshots():
        out[name] = os.path.join(SNAPSHOTS, name)
    return out


def both_plans(snapshot, argv):
    require_root()
    oracle = run_oracle(snapshot, argv)
    assert oracle.exit_code == 0, oracle.stderr
    machine = Machine.read(snapshot)
    mine = plan_load(parse_args(argv + ["--sysroot", snapshot]), machine,
                     random_bytes=lambda n: bytes(range(n)))
    return oracle.plan, mine, machine


def assert_equivalent(theirs, mine, machine):
    region = machine.crash_region
    result = compare_plans(theirs, mine, (region.start, region.end))
    assert result.equivalent, result.explain()
    unexplained = {d.fact for d in result.placement} - set(PLACEMENT_FACTS)
    assert not unexplained, result.explain()
    return result


MACHINE_NAMES = list(synthetic.PRESETS) + guest_snapshots()


@pytest.mark.parametrize("name", MACHINE_NAMES)
@pytest.mark.parametrize("with_initrd", [False, True])
def test_bzimage_crash_plan_matches_kexec_tools(machines, files, name, with_initrd):
    argv = ["-p", files["kernel"], f"--append={APPEND}"]
    if with_initrd:
        argv.append(f"--initrd={files['initrd']}")
    theirs, mine, machine = both_plans(machines[name], argv)
    assert_equivalent(theirs, mine, machine)


@pytest.mark.parametrize("name", ["qemu_like_1g", "server_64g_numa"])
def test_elf32_core_headers_is_ignored_on_x86_64_by_both(machines, files, name):
    argv = ["-p", files["kernel"], f"--append={APPEND}", "--elf32-core-headers"]
    theirs, mine, machine = both_plans(machines[name], argv)
    assert_equivalent(theirs, mine, machine)
    assert decode_plan(mine).core_class == 2
    assert any("ELF64" in w for w in mine.notes["warnings"])


def test_purgatory_digest_covers_every_other_segment(machines, files):
    _theirs, mine, _machine = both_plans(machines["qemu_like_1g"],
                                         ["-p", files["kernel"], f"--initrd={files['initrd']}"])
    symbols = mine.notes["purgatory_symbols"]
    others = [s for s in mine.segments if s.kind != "purgatory"]
    _table, digest, regions = sha256_regions(others)
    assert symbols["sha256_digest"] == digest.hex()
    assert [tuple(r) for r in symbols["sha256_regions"]] == [(s.mem, s.memsz) for s in others]
    # And the digest written into the purgatory bytes is that one.
    purgatory = mine.segments_of("purgatory")[0]
    at = symbols["symbol_addresses"]["sha256_digest"] - purgatory.mem
    assert purgatory.data[at:at + 32] == digest


def test_real_debian_kernel_on_guest_snapshots(machines, tmp_path):
    from tests.bed.kernels import get_kernel
    snaps = guest_snapshots()
    require(snaps, "no QEMU guest snapshots in tests/snapshots")
    try:
        kernel = get_kernel()
    except Exception as err:  # noqa: BLE001 - any failure to fetch means the test cannot run
        require(False, f"no Debian kernel: {err}")
    initrd = make_initrd(str(tmp_path / "initrd.img"), 2 * 1024 * 1024)
    for name in snaps:
        argv = ["-p", str(kernel.bzimage), f"--initrd={initrd}", f"--append={APPEND}"]
        theirs, mine, machine = both_plans(machines[name], argv)
        assert_equivalent(theirs, mine, machine)
