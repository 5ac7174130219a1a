"""Synthetic machine snapshots are self-consistent (offline, no root, no kexec).

The files are read back with independent parsers (regular expressions, struct at literal
offsets, pyelftools), not with the generator's own declarations.
"""

from __future__ import annotations

import json
import os
import re
import struct

import pytest
from elftools.elf.elffile import ELFFile

from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.bed.synthetic import GiB, MiB, MachineSpec, machine_layout, make_machine

IOMEM_LINE = re.compile(r"^( *)([0-9a-f]+)-([0-9a-f]+) : (.+)$")
E820_NAMES = {"System RAM", "Reserved", "ACPI Tables", "ACPI Non-volatile Storage",
              "Persistent Memory"}


@pytest.fixture(scope="module", params=sorted(synthetic.PRESETS))
def machine(request, tmp_path_factory):
    spec = synthetic.PRESETS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    layout = make_machine(str(root), spec)
    return spec, layout, root


def read(root, rel):
    return (root / rel).read_text()


def parse_iomem(text):
    """[(depth, start, end, name)] with the nesting the indentation gives."""
    rows = []
    for line in text.splitlines():
        m = IOMEM_LINE.match(line)
        assert m, f"bad iomem line {line!r}"
        indent, start, end, name = m.groups()
        assert len(indent) % 2 == 0
        rows.append((len(indent) // 2, int(start, 16), int(end, 16), name))
    return rows


def parse_memmap(root):
    base = root / "sys/firmware/memmap"
    entries = []
    for n in sorted(os.listdir(base), key=int):
        start = int(read(base, f"{n}/start"), 16)
        end = int(read(base, f"{n}/end"), 16)
        entries.append((start, end, read(base, f"{n}/type").rstrip("\n")))
    return entries


def test_iomem_nests_and_orders(machine):
    spec, layout, root = machine
    rows = parse_iomem(read(root, "proc/iomem"))
    tops = [r for r in rows if r[0] == 0]
    for a, b in zip(tops, tops[1:]):
        assert a[2] < b[1], "top-level ranges are sorted and disjoint"
    parent = None
    for depth, start, end, name in rows:
        assert start <= end
        if depth == 0:
            parent = (start, end, name)
        else:
            assert depth == 1 and parent[0] <= start and end <= parent[1]
    assert len([r for r in rows if r[3] == "Crash kernel"]) == (2 if spec.crash_low_size else 1)
    # Every child that matters to a loader sits inside System RAM.
    for depth, start, end, name in rows:
        if name.startswith("Kernel ") or name == "Crash kernel":
            assert any(n == "System RAM" and s <= start and end <= e for d, s, e, n in tops)
    assert len([r for r in rows if r[3] == "Kernel code"]) == 1


def test_crash_regions_match_spec(machine):
    spec, _layout, root = machine
    rows = parse_iomem(read(root, "proc/iomem"))
    crash = [(s, e) for d, s, e, n in rows if n == "Crash kernel"]
    high = crash[-1]
    assert high[1] - high[0] + 1 == spec.crash_size
    assert (high[0] >= 4 * GiB) == spec.crash_high
    if spec.crash_at is None:
        assert high[0] % (16 * MiB) == 0     # the kernel's own choice is 16 MiB aligned
    else:
        assert high[0] == spec.crash_at      # crashkernel=X@Y puts it exactly there
    if spec.crash_low_size:
        low = crash[0]
        assert low[1] < 4 * GiB and low[1] - low[0] + 1 == spec.crash_low_size
    assert int(read(root, "sys/kernel/kexec_crash_size")) == spec.crash_size
    assert "crashkernel=" in read(root, "proc/cmdline")


def test_memmap_matches_iomem(machine):
    spec, _layout, root = machine
    memmap = parse_memmap(root)
    for a, b in zip(memmap, memmap[1:]):
        assert a[1] < b[0]
    assert memmap[0] == (0, 0x9FBFF, "System RAM")       # firmware view of low memory
    tops = [(s, e, n) for d, s, e, n in parse_iomem(read(root, "proc/iomem"))
            if d == 0 and n in E820_NAMES]
    # The kernel reserves the first page; otherwise iomem's e820 lines are the firmware map.
    assert tops[:2] == [(0, 0xFFF, "Reserved"), (0x1000, 0x9FBFF, "System RAM")]
    assert tops[2:] == memmap[1:]
    ram = [(s, e) for s, e, n in memmap if n == "System RAM"]
    assert len(ram) == spec.ram_ranges
    total = sum(e - s + 1 for s, e in ram)
    assert 0.9 * spec.ram < total <= spec.ram
    # The crash regions lie inside firmware RAM (kexec places segments against this map).
    for d, s, e, n in parse_iomem(read(root, "proc/iomem")):
        if n == "Crash kernel":
            assert any(rs <= s and e <= re_ for rs, re_ in ram)
    pmem = [r for r in memmap if r[2] == "Persistent Memory"]
    assert sum(e - s + 1 for s, e, _ in pmem) == spec.pmem_size
    assert len([r for r in memmap if r[2] == "ACPI Non-volatile Storage"]) == spec.nvs_ranges


def test_kcore_header_parses(machine):
    spec, layout, root = machine
    data = (root / "proc/kcore").read_bytes()
    assert len(data) % 4096 == 0 and len(data) <= 64 * 1024
    with open(root / "proc/kcore", "rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_CORE" and elf["e_machine"] == "EM_X86_64"
        segs = [elf.get_segment(i) for i in range(elf.num_segments())]
        assert segs[0]["p_type"] == "PT_NOTE"
        note_names = [n["n_name"] for n in segs[0].iter_notes()]
        assert note_names == ["CORE", "CORE", "VMCOREINFO"]
        loads = [s.header for s in segs if s["p_type"] == "PT_LOAD"]
    syms = {}
    for line in read(root, "proc/kallsyms").splitlines():
        addr, kind, name = line.split()
        syms[name] = int(addr, 16)
    stext = syms["_stext"]
    text = [p for p in loads if p.p_vaddr <= stext < p.p_vaddr + p.p_memsz]
    assert text and text[0].p_vaddr + text[0].p_memsz == syms["_end"]
    assert stext >= 0xFFFFFFFF80000000 and stext % (2 * MiB) == 0
    lowest = min(p.p_vaddr for p in loads) & ~(GiB - 1)
    assert lowest == layout.page_offset
    if not spec.kaslr:
        assert lowest == 0xFFFF888000000000 and stext == 0xFFFFFFFF81000000
    # One direct-map PT_LOAD per System RAM line, at page_offset + physical address.
    ram = [(s, e) for d, s, e, n in parse_iomem(read(root, "proc/iomem")) if n == "System RAM"]
    direct = [(p.p_paddr, p.p_vaddr) for p in loads if lowest <= p.p_vaddr < lowest + (64 << 40)]
    assert [a for a, _ in direct] == [s & ~0xFFF for s, _ in ram]
    assert all(v == lowest + a for a, v in direct)


def test_boot_params_and_sysfs_files(machine):
    spec, layout, root = machine
    bp = (root / "sys/kernel/boot_params/data").read_bytes()
    assert len(bp) == 4096
    assert struct.unpack_from("<Q", bp, 0x70)[0] == spec.acpi_rsdp
    assert bp[0x202:0x206] == b"HdrS" and struct.unpack_from("<H", bp, 0x1FE)[0] == 0xAA55
    assert struct.unpack_from("<H", bp, 0x206)[0] == 0x020F
    n = bp[0x1E8]
    memmap = parse_memmap(root)
    assert n == min(len(memmap), 128)
    first = struct.unpack_from("<QQI", bp, 0x2D0)
    assert first == (0, 0xA0000 - 0x400, 1)
    assert read(root, "sys/kernel/boot_params/version") == "0x020f\n"
    assert re.fullmatch(r"0x[0-9a-f]{16} [0-9a-f]+\n", read(root, "sys/kernel/vmcoreinfo"))
    cpus = read(root, "sys/devices/system/cpu/possible").strip()
    assert cpus == (f"0-{spec.cpus - 1}" if spec.cpus > 1 else "0")
    for cpu in range(spec.cpus):
        notes = root / f"sys/devices/system/cpu/cpu{cpu}/crash_notes"
        assert notes.exists() == (cpu not in spec.cpus_without_notes)
        if notes.exists():
            assert re.fullmatch(r"[0-9a-f]+\n", notes.read_text())
            assert read(root, f"sys/devices/system/cpu/cpu{cpu}/crash_notes_size") == "368\n"
    meta = json.loads(read(root, "snapshot.json"))
    assert meta["format"] == 1 and meta["source"] == "synthetic" and meta["machine"] == "x86_64"
    assert meta["notes"]


def test_snapshots_are_small(machine):
    _spec, _layout, root = machine
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    assert total < 128 * 1024


def test_same_spec_same_bytes(tmp_path):
    spec = synthetic.PRESETS["pmem_nvs"]
    make_machine(str(tmp_path / "a"), spec)
    make_machine(str(tmp_path / "b"), spec)
    for d, _, fs in os.walk(tmp_path / "a"):
        for f in fs:
            a = os.path.join(d, f)
            b = a.replace(str(tmp_path / "a"), str(tmp_path / "b"))
            assert open(a, "rb").read() == open(b, "rb").read(), a


def test_impossible_specs_are_refused():
    with pytest.raises(ValueError):
        machine_layout(MachineSpec(ram=1 * GiB, crash_high=True))
    with pytest.raises(ValueError):
        machine_layout(MachineSpec(ram=8 * GiB, crash_low_size=128 * MiB))
    with pytest.raises(ValueError):
        machine_layout(MachineSpec(ram=1 * GiB, ram_ranges=1000))


def test_cli_writes_a_preset(tmp_path, capsys):
    assert synthetic.main(["qemu_like_1g", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m/proc/iomem").exists()
    assert "System RAM" in capsys.readouterr().out


def test_fake_bzimage_header():
    k = FakeKernel()
    data = bzimage_bytes(k)
    assert struct.unpack_from("<H", data, 0x1FE)[0] == 0xAA55 and data[0x202:0x206] == b"HdrS"
    assert struct.unpack_from("<H", data, 0x206)[0] == 0x020F
    assert data[0x211] & 1 and struct.unpack_from("<H", data, 0x236)[0] & 3 == 3
    assert data[0x1F1] == k.setup_sects and data[0x201] + 0x202 == 0x26C
    assert struct.unpack_from("<I", data, 0x230)[0] == 0x200000
    assert struct.unpack_from("<I", data, 0x260)[0] == k.init_size
    assert struct.unpack_from("<Q", data, 0x258)[0] == 0x1000000
    assert data[0x234] == 1 and struct.unpack_from("<I", data, 0x238)[0] == 2047
    assert len(data) == (k.setup_sects + 1) * 512 + k.payload_size
