"""`pykexec snapshot` on a QEMU guest, replayed on the host, plans what the guest plans.

Issue 6's acceptance: a snapshot taken on a live machine (`pykexec snapshot DIR`), then
`--dry-run --sysroot DIR` of that snapshot on the host, gives the same plan as the
guest's own `--dry-run`. One guest boot per machine shape does both in the first kernel
(as one shell command, so they see the same boot: same KASLR, same crash region):

    python -m pykexec snapshot /tmp/results/snap
    python -m pykexec -c -p BZIMAGE --initrd=INITRD --append=... --dry-run --save-plan=/tmp/results/plan

Nothing is loaded (a dry run), so the guest powers off instead of panicking. On the host
the same argv runs with `--sysroot <run>/results/snap`, and the two plan folders must
agree: `pykexec.views.planfacts.compare_plans` sees no difference at all (not even placement),
and every segment is byte-identical except the two things pykexec draws fresh on every
run: the SETUP_RNG_SEED payload (32 random bytes for the capture kernel's RNG) and, since
the seed is covered by purgatory's SHA-256, the digest purgatory checks at panic time.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bed.initramfs import get_initramfs
from tests.bed.kernels import BedError, get_kernel
from tests.bed.qemu import DEFAULT_APPEND, REPO_ROOT, CycleConfig, run_kdump_cycle
from tests.conftest import require, require_root

pytestmark = pytest.mark.e2e

SETUP_DATA_HEADER = 16          # struct setup_data: next (u64), type (u32), len (u32)
RNG_SEED_BYTES = 32


@dataclass(frozen=True)
class Shape:
    name: str
    memory_mib: int
    cpus: int
    crashkernel: str


SHAPES = (
    Shape("1g-2cpu", 1024, 2, "crashkernel=256M"),
    # RAM above 4 GiB and two crash regions (,high plus the automatic low one)
    Shape("4g-2cpu-high", 4096, 2, "crashkernel=256M,high"),
)


@pytest.fixture(scope="module")
def bed():
    require_root()
    try:
        kernel = get_kernel()
        return kernel, get_initramfs(kernel)
    except BedError as err:
        require(False, f"test bed not available: {err}")


def pykexec_argv(kernel, initrd, extra=()):
    return [sys.executable, "-m", "pykexec", "-c", "-p", str(kernel), f"--initrd={initrd}",
            f"--append={DEFAULT_APPEND}", "--dry-run", *extra]


def masked_segments(plan):
    """(kind, mem, memsz, bytes) per segment with the per-run random bytes zeroed."""
    symbols = plan.notes.get("purgatory_symbols") or {}
    digest_at = (symbols.get("symbol_addresses") or {}).get("sha256_digest")
    out = []
    for seg in plan.segments:
        data = bytearray(seg.data)
        if seg.kind == "setup_data":
            kind = int.from_bytes(data[8:12], "little")
            if kind == 9:                                   # SETUP_RNG_SEED
                assert int.from_bytes(data[12:16], "little") == RNG_SEED_BYTES
                data[SETUP_DATA_HEADER:SETUP_DATA_HEADER + RNG_SEED_BYTES] = bytes(RNG_SEED_BYTES)
        if seg.kind == "purgatory":
            assert digest_at is not None and seg.contains(digest_at), symbols
            off = digest_at - seg.mem
            data[off:off + 32] = bytes(32)
        out.append((seg.kind, seg.mem, seg.memsz, bytes(data)))
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_snapshot_replayed_on_the_host_plans_what_the_guest_plans(shape, bed, tmp_path):
    from pykexec.core.plan import load_plan
    from pykexec.views.planfacts import compare_plans

    kernel, initrd = bed
    py = shlex.join([sys.executable, "-m", "pykexec"])
    guest_cmd = (f"{py} snapshot /tmp/results/snap && "
                 + shlex.join(pykexec_argv(kernel.bzimage, initrd,
                                           ["--save-plan=/tmp/results/plan"]))
                 + " > /tmp/results/dry-run.txt")
    res = run_kdump_cycle(CycleConfig(
        loader_argv=["/bin/sh", "-c", guest_cmd], memory_mib=shape.memory_mib, cpus=shape.cpus,
        cmdline_extra=shape.crashkernel, pattern_mib=4, timeout=240, kernel=kernel,
        run_dir=tmp_path / "run", name=f"replay-{shape.name}"))
    results = res.run_dir / "results"
    # A dry run loads nothing: the guest reports "load-failed" (not loaded) and powers off.
    assert res.loader_exit == 0, res.describe()
    assert res.crash_loaded == 0, res.describe()
    assert (results / "snap" / "snapshot.json").is_file(), res.describe()
    assert (results / "plan" / "plan.json").is_file(), res.describe()
    guest_report = (results / "dry-run.txt").read_text()
    assert "crash kernel window:" in guest_report

    host_plan_dir = tmp_path / "host-plan"
    proc = subprocess.run(pykexec_argv(kernel.bzimage, initrd,
                                       ["--sysroot", str(results / "snap"),
                                        f"--save-plan={host_plan_dir}"]),
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    guest, host = load_plan(str(results / "plan")), load_plan(str(host_plan_dir))

    comparison = compare_plans(guest, host)
    assert not comparison.differences, comparison.explain()
    assert (guest.flags, guest.entry, guest.cmdline) == (host.flags, host.entry, host.cmdline)
    assert [s.source for s in guest.segments] == [s.source for s in host.segments]
    g, h = masked_segments(guest), masked_segments(host)
    assert [x[:3] for x in g] == [x[:3] for x in h]
    for (kind, mem, _n, a), (_k, _m, _s, b) in zip(g, h):
        assert a == b, f"{kind} segment at {mem:#x} differs between guest and host"
    # The report's lines are the same too, once the random bytes' digests are left out.
    host_report = proc.stdout

    def stable(text):
        return [line for line in text.splitlines()
                if not any(k in line for k in ("setup_data  0x", "purgatory   0x",
                                               "sha256_digest"))]
    assert stable(guest_report) == stable(host_report)
    # The crash region really came from the live machine: the guest saw it in /proc/iomem.
    assert res.crash_region and all("Crash kernel" in line for line in res.crash_region)
    windows = guest.notes.get("crash_window")
    assert windows, guest.notes
