"""`pykexec vmcore save` on tiny synthetic dumps built here, independent of pykexec's code.

The dump is an x86_64 ELF64 vmcore of 16 MiB (4096 pages) with a VMCOREINFO note of a 6.1
kernel, a SPARSEMEM_EXTREME mem_section (root array -> section entries -> struct page
array, all in the direct map) and struct pages laid out by hand: a free buddy block, page
cache (private and not), anonymous pages, a hugetlb compound page, zero pages, short runs
(written anyway) and a trailing run (dropped). The expected pages per dump level come from
that layout and makedumpfile's documented rules, computed here page by page; the checker
(tests/vmcore_check.py, its own ELF reader) proves the output byte for byte.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from tests.vmcore_check import check_saved, loads, page_table

PAGE = 4096
NPAGES = 4096
PAGE_OFFSET = 0xFFFF888000000000
SIZE_PAGE = 64
PG_LRU, PG_PRIVATE, PG_SWAPCACHE, PG_SWAPBACKED, PG_SLAB, PG_HWPOISON = 4, 13, 10, 19, 9, 23
PG_HEAD = 16
BUDDY = -129
HUGETLB_DTOR = 2
SECTION_SIZE_BITS = 27
MAX_PHYSMEM_BITS = 46
SIZE_MEM_SECTION = 16

ROOT_PFN = 1          # mem_section root array (pointers)
SECTIONS_PFN = 2      # the first root's mem_section entries
MEM_MAP_PFN = 16      # struct page array: 4096 * 64 bytes = 64 pages

# (first pfn, count, kind); the rest of the pages are kernel data (kept, non-zero)
LAYOUT = [
    (512, 512, "free-block"),        # one order-9 buddy block
    (1024, 300, "cache"),
    (1536, 300, "cache-private"),
    (2048, 300, "anon"),
    (2560, 512, "hugetlb"),          # one order-9 compound page, hugetlb destructor
    (3072, 300, "zero"),
    (3500, 10, "free-single"),       # ten order-0 free pages: a run too short to leave out
    (3600, 260, "hwpoison"),         # left out at every level
    (4000, 96, "zero-tail"),         # zero pages up to the end: a trailing run, dropped
]
REASON = {"free-block": "free", "free-single": "free", "cache": "cache",
          "cache-private": "cache_private", "anon": "user", "hugetlb": "user",
          "zero": "zero", "zero-tail": "zero", "hwpoison": "hwpoison"}
LEVEL_BITS = {"zero": 1, "cache": 2, "cache_private": 4, "user": 8, "free": 16, "hwpoison": 0}


def kind_of(pfn):
    for first, count, kind in LAYOUT:
        if first <= pfn < first + count:
            return kind
    return "kernel"


def vmcoreinfo(mem_section_va):
    keys = {
        "OSRELEASE": "6.1.0-test", "PAGESIZE": PAGE,
        "SYMBOL(mem_section)": f"{mem_section_va:x}",
        "LENGTH(mem_section)": (1 << (MAX_PHYSMEM_BITS - SECTION_SIZE_BITS)) // (PAGE // SIZE_MEM_SECTION),
        "SIZE(mem_section)": SIZE_MEM_SECTION, "OFFSET(mem_section.section_mem_map)": 0,
        "NUMBER(SECTION_SIZE_BITS)": SECTION_SIZE_BITS, "NUMBER(MAX_PHYSMEM_BITS)": MAX_PHYSMEM_BITS,
        "SIZE(page)": SIZE_PAGE, "OFFSET(page.flags)": 0, "OFFSET(page._refcount)": 52,
        "OFFSET(page.mapping)": 24, "OFFSET(page.lru)": 8, "OFFSET(page._mapcount)": 48,
        "OFFSET(page.private)": 40, "OFFSET(page.compound_dtor)": 16,
        "OFFSET(page.compound_order)": 17, "OFFSET(page.compound_head)": 8,
        "LENGTH(zone.free_area)": 11,
        "NUMBER(PG_lru)": PG_LRU, "NUMBER(PG_private)": PG_PRIVATE,
        "NUMBER(PG_swapcache)": PG_SWAPCACHE, "NUMBER(PG_swapbacked)": PG_SWAPBACKED,
        "NUMBER(PG_slab)": PG_SLAB, "NUMBER(PG_hwpoison)": PG_HWPOISON,
        "NUMBER(PG_head_mask)": 1 << PG_HEAD,
        "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)": BUDDY, "NUMBER(HUGETLB_PAGE_DTOR)": HUGETLB_DTOR,
        "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)": -257,
    }
    return "".join(f"{k}={v}\n" for k, v in keys.items()).encode()


def struct_page(pfn, mem_map_va):
    kind = kind_of(pfn)
    flags, mapping, private, mapcount, head = 0, 0xFFFF888012340000, 0, -1, 0
    order = dtor = 0
    if kind == "kernel" or kind.startswith("zero"):
        mapping = 0
    if kind in ("free-block", "free-single"):
        mapping = 0
        if kind == "free-single" or pfn == 512:
            mapcount, private = BUDDY, 9 if kind == "free-block" else 0
    elif kind == "cache":
        flags = 1 << PG_LRU
    elif kind == "cache-private":
        flags = (1 << PG_LRU) | (1 << PG_PRIVATE)
    elif kind == "anon":
        flags, mapping = 1 << PG_LRU | 1 << PG_SWAPBACKED, 0xFFFF888055550001
    elif kind == "hugetlb":
        mapping = 0
        if pfn == 2560:
            flags = 1 << PG_HEAD
        else:
            head = (mem_map_va + 2560 * SIZE_PAGE) | 1
            if pfn == 2561:
                dtor, order = HUGETLB_DTOR, 9
    elif kind == "hwpoison":
        flags = 1 << PG_HWPOISON
    raw = bytearray(SIZE_PAGE)
    struct.pack_into("<Q", raw, 0, flags)
    struct.pack_into("<Q", raw, 8, head)
    struct.pack_into("<BB", raw, 16, dtor, order)
    struct.pack_into("<Q", raw, 24, mapping)
    struct.pack_into("<Q", raw, 40, private)
    struct.pack_into("<iI", raw, 48, mapcount, 1)
    return bytes(raw)


def build_memory():
    """The 16 MiB of 'physical memory': page contents and the kernel's mm structures."""
    mem = bytearray(NPAGES * PAGE)
    rng = np.random.default_rng(12)
    noise = rng.integers(1, 255, size=PAGE * NPAGES, dtype=np.uint8).tobytes()
    mem[:] = noise
    for first, count, kind in LAYOUT:
        if kind.startswith("zero"):
            mem[first * PAGE:(first + count) * PAGE] = bytes(count * PAGE)
    va = lambda pa: PAGE_OFFSET + pa  # noqa: E731
    mem_map_va = va(MEM_MAP_PFN * PAGE)       # section 0 starts at PFN 0: no offset to subtract
    root_va = va(ROOT_PFN * PAGE)
    mem[ROOT_PFN * PAGE:(ROOT_PFN + 1) * PAGE] = bytes(PAGE)
    struct.pack_into("<Q", mem, ROOT_PFN * PAGE, va(SECTIONS_PFN * PAGE))
    mem[SECTIONS_PFN * PAGE:(SECTIONS_PFN + 1) * PAGE] = bytes(PAGE)
    # present | has mem_map | online | early
    struct.pack_into("<Q", mem, SECTIONS_PFN * PAGE, mem_map_va | 0xF)
    pages = b"".join(struct_page(pfn, mem_map_va) for pfn in range(NPAGES))
    mem[MEM_MAP_PFN * PAGE:MEM_MAP_PFN * PAGE + len(pages)] = pages
    return bytes(mem), root_va


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


def write_vmcore(path, info=True, elf_class=2, note_lie=False, load_past_end=False,
                 text_load=False):
    """The dump file; `text_load` adds a kernel-text PT_LOAD inside the RAM one (as x86_64's
    /proc/vmcore has), before the struct pages."""
    mem, root_va = build_memory()
    prstatus = bytes(336)
    notes = note(b"CORE", 1, prstatus)
    if info:
        notes += note(b"VMCOREINFO", 0, vmcoreinfo(root_va))
    if note_lie:
        notes = notes[:4] + struct.pack("<I", 1 << 20) + notes[8:]
    phnum = 3 if text_load else 2
    data_off = PAGE * 2
    ehdr = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", elf_class, 1, 1, 0, 0, bytes(7),
                       4, 62, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    filesz = len(mem) + (PAGE if load_past_end else 0)
    ph_note = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56 * phnum, 0, 0, len(notes), len(notes), 0)
    ph_load = struct.pack("<IIQQQQQQ", 1, 7, data_off, PAGE_OFFSET, 0, filesz, filesz, 0)
    if text_load:
        ph_load += struct.pack("<IIQQQQQQ", 1, 7, data_off + 8 * PAGE, 0xFFFFFFFF81000000,
                               8 * PAGE, 4 * PAGE, 4 * PAGE, 0)
    head = ehdr + ph_note + ph_load + notes
    assert len(head) <= data_off
    with open(path, "wb") as f:
        f.write(head + bytes(data_off - len(head)) + mem)
    return path


def expected_dropped(level: int) -> dict:
    """PFN -> reason for the pages `level` leaves out of the file, by the rules: classed
    pages whose bit is in the level (hwpoison always), then runs under 256 pages between
    or before kept pages are written anyway, a trailing run is dropped whatever its size."""
    out = {}
    for pfn in range(NPAGES):
        kind = kind_of(pfn)
        if kind == "kernel":
            continue
        reason = REASON[kind]
        if reason == "hwpoison" or level & LEVEL_BITS[reason]:
            out[pfn] = reason
        elif reason == "cache" and level & LEVEL_BITS["cache_private"]:
            out[pfn] = reason           # bit 4 leaves out all cache, private or not
    dropped, run = {}, []
    for pfn in range(NPAGES):
        if pfn in out:
            run.append(pfn)
            continue
        if len(run) >= 256:
            dropped.update({p: out[p] for p in run})
        run = []
    dropped.update({p: out[p] for p in run})    # the trailing run
    return dropped


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_vmcore(str(tmp_path_factory.mktemp("vmcore") / "vmcore"))


def run_save(*args):
    return subprocess.run([sys.executable, "-m", "pykexec", "vmcore", "save", *map(str, args)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("level", [0, 1, 2, 4, 8, 16, 17, 31])
def test_saved_pages_are_exactly_those_the_level_keeps(source, tmp_path, level):
    out = tmp_path / "saved"
    p = run_save("-d", level, out, source)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    want = expected_dropped(level)
    rep = check_saved(source, str(out), may_drop=want)
    assert rep.ok, rep.problems
    missing = set(page_table(source)) - set(page_table(str(out)))
    assert missing == set(want), (sorted(missing ^ set(want))[:20])
    assert rep.identical == NPAGES - len(want)


def test_kernel_text_load_inside_ram(tmp_path):
    """A PT_LOAD inside another (kernel text in RAM) hides neither the struct pages nor a page."""
    source = write_vmcore(str(tmp_path / "vmcore"), text_load=True)
    out = tmp_path / "saved"
    p = run_save("-d", 31, "-v", out, source)
    assert p.returncode == 0, p.stderr
    assert "struct page" not in p.stderr        # every page was classified
    rep = check_saved(source, str(out), may_drop=expected_dropped(31))
    assert rep.ok, rep.problems
    text = [ld for ld in loads(str(out))
            if ld["vaddr"] >= 0xFFFFFFFF80000000]
    assert [(ld["paddr"], ld["filesz"]) for ld in text] == [(8 * PAGE, 4 * PAGE)]


def test_level_31_leaves_out_each_class(source, tmp_path):
    out = tmp_path / "saved"
    assert run_save("-d", 31, out, source).returncode == 0
    rep = check_saved(source, str(out), may_drop=expected_dropped(31))
    # 10 single free pages and nothing else kept from the classes (a short run)
    assert dict(rep.dropped) == {"free": 512, "cache": 300, "cache_private": 300, "user": 812,
                                 "zero": 396, "hwpoison": 260}
    assert os.path.getsize(out) < os.path.getsize(source) // 2


def test_checker_catches_a_changed_or_missing_page(source, tmp_path):
    """The checker is what the tests trust: it must fail on a wrong file."""
    out = tmp_path / "saved"
    assert run_save("-d", 1, out, source).returncode == 0
    table = page_table(str(out))
    with open(out, "r+b") as f:                     # one byte of a kept page
        f.seek(table[2000] + 7)
        b = f.read(1)
        f.seek(table[2000] + 7)
        f.write(bytes([b[0] ^ 1]))
    rep = check_saved(source, str(out), may_drop=expected_dropped(1))
    assert rep.problems == ["pfn 0x7d0: bytes differ"]
    # without the expectation, the left-out hwpoison pages (not zeros) are reported
    rep = check_saved(source, str(out), may_drop={}, max_problems=1000)
    assert rep.problems[0] == "pfn 0x7d0: bytes differ"
    assert [p.split()[1] for p in rep.problems[1:]] == [hex(p) for p in range(3600, 3860)]
    out2 = tmp_path / "saved31"
    assert run_save("-d", 31, out2, source).returncode == 0
    rep = check_saved(source, str(out2), may_drop=expected_dropped(1))
    assert any("neither zeros" in p for p in rep.problems)


def test_output_is_an_elf_vmcore_with_the_inputs_notes(source, tmp_path):
    from elftools.elf.elffile import ELFFile
    out = tmp_path / "saved"
    assert run_save("-d", 31, out, source).returncode == 0
    with open(source, "rb") as a, open(out, "rb") as b:
        ea, eb = ELFFile(a), ELFFile(b)
        assert (eb["e_type"], eb["e_machine"], eb.elfclass) == ("ET_CORE", "EM_X86_64", 64)
        assert eb["e_phoff"] == 64
        na = [s for s in ea.iter_segments() if s["p_type"] == "PT_NOTE"]
        nb = [s for s in eb.iter_segments() if s["p_type"] == "PT_NOTE"]
        assert [s.data() for s in na] == [s.data() for s in nb]
        for seg in eb.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                assert seg["p_vaddr"] - seg["p_paddr"] == PAGE_OFFSET
                assert seg["p_filesz"] == seg["p_memsz"] and seg["p_filesz"] % PAGE == 0


@pytest.mark.parametrize("case, message", [
    ("truncated", "truncated"),
    ("class", "ELF class 3"),
    ("noinfo", "no VMCOREINFO"),
    ("past-end", "past the end of the file"),
    ("note-lie", "PT_NOTE 0"),
    ("foreign", "not an ELF file"),
])
def test_hostile_input_one_line_and_no_output(tmp_path, case, message):
    path = tmp_path / "vmcore"
    if case == "truncated":
        write_vmcore(str(path))
        os.truncate(path, os.path.getsize(path) - 3 * PAGE)
    elif case == "class":
        write_vmcore(str(path), elf_class=3)
    elif case == "noinfo":
        write_vmcore(str(path), info=False)
    elif case == "past-end":
        write_vmcore(str(path), load_past_end=True)
    elif case == "note-lie":
        write_vmcore(str(path), note_lie=True)
    else:
        path.write_bytes(b"MZ" + bytes(4094))
    out = tmp_path / "out"
    p = run_save("-d", 31, out, path)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and str(path) in p.stderr and message in p.stderr, p.stderr
    assert sorted(os.listdir(tmp_path)) == ["vmcore"]      # no OUT, no temporary file


@pytest.mark.parametrize("case", ["missing-dir", "is-dir", "level"])
def test_bad_output_or_level_one_line(source, tmp_path, case):
    out = {"missing-dir": tmp_path / "no" / "out", "is-dir": tmp_path,
           "level": tmp_path / "out"}[case]
    args = ["-d", 32 if case == "level" else 31, out, source]
    p = run_save(*args)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert (str(out) if case != "level" else "-d 32") in p.stderr
    assert not (tmp_path / "out").exists()


def test_no_progress_bar_when_piped(source, tmp_path):
    p = run_save("-d", 31, tmp_path / "out", source)
    assert p.returncode == 0 and p.stderr == "" and p.stdout == ""


def test_progress_bar_on_a_terminal(source, tmp_path):
    master, slave = os.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "pykexec", "vmcore", "save", "-d", "31",
                            str(tmp_path / "out"), source], stderr=slave,
                           stdout=subprocess.PIPE, timeout=120)
        os.close(slave)
        slave = -1
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0 and p.stdout == b""
    assert b"\rsaving [" in shown, shown[-200:]
    assert shown.rstrip().endswith(b"100%"), shown[-200:]


def test_unmappable_input_is_read_instead(source, tmp_path, monkeypatch):
    """/proc/vmcore of an old kernel cannot be mapped: the same pages come out through pread."""
    import mmap as mmap_module

    from pykexec.vmcore import save as save_module

    def refuse(*_args, **_kw):
        raise OSError(19, "no mmap")
    monkeypatch.setattr(save_module.mmap, "mmap", refuse)
    assert mmap_module.mmap is refuse
    out = tmp_path / "saved"
    save_module.save_vmcore(source, str(out), 31)
    rep = check_saved(source, str(out), may_drop=expected_dropped(31))
    assert rep.ok, rep.problems
    assert set(page_table(source)) - set(page_table(str(out))) == set(expected_dropped(31))


@pytest.mark.parametrize("kernel_refuses", [["copy_file_range"], ["copy_file_range", "sendfile"]])
def test_copy_falls_back_when_the_kernel_cannot_copy(source, tmp_path, monkeypatch,
                                                     kernel_refuses):
    """/proc/vmcore is no regular file for copy_file_range (EXDEV), and sendfile may refuse
    it too (EINVAL): the same pages come out through the next way, then pread + pwrite."""
    import errno

    from pykexec.vmcore import save as save_module
    calls = {"copy_file_range": 0, "sendfile": 0}
    real = {name: getattr(os, name) for name in calls}

    def refusing(name, code):
        def call(*args, **kw):
            calls[name] += 1
            if name in kernel_refuses:
                raise OSError(code, os.strerror(code))
            return real[name](*args, **kw)
        return call
    monkeypatch.setattr(save_module.os, "copy_file_range", refusing("copy_file_range", errno.EXDEV))
    monkeypatch.setattr(save_module.os, "sendfile", refusing("sendfile", errno.EINVAL))
    out = tmp_path / "saved"
    save_module.save_vmcore(source, str(out), 31)
    rep = check_saved(source, str(out), may_drop=expected_dropped(31))
    assert rep.ok, rep.problems
    assert set(page_table(source)) - set(page_table(str(out))) == set(expected_dropped(31))
    # each refusing way was tried once, then left for the next (sendfile, or pread + pwrite)
    assert [calls[name] for name in kernel_refuses] == [1] * len(kernel_refuses)
    if "sendfile" not in kernel_refuses:
        assert calls["sendfile"] > 1


def test_a_failed_copy_is_one_error_and_no_output(source, tmp_path, monkeypatch):
    """A copy that fails in the background (a full disk) stops the save: the error names
    OUT, and neither OUT nor the temporary file is left."""
    import errno

    from pykexec.vmcore import save as save_module
    from pykexec.vmcore.error import VmcoreError

    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(save_module.os, "copy_file_range", full)
    out = tmp_path / "saved"
    with pytest.raises(VmcoreError) as caught:
        save_module.save_vmcore(source, str(out), 31)
    assert str(caught.value) == f"{out}: No space left on device"
    assert os.listdir(tmp_path) == []
