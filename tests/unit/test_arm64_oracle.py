"""pykexec's arm64 crash plans against Debian's kexec-tools:arm64, recorded on the four arm64
snapshots (oracle/shim: every segment's address and size, the DTB and the elfcorehdr bytes,
the kernel and initrd as SHA-256): same segments (purgatory excepted: ours is our own),
same kernel bytes, the same device tree (seeds masked), the same core header except where
kexec-tools 2.0.25 is wrong (without _text in kallsyms it writes page_offset 0 and a
garbage kernel-text PT_LOAD: docs/differences.md). Where it is wrong, /proc/kcore is the
oracle: its PT_LOADs map the same physical memory at the addresses the kernel really uses.

The kernel and initrd are the recorded ones when the bed's cache holds them (their SHA-256
then checked too: Debian's PE-signed Image is loaded whole, signature included, as
kexec-tools loads it); otherwise files of the recorded sizes and header, which the placement
depends on, stand in (tests/unit/test_arm64_load.py loads signed Images of its own).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pykexec.arch import parse_args, plan_load
from pykexec.arch.arm64.fdt import Fdt
from pykexec.machine import Machine
from tests.bed.arm64guest import ARM64_MACHINES, SNAPSHOTS_DIR
from tests.bed.oracle import parse_kexec_debug
from tests.conftest import require
from tests.unit.test_arm64_snapshots import shim_segments

KEXEC_ON_CRASH_AARCH64 = 0xB70001
CACHE = Path.home() / ".cache" / "pykexec-bed" / "arm64"
SEEDS = ("kaslr-seed", "rng-seed")
NAMES = sorted(m.name for m in ARM64_MACHINES)


def record(snap: Path) -> dict:
    return json.loads((snap / "oracle" / "kexec-p-d.json").read_text())


def recorded_sha(snap: Path, index: int) -> str:
    return (snap / "oracle" / "shim" / f"c0-seg{index}.bin.sha256").read_text().split()[0]


def debug_value(stderr: str, key: str) -> int:
    line = next(l for l in stderr.splitlines() if key in l)
    return int(line.rsplit(key, 1)[1].split()[0], 16)


def stand_in_image(size: int, image_size: int, text_offset: int) -> bytes:
    """An Image header (ARM\\x64, text_offset, image_size, 4K pages, anywhere) padded to size."""
    head = bytearray(64)
    head[8:16] = text_offset.to_bytes(8, "little")
    head[16:24] = image_size.to_bytes(8, "little")
    head[24:32] = (0b1010).to_bytes(8, "little")
    head[0x38:0x3c] = b"ARM\x64"
    return bytes(head) + bytes(size - 64)


def find_cached(sha: str, pattern: str):
    for path in sorted(CACHE.glob(pattern)):
        if path.stat().st_size and hashlib.sha256(path.read_bytes()).hexdigest() == sha:
            return path
    return None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(kernel path, initrd path, real?) per snapshot: the recorded files or stand-ins."""
    tmp = tmp_path_factory.mktemp("arm64-inputs")
    made = {}
    out = {}
    for name in NAMES:
        snap = SNAPSHOTS_DIR / name
        rec = record(snap)
        segs = shim_segments(snap)
        kernel = find_cached(recorded_sha(snap, 0), "linux-image-*/root/boot/vmlinuz-*")
        initrd = find_cached(recorded_sha(snap, 1), "initramfs-*.cpio.gz")
        if kernel is None:
            key = ("k", segs[0][2])
            if key not in made:
                made[key] = tmp / f"Image-{segs[0][2]:x}"
                made[key].write_bytes(stand_in_image(
                    segs[0][2], debug_value(rec["stderr"], "image_size:"),
                    debug_value(rec["stderr"], "text_offset:")))
            kernel = made[key]
        if initrd is None:
            key = ("i", segs[1][2])
            if key not in made:
                made[key] = tmp / f"initrd-{segs[1][2]:x}"
                made[key].write_bytes(bytes(range(256)) * (segs[1][2] // 256)
                                      + bytes(segs[1][2] % 256))
            initrd = made[key]
        out[name] = (kernel, initrd)
    return out


def our_plan(name, inputs):
    snap = SNAPSHOTS_DIR / name
    require(snap.is_dir(), f"{snap} is missing")
    argv = record(snap)["argv"]
    kernel, initrd = inputs[name]
    append = next(a for a in argv if a.startswith("--append="))
    request = parse_args(["-p", str(kernel), f"--initrd={initrd}", append])
    return plan_load(request, Machine.read(str(snap)), random_bytes=lambda n: bytes(n))


@pytest.mark.parametrize("name", NAMES)
def test_segments_flags_and_entry_match_kexec_tools(name, inputs):
    snap = SNAPSHOTS_DIR / name
    plan = our_plan(name, inputs)
    theirs = shim_segments(snap)
    real = parse_kexec_debug(record(snap)["stderr"])
    assert plan.flags == real.flags == KEXEC_ON_CRASH_AARCH64
    ours = [s for s in plan.segments if s.kind != "purgatory"]
    purgatory = [s for s in plan.segments if s.kind == "purgatory"]
    their_purgatory = [s for s in theirs if s[0] <= real.entry < s[0] + s[1]]
    assert len(purgatory) == 1 and len(their_purgatory) == 1
    assert purgatory[0].mem <= plan.entry < purgatory[0].mem + purgatory[0].memsz
    others = [s for s in theirs if s is not their_purgatory[0]]
    assert [(s.mem, s.memsz) for s in ours] == [(m, ms) for m, ms, _, _ in others]
    kinds = [s.kind for s in ours]
    assert kinds == ["kernel", "initrd", "dtb", "elfcorehdr"]
    for seg, (_, _, bufsz, _) in zip(ours, others):
        if seg.kind != "dtb":       # libfdt keeps QEMU's strings block; we rebuild it
            assert len(seg.data) == bufsz, seg.kind
    # purgatory sits where kexec-tools put its own: bottom-up after the device tree
    assert purgatory[0].mem == their_purgatory[0][0]


@pytest.mark.parametrize("name", NAMES)
def test_kernel_and_initrd_bytes(name, inputs):
    snap = SNAPSHOTS_DIR / name
    plan = our_plan(name, inputs)
    kernel, initrd = inputs[name]
    by_kind = {s.kind: s for s in plan.segments}
    assert by_kind["kernel"].data == kernel.read_bytes()
    assert by_kind["initrd"].data == initrd.read_bytes()
    if kernel.parent.name == "boot":       # the recorded kernel is in the bed's cache
        assert hashlib.sha256(by_kind["kernel"].data).hexdigest() == recorded_sha(snap, 0)
    if initrd.name.endswith(".cpio.gz"):
        assert hashlib.sha256(by_kind["initrd"].data).hexdigest() == recorded_sha(snap, 1)


def masked(fdt: Fdt) -> Fdt:
    for prop in SEEDS:
        if fdt.get("/chosen", prop) is not None:
            fdt.set("/chosen", prop, bytes(len(fdt.get("/chosen", prop))))
    return fdt


@pytest.mark.parametrize("name", NAMES)
def test_device_tree_matches_kexec_tools(name, inputs):
    snap = SNAPSHOTS_DIR / name
    plan = our_plan(name, inputs)
    theirs = next(s[3] for s in shim_segments(snap) if s[3] and s[3][:4] == b"\xd0\x0d\xfe\xed")
    ours = next(s.data for s in plan.segments if s.kind == "dtb")
    assert masked(Fdt.parse(ours, "ours")) == masked(Fdt.parse(theirs, "kexec-tools'"))


def phdrs(data: bytes):
    elf = ELFFile(io.BytesIO(data))
    return elf, [dict(s.header) for s in elf.iter_segments()]


def kcore_loads(snap: Path):
    _, loads = phdrs((snap / "proc" / "kcore").read_bytes())
    return [p for p in loads if p["p_type"] == "PT_LOAD"]


@pytest.mark.parametrize("name", NAMES)
def test_core_header_matches_kexec_tools_except_its_wrong_addresses(name, inputs):
    snap = SNAPSHOTS_DIR / name
    plan = our_plan(name, inputs)
    ours_data = next(s.data for s in plan.segments if s.kind == "elfcorehdr")
    theirs_data = next(s[3] for s in shim_segments(snap) if s[3] and s[3][:4] == b"\x7fELF")
    assert len(ours_data) == len(theirs_data)
    ours_elf, ours = phdrs(ours_data)
    theirs_elf, theirs = phdrs(theirs_data)
    for key in ("e_type", "e_machine", "e_phoff", "e_phnum", "e_phentsize", "e_flags"):
        assert ours_elf.header[key] == theirs_elf.header[key], key
    assert ours_elf.header["e_machine"] == "EM_AARCH64"
    # the notes: one per CPU, then VMCOREINFO, identical
    notes = [p for p in ours if p["p_type"] == "PT_NOTE"]
    assert notes == [p for p in theirs if p["p_type"] == "PT_NOTE"]
    assert len(notes) == len(list(snap.glob("sys/devices/system/cpu/cpu*/crash_notes"))) + 1
    # the RAM: same physical ranges; virtual addresses where the kernel maps them (kcore)
    ours_text, *ours_ram = [p for p in ours if p["p_type"] == "PT_LOAD"]
    theirs_text, *theirs_ram = [p for p in theirs if p["p_type"] == "PT_LOAD"]
    fields = ("p_offset", "p_paddr", "p_filesz", "p_memsz", "p_flags")
    assert [[p[f] for f in fields] for p in ours_ram] == [[p[f] for f in fields] for p in theirs_ram]
    kcore = kcore_loads(snap)
    linear = [k for k in kcore if k["p_paddr"] != 2**64 - 1 and k["p_vaddr"] >> 48 == 0xFFFF
              and (k["p_vaddr"] >> 40) & 0xFF == 0]
    for p in ours_ram:
        holder = [k for k in linear
                  if k["p_paddr"] <= p["p_paddr"] < k["p_paddr"] + k["p_memsz"]]
        # memory at the crash region's edges may be outside what kcore lists; the ones it
        # lists give the offset every linear address shares
        k = holder[0] if holder else linear[0]
        assert p["p_vaddr"] == k["p_vaddr"] + p["p_paddr"] - k["p_paddr"]
    # the kernel image: kcore's text PT_LOAD (vaddr _text, paddr __pa_symbol(_text))
    stext = int(next(l for l in (snap / "proc/kallsyms").read_text().splitlines()
                     if l.endswith(" _stext")).split()[0], 16)
    text = [k for k in kcore if k["p_vaddr"] <= stext < k["p_vaddr"] + k["p_memsz"]]
    text = min(text, key=lambda k: k["p_memsz"])
    assert (ours_text["p_vaddr"], ours_text["p_paddr"], ours_text["p_memsz"]) == \
        (text["p_vaddr"], text["p_paddr"], text["p_memsz"])
    # kexec-tools 2.0.25 (no _text): p_vaddr all ones and a size larger than the address space
    assert theirs_text["p_vaddr"] == 2**64 - 1 and theirs_text["p_memsz"] > 1 << 48


@pytest.mark.parametrize("name", NAMES)
def test_dry_run_of_the_snapshot(name, inputs, capsys):
    from pykexec.cli import run
    snap = SNAPSHOTS_DIR / name
    kernel, initrd = inputs[name]
    status = run(["-p", str(kernel), f"--initrd={initrd}", "--append=console=ttyAMA0",
                  "--sysroot", str(snap), "--dry-run"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "KEXEC_ARCH_AARCH64" in out and "dtb" in out and "elfcorehdr" in out


def vmcoreinfo_symbols(snap: Path) -> dict:
    text = (snap / "proc/kcore").read_bytes()
    return {line[7:line.index(")")]: int(line.split("=", 1)[1], 16)
            for line in text.decode("latin-1").splitlines()
            if line.startswith("SYMBOL(") and "=" in line}


def covering(loads, vaddr):
    return [p for p in loads if p["p_vaddr"] <= vaddr < p["p_vaddr"] + p["p_memsz"]]


@pytest.mark.parametrize("name", NAMES)
def test_every_vmcoreinfo_symbol_is_where_the_dump_tools_look(name, inputs):
    """What vmcore-dmesg (prb, printk_rb_static) and makedumpfile (init_uts_ns,
    swapper_pg_dir, mem_section) read through the core header's p_vaddr: in our header each
    symbol lies in a PT_LOAD whose p_paddr is where kcore says the kernel keeps it; in
    kexec-tools 2.0.25's, the kernel's own variables lie in none."""
    snap = SNAPSHOTS_DIR / name
    plan = our_plan(name, inputs)
    _, ours = phdrs(next(s.data for s in plan.segments if s.kind == "elfcorehdr"))
    _, theirs = phdrs(next(s[3] for s in shim_segments(snap) if s[3] and s[3][:4] == b"\x7fELF"))
    ours = [p for p in ours if p["p_type"] == "PT_LOAD"]
    theirs = [p for p in theirs if p["p_type"] == "PT_LOAD"]
    kcore = [k for k in kcore_loads(snap) if k["p_paddr"] != 2**64 - 1]
    symbols = vmcoreinfo_symbols(snap)
    assert {"init_uts_ns", "prb", "swapper_pg_dir", "mem_section"} <= set(symbols)
    for sym, vaddr in symbols.items():
        found = covering(ours, vaddr)
        truth = [k for k in covering(kcore, vaddr) if k["p_memsz"] <= 1 << 40]
        assert found and truth, sym
        assert found[0]["p_paddr"] + vaddr - found[0]["p_vaddr"] == \
            truth[0]["p_paddr"] + vaddr - truth[0]["p_vaddr"], sym
    for sym in ("init_uts_ns", "prb", "printk_rb_static", "swapper_pg_dir"):
        assert not covering(theirs, symbols[sym]), sym
