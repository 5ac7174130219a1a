"""The guest's pattern check and core reader, run on the host against synthetic core files.

No QEMU: these prove that the check used by the e2e tests accepts an intact dump and
rejects shifted PFNs, a corrupted byte and uncovered memory (negative controls).
"""

from __future__ import annotations

import os
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bed", "guest"))

import pattern  # noqa: E402
import vmcore  # noqa: E402

PAGE = 4096
TAG = b"TESTTAG!"


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    namez = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(namez), len(desc), ntype) + pad(namez) + pad(desc)


def make_core(path, loads, page_contents, cpus=2):
    """ELF64 core: one PT_NOTE (cpus x NT_PRSTATUS + VMCOREINFO), PT_LOADs at `loads`.

    `loads` = [(paddr, npages)]; `page_contents` = {pfn: bytes}; other pages are zero.
    """
    notes = b"".join(note(b"CORE", 1, b"\0" * 336) for _ in range(cpus))
    notes += note(b"VMCOREINFO", 0, b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n")
    phnum = 1 + len(loads)
    off = 64 + 56 * phnum
    ph = [struct.pack("<IIQQQQQQ", 4, 0, off, 0, 0, len(notes), len(notes), 0)]
    data_off = (off + len(notes) + PAGE - 1) // PAGE * PAGE
    body = []
    for paddr, npages in loads:
        size = npages * PAGE
        ph.append(struct.pack("<IIQQQQQQ", 1, 7, data_off, 0xffff888000000000 + paddr, paddr,
                              size, size, 0))
        for i in range(npages):
            body.append((data_off + i * PAGE, page_contents.get(paddr // PAGE + i, bytes(PAGE))))
        data_off += size
    ehdr = bytearray(64)
    ehdr[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<HHIQQQIHHHHHH", ehdr, 16, 4, 62, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(bytes(ehdr) + b"".join(ph))
        f.seek(off)
        f.write(notes)
        for pos, page in body:
            f.seek(pos)
            f.write(page)
        f.truncate(data_off)


@pytest.fixture
def core(tmp_path):
    # 24 pattern pages scattered over two RAM ranges (as a real allocation would be).
    pfns = [0x100 + 3 * i for i in range(12)] + [0x1000 + i for i in range(12)]
    records = list(enumerate(pfns))
    contents = {pfn: pattern.page_bytes(TAG, i) for i, pfn in records}
    path = str(tmp_path / "vmcore")
    make_core(path, [(0x100 * PAGE, 0x40), (0x1000 * PAGE, 0x20)], contents)
    return path, records


def check(path, records, shift=0, tag=TAG):
    with open(path, "rb") as f:
        info = vmcore.describe_core(f)
        return pattern.check_pattern(f.fileno(), info["phdrs"], tag, records, shift=shift)


def test_intact_dump_passes(core):
    path, records = core
    s = check(path, records)
    assert (s["recorded"], s["checked"], s["matched"], s["mismatched"], s["missing"]) == (24, 24, 24, 0, 0)


def test_shifted_pfns_fail_every_page(core):
    path, records = core
    s = check(path, records, shift=1)
    assert s["checked"] == 24 and s["mismatched"] == 24 and s["matched"] == 0


def test_other_tag_fails(core):
    path, records = core
    assert check(path, records, tag=b"OTHERTAG")["mismatched"] == 24


def test_one_corrupted_byte_is_found(core):
    path, records = core
    index, pfn = records[5]
    with open(path, "rb") as f:
        info = vmcore.describe_core(f)
    off = pattern.translate(pattern.load_ranges(info["phdrs"]), pfn * PAGE)
    with open(path, "r+b") as f:
        f.seek(off + 4000)
        f.write(b"\xff")
    s = check(path, records)
    assert s["mismatched"] == 1 and s["examples"][0]["index"] == index


def test_uncovered_and_unrecorded_pages_are_missing(core):
    path, records = core
    records = records + [(24, 0x5000), (25, 0)]   # outside every PT_LOAD; never mapped
    s = check(path, records)
    assert s["missing"] == 2 and s["checked"] == 24 and s["mismatched"] == 0


def test_core_description(core):
    path, _ = core
    with open(path, "rb") as f:
        info = vmcore.describe_core(f)
    assert info["elf_class"] == 64 and info["e_type"] == "ET_CORE"
    assert info["nt_prstatus"] == 2
    assert info["note_counts"] == {"CORE/1": 2, "VMCOREINFO/0": 1}
    assert info["vmcoreinfo"]["OSRELEASE"] == "6.1.0-test"
    assert [p["type"] for p in info["phdrs"]] == ["PT_NOTE", "PT_LOAD", "PT_LOAD"]


def test_records_roundtrip(tmp_path):
    path = str(tmp_path / "pattern.txt")
    pattern.write_records(path, TAG, [(0, 5), (1, 9)])
    assert pattern.read_records(path) == (TAG, [(0, 5), (1, 9)])


def test_translate_needs_the_whole_page():
    ranges = [(0x1000, 0x1800, 0x10000)]
    assert pattern.translate(ranges, 0x1000) == 0x10000
    assert pattern.translate(ranges, 0x2000) is None


def test_pages_differ_by_index():
    assert pattern.page_bytes(TAG, 1) != pattern.page_bytes(TAG, 2)
    assert len(pattern.page_bytes(TAG, 7)) == PAGE


class OverflowedVmcore:
    """/proc/vmcore as kexec-tools' arm64 header leaves it: the size overflowed (seeking to
    the end fails), and reading old memory beyond the program headers is forbidden."""

    def __init__(self, path, headers_end):
        self.f, self.headers_end, self.reads = open(path, "rb"), headers_end, []

    def seek(self, offset, whence=0):
        if whence == os.SEEK_END:
            raise OSError(22, "Invalid argument")
        return self.f.seek(offset, whence)

    def tell(self):
        return self.f.tell()

    def read(self, n=-1):
        start = self.f.tell()
        data = self.f.read(n)
        self.reads.append((start, start + len(data)))
        return data

    def fileno(self):
        return self.f.fileno()


def test_core_description_when_the_size_overflowed(core):
    path, _ = core
    with open(path, "rb") as f:
        expected = vmcore.describe_core(f)
    head = open(path, "rb").read(64)
    phoff, = struct.unpack_from("<Q", head, 32)
    phentsize, phnum = struct.unpack_from("<HH", head, 54)
    notes = [p for p in expected["phdrs"] if p["type"] == "PT_NOTE"]
    wrapped = OverflowedVmcore(path, phoff + phnum * phentsize)
    assert vmcore.describe_core(wrapped) == expected
    allowed = [(0, wrapped.headers_end)] + [(p["offset"], p["offset"] + p["filesz"]) for p in notes]
    assert all(any(a <= s and e <= b for a, b in allowed) for s, e in wrapped.reads), wrapped.reads


def test_offsets_past_2_63_are_unreadable(core):
    """A PT_LOAD whose offset overflowed (after a bogus one) cannot be read: counted apart."""
    path, records = core
    with open(path, "rb") as f:
        phdrs = vmcore.describe_core(f)["phdrs"]
    high = [dict(p) for p in phdrs]
    for p in high:
        if p["type"] == "PT_LOAD" and p["paddr"] == 0x1000 * PAGE:
            p["offset"] += 1 << 63
    with open(path, "rb") as f:
        s = pattern.check_pattern(f.fileno(), high, TAG, records)
    assert (s["checked"], s["matched"], s["unreadable"], s["missing"]) == (12, 12, 12, 0)
