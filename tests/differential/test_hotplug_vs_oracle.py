"""`-p --hotplug` against kexec-tools 2.0.28+ (the bed builds 2.0.29, tests/bed/kexec_tools.py)
on guest snapshots given a /sys/kernel/crash_elfcorehdr_size: the elfcorehdr's memsz, the
kexec_load flags and which segments purgatory's digest leaves out must agree."""

from __future__ import annotations

import re
import shutil

import pytest

from pykexec.arch import parse_args, plan_load
from pykexec.machine import Machine
from tests.bed.fakekernel import FakeKernel, make_bzimage
from tests.bed.oracle import run_oracle
from tests.conftest import require_root
from tests.differential.test_pykexec_vs_oracle import SNAPSHOTS, guest_snapshots

pytestmark = pytest.mark.differential

APPEND = "console=ttyS0 irqpoll nr_cpus=1 reset_devices"
# Not a multiple of 1 KiB nor of a page: both loaders must round it the same way.
HOTPLUG_SIZE = 0x11801
ET_CORE = 4
SKIPPED = re.compile(r"Skipping segment mem: (0x[0-9a-f]+) from SHA calculation")


@pytest.fixture(scope="module")
def built_kexec():
    require_root()
    from tests.bed.kexec_tools import get_kexec_tools
    return str(get_kexec_tools().kexec)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    path = make_bzimage(str(tmp_path_factory.mktemp("k") / "bzImage"), FakeKernel())
    # 2.0.29 reads a file starting with zero bytes as a raw LZMA stream of 0 bytes and then
    # cannot probe it; a real (EFI stub) bzImage starts with "MZ", which no loader checks.
    with open(path, "r+b") as f:
        f.write(b"MZ")
    return path


def is_core_header(seg) -> bool:
    return seg.data[:4] == b"\x7fELF" and seg.data[16] == ET_CORE


# A real 6.12 guest (CONFIG_CRASH_HOTPLUG, room for more CPUs and DIMMs): its own size file.
REAL_612 = "qemu-x86_64-1g-1cpu-612"
# 6.1 guests given a size file, and the real one as it is
CASES = [(n, HOTPLUG_SIZE) for n in [n for n in guest_snapshots() if n != REAL_612][:2]] + \
    [(REAL_612, None)]


@pytest.mark.parametrize("name, size", CASES)
def test_hotplug_plan_matches_kexec_tools(tmp_path, built_kexec, kernel, name, size):
    snapshot = tmp_path / name
    shutil.copytree(f"{SNAPSHOTS}/{name}", snapshot, symlinks=True)
    if size is not None:
        (snapshot / "sys/kernel/crash_elfcorehdr_size").write_text(f"{size}\n")
    size = int((snapshot / "sys/kernel/crash_elfcorehdr_size").read_text())
    argv = ["-d", "-c", "-p", kernel, f"--append={APPEND}", "--hotplug"]
    oracle = run_oracle(str(snapshot), argv, kexec=built_kexec)
    assert oracle.exit_code == 0, oracle.stderr
    machine = Machine.read(str(snapshot))
    mine = plan_load(parse_args(argv[1:] + ["--sysroot", str(snapshot)]), machine,
                     random_bytes=lambda n: bytes(range(n)))

    [theirs_hdr] = [s for s in oracle.plan.segments if is_core_header(s)]
    [mine_hdr] = [s for s in mine.segments if s.kind == "elfcorehdr"]
    assert theirs_hdr.memsz == mine_hdr.memsz >= size
    assert oracle.plan.flags == mine.flags
    # kexec-tools leaves out purgatory and, with --hotplug, the elfcorehdr (-d names it)
    assert [int(a, 16) for a in SKIPPED.findall(oracle.stderr)] == [theirs_hdr.mem]
    hashed = {tuple(r) for r in mine.notes["purgatory_symbols"]["sha256_regions"]}
    assert hashed == {(s.mem, s.memsz) for s in mine.segments
                      if s.kind not in ("purgatory", "elfcorehdr")}


def test_kexec_tools_refuses_hotplug_without_the_size_as_pykexec_does(tmp_path, built_kexec,
                                                                      kernel):
    name = guest_snapshots()[0]
    assert name != REAL_612
    snapshot = tmp_path / name
    shutil.copytree(f"{SNAPSHOTS}/{name}", snapshot, symlinks=True)
    (snapshot / "sys/kernel/crash_elfcorehdr_size").unlink(missing_ok=True)
    oracle = run_oracle(str(snapshot), ["-c", "-p", kernel, "--hotplug"], kexec=built_kexec)
    assert oracle.exit_code == 1 and "crash_elfcorehdr_size" in oracle.stderr
    assert oracle.plan is None
