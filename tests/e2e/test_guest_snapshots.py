"""The committed guest snapshots (tests/snapshots/qemu-*, from scripts/take-guest-snapshots).

Structure checks run anywhere. The differential checks run Debian's kexec (the oracle) on
each snapshot: a bzImage crash load must plan on every machine, an ELF vmlinux only where
the crash region sits at 16 MiB; any snapshot file kexec needs but the snapshot lacks (the
kcore notes, for one) shows up here as a failed load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path

import pytest

from tests.bed.hotplug import HotplugPlan
from tests.bed.qemu import GUEST_MACHINES, SNAPSHOTS_DIR
from tests.conftest import require, require_root

# The default machines must be in the tree; the others are checked once someone adds them.
NAMES = [m.name for m in GUEST_MACHINES if m.default or (SNAPSHOTS_DIR / m.name).is_dir()]
MACHINES = {m.name: m for m in GUEST_MACHINES}


def snap(name) -> Path:
    return SNAPSHOTS_DIR / name


def read(name, rel) -> bytes:
    return (snap(name) / rel).read_bytes()


def cpu_list(text: str):
    cpus = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def crash_regions(name):
    out = []
    for line in read(name, "proc/iomem").decode().splitlines():
        m = re.match(r"\s*([0-9a-f]+)-([0-9a-f]+) : Crash kernel$", line)
        if m:
            out.append((int(m.group(1), 16), int(m.group(2), 16)))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_structure(name):
    machine = MACHINES[name]
    meta = json.loads(read(name, "snapshot.json"))
    assert meta["format"] == 1 and meta["source"] == "qemu" and meta["machine"] == "x86_64"
    assert meta["kernel_release"] and name in meta["notes"]
    for rel in ("proc/iomem", "proc/cmdline", "proc/kallsyms", "proc/kcore", "proc/mounts",
                "sys/kernel/vmcoreinfo", "sys/kernel/kexec_crash_size",
                "sys/kernel/boot_params/data", "sys/devices/system/cpu/possible"):
        assert (snap(name) / rel).is_file(), rel
    assert len(read(name, "sys/kernel/boot_params/data")) == 4096
    assert machine.crashkernel in read(name, "proc/cmdline").decode()
    cpus = cpu_list(read(name, "sys/devices/system/cpu/present").decode())
    possible = cpu_list(read(name, "sys/devices/system/cpu/possible").decode())
    assert len(cpus) == machine.cpus
    # a VM with room to grow has CPU slots the kernel counts as hot-pluggable
    assert len(possible) == (HotplugPlan().maxcpus if machine.hotplug_room else machine.cpus), \
        possible
    for cpu in cpus:
        assert (snap(name) / f"sys/devices/system/cpu/cpu{cpu}/crash_notes").is_file()
    for cpu in set(possible) - set(cpus):    # not there: no sysfs folder to copy
        assert not (snap(name) / f"sys/devices/system/cpu/cpu{cpu}").exists()
    if machine.hotplug_room:
        assert read(name, "sys/kernel/crash_elfcorehdr_size").strip().isdigit()
        assert read(name, "sys/devices/system/cpu/crash_hotplug").strip() == b"0"
    # kallsyms holds only the loader's symbols, with real (non-zero) addresses
    syms = dict(reversed(line.split()[::2]) for line in read(name, "proc/kallsyms").decode().splitlines())
    assert int(syms["_stext"], 16) != 0 and len(syms) < 20
    # kcore: whole ELF header, program headers and notes, nothing more than 64 KiB
    kcore = read(name, "proc/kcore")
    assert kcore[:4] == b"\x7fELF" and len(kcore) % 4096 == 0 and len(kcore) <= 65536
    phoff, = struct.unpack_from("<Q", kcore, 0x20)
    phnum, = struct.unpack_from("<H", kcore, 0x38)
    for i in range(phnum):
        ptype, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", kcore, phoff + 56 * i)
        if ptype == 4:
            assert off + filesz <= len(kcore)
    regions = crash_regions(name)
    assert regions
    assert int(read(name, "sys/kernel/kexec_crash_size")) == regions[-1][1] - regions[-1][0] + 1
    if name.endswith("-at16m"):
        assert regions == [(0x1000000, 0x10ffffff)]
    if name.endswith("-high"):
        assert len(regions) == 2 and regions[1][0] >= 1 << 32 and regions[0][1] < 1 << 32
    if machine.memory_mib > 3072:
        ram = [l for l in read(name, "proc/iomem").decode().splitlines() if l.endswith(": System RAM")]
        assert any(int(l.split("-")[0], 16) >= 1 << 32 for l in ram)
    assert os.path.getsize(snap(name) / "proc/kallsyms") < 4096


@pytest.fixture(scope="module")
def inputs():
    from tests.bed.initramfs import get_initramfs
    from tests.bed.kernels import BedError, get_kernel
    require_root()
    require(shutil.which("kexec") or os.path.exists("/usr/sbin/kexec"), "kexec-tools not installed")
    try:
        kernel = get_kernel()
        return kernel, get_initramfs(kernel)
    except BedError as e:
        require(False, f"Debian kernel not available: {e}")


@pytest.mark.differential
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt", ["bzimage", "elf"])
def test_oracle_loads_on_snapshot(name, fmt, inputs):
    from tests.bed.oracle import run_oracle
    kernel, initrd = inputs
    image, extra = (kernel.bzimage, []) if fmt == "bzimage" else (kernel.vmlinux, ["--args-linux"])
    r = run_oracle(str(snap(name)), ["-p", str(image), *extra, f"--initrd={initrd}",
                                     "--append=console=ttyS0 irqpoll nr_cpus=1 reset_devices"])
    lo, hi = crash_regions(name)[-1]
    if fmt == "elf" and not name.endswith("-at16m"):
        # kexec-tools puts an ELF vmlinux at its link address, 16 MiB: outside this region
        assert r.exit_code != 0 and "Invalid memory segment 0x1000000" in r.stderr
        return
    assert r.exit_code == 0, r.stderr[-2000:]
    plan = r.plan
    assert plan.flags == 0x3E0001
    assert len(plan.segments) == (7 if fmt == "bzimage" else 10)
    for s in plan.segments:
        assert lo <= s.mem and s.mem + s.memsz - 1 <= hi
