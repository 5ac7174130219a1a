"""The committed arm64 guest snapshots (tests/snapshots/qemu-arm64-*, taken by
`python -m tests.bed.arm64guest --take-snapshots`) are whole and agree with themselves.

Each holds what `pykexec snapshot` copied, the machine's DTB at sys/firmware/fdt (copied by
the bed beside it), and oracle/: Debian's kexec-tools:arm64 `kexec -d -p` of Debian's arm64
Image and the bed's initramfs in that guest, for differential tests: kexec-p-d.json a real
load, shim/ the same under the recording shim (segments' bytes; the kernel and initrd only
as SHA-256). kexec-tools' DTB is checked here against our FDT editor: same tree, property
order included, and the same bytes (the editor keeps the strings block, NOPs and padding as
libfdt does); tests/unit/test_arm64_dtb.py checks boot_dtb, which makes these edits, the
same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pykexec.arch.arm64.fdt import Fdt, cells
from tests.bed.arm64guest import ARM64_MACHINES, SNAPSHOTS_DIR
from tests.bed.oracle import parse_kexec_debug
from tests.conftest import require

KEXEC_ON_CRASH = 0x1
KEXEC_ARCH_AARCH64 = 183 << 16          # EM_AARCH64 in kexec_load's flags
MACHINES = {m.name: m for m in ARM64_MACHINES}


def snapshot(name) -> Path:
    path = SNAPSHOTS_DIR / name
    require(path.is_dir(), f"{path} is missing (python -m tests.bed.arm64guest --take-snapshots)")
    return path


def system_ram(iomem: str):
    ranges = []
    for line in iomem.splitlines():
        if line.startswith(" "):
            continue
        span, _, name = line.partition(" : ")
        if name.strip() == "System RAM":
            lo, hi = (int(x, 16) for x in span.split("-"))
            ranges.append((lo, hi + 1))
    return ranges


def crash_region(iomem: str):
    for line in iomem.splitlines():
        span, _, name = line.strip().partition(" : ")
        if name == "Crash kernel":
            lo, hi = (int(x, 16) for x in span.split("-"))
            return lo, hi + 1
    return None


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_snapshot_is_whole(name):
    m, snap = MACHINES[name], snapshot(name)
    info = json.loads((snap / "snapshot.json").read_text())
    assert info["machine"] == "aarch64" and info["source"] == "qemu"
    assert info["notes"].startswith(name)
    cmdline = (snap / "proc/cmdline").read_text().strip()
    assert m.crashkernel in cmdline.split()
    iomem = (snap / "proc/iomem").read_text()
    ram = system_ram(iomem)
    assert ram and ram[0][0] == 0x40000000
    assert sum(hi - lo for lo, hi in ram) <= m.memory_mib << 20
    assert max(hi for _, hi in ram) == 0x40000000 + (m.memory_mib << 20)
    lo, hi = crash_region(iomem)
    assert hi - lo == 256 << 20 and hi <= 1 << 32
    possible = (snap / "sys/devices/system/cpu/possible").read_text().strip()
    assert possible == ("0" if m.cpus == 1 else f"0-{m.cpus - 1}")
    assert len(list(snap.glob("sys/devices/system/cpu/cpu*/crash_notes"))) == m.cpus
    vmcoreinfo = (snap / "sys/kernel/vmcoreinfo").read_text().split()
    assert len(vmcoreinfo) == 2
    assert (snap / "sys/firmware/efi").is_dir() == (m.firmware == "uefi")


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_dtb_matches_the_machine(name):
    m, snap = MACHINES[name], snapshot(name)
    fdt = Fdt.parse((snap / "sys/firmware/fdt").read_bytes(), f"{name}/sys/firmware/fdt")
    cmdline = (snap / "proc/cmdline").read_text().strip()
    assert fdt.get_string("/chosen", "bootargs").strip() == cmdline
    if m.firmware == "uefi":
        # the EFI stub's tree: the memory map is UEFI's, not a /memory node
        assert fdt.find("/memory") is None
        assert fdt.get("/chosen", "linux,uefi-mmap-start") is not None
        return
    a, s = fdt.root_cells()
    reg = fdt.get_cells("/memory", "reg", 1)
    base = reg[0] << 32 | reg[1]
    size = reg[2] << 32 | reg[3]
    assert (a, s) == (2, 2) and (base, size) == (0x40000000, m.memory_mib << 20)
    cpus = [c for c in fdt.node("/cpus").children if c.name.startswith("cpu@")]
    assert len(cpus) == m.cpus


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_kexec_tools_record(name):
    snap = snapshot(name)
    record = json.loads((snap / "oracle/kexec-p-d.json").read_text())
    assert record["argv"][:3] == ["/sbin/kexec", "-d", "-p"]
    assert record["exit"] == 0 and record["kexec_crash_loaded"] == "1", record["stderr"][-2000:]
    load = parse_kexec_debug(record["stderr"])
    assert load is not None and load.flags == KEXEC_ON_CRASH | KEXEC_ARCH_AARCH64
    lo, hi = crash_region((snap / "proc/iomem").read_text())
    assert lo <= load.entry < hi
    assert len(load.segments) >= 4           # kernel, initrd, DTB, purgatory (+ elfcorehdr)
    for mem, memsz, bufsz in load.segments:
        assert lo <= mem and mem + memsz <= hi and bufsz <= memsz


# --- the DTB kexec-tools passes, recorded by the shim --------------------------------------------

def shim_segments(snap: Path):
    """[(mem, memsz, bufsz, bytes or None)] of the shim's one kexec_load (None: trimmed)."""
    calls = [dict(w.split("=", 1) for w in line.split())
             for line in (snap / "oracle/shim/calls.txt").read_text().splitlines()]
    loads = [c for c in calls if c.get("name") == "kexec_load"]
    assert len(loads) == 1 and loads[0]["flags"] == "0xb70001"
    out = []
    for c in calls:
        if "segment" in c:
            blob = snap / "oracle/shim" / c["file"]
            out.append((int(c["mem"], 16), int(c["memsz"], 16), int(c["bufsz"], 16),
                        blob.read_bytes() if blob.exists() else None))
    assert len(out) == int(loads[0]["nr_segments"])
    return out


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_shim_record_matches_the_real_load(name):
    """The recorded run (nothing loaded) planned what the real `kexec -p` loaded."""
    snap = snapshot(name)
    real = parse_kexec_debug(json.loads((snap / "oracle/kexec-p-d.json").read_text())["stderr"])
    assert [(m, ms, b) for m, ms, b, _ in shim_segments(snap)] == real.segments


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_kexec_tools_dtb_is_the_machine_dtb_with_chosen_edits(name):
    """Our FDT editor, making kexec-tools' /chosen edits on the machine's DTB, gives
    kexec-tools' DTB: the same tree, property order included."""
    snap = snapshot(name)
    segs = shim_segments(snap)
    dtbs = [s for s in segs if s[3] is not None and s[3][:4] == b"\xd0\x0d\xfe\xed"]
    cores = [s for s in segs if s[3] is not None and s[3][:4] == b"\x7fELF"]
    assert len(dtbs) == 1 and len(cores) == 1
    theirs = Fdt.parse(dtbs[0][3], f"{name} kexec-tools DTB")
    ours = Fdt.parse((snap / "sys/firmware/fdt").read_bytes())
    a, s = ours.root_cells()
    lo, hi = crash_region((snap / "proc/iomem").read_text())
    initrd = segs[1]
    append = json.loads((snap / "oracle/kexec-p-d.json").read_text())["argv"][-1]
    assert append.startswith("--append=")
    core_mem, _, core_size, _ = cores[0]
    # kexec-tools' order: bootargs, the crash properties, then the initrd (new ones go first)
    ours.set("/chosen", "bootargs", append[len("--append="):])
    ours.set("/chosen", "linux,elfcorehdr", cells([core_mem], a) + cells([core_size], s))
    ours.set("/chosen", "linux,usable-memory-range", cells([lo], a) + cells([hi - lo], s))
    ours.set("/chosen", "linux,initrd-start", cells([initrd[0]], 2))
    ours.set("/chosen", "linux,initrd-end", cells([initrd[0] + initrd[2]], 2))
    if theirs.get("/chosen", "kaslr-seed") is not None:
        ours.set("/chosen", "kaslr-seed", theirs.get("/chosen", "kaslr-seed"))
    assert ours == theirs
    assert ours.pack() == dtbs[0][3]
