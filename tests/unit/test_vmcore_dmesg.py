"""`pykexec vmcore dmesg` on synthetic dumps whose logs are packed here from the kernel's
layouts (kernel/printk/printk_ringbuffer.h for 5.10+, struct printk_log for 3.5-5.9, the
plain log_buf before), with the VMCOREINFO entries those kernels write. The expected text
is written out by hand from vmcore-dmesg's documented format: "[%5lu.%06lu] " + text with
non-printable bytes as \\xNN, one line per record; the plain buffer as it is."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from pykexec.vmcore import Vmcore, VmcoreError
from pykexec.vmcore import dmesg
from tests.unit._vmcore import EM_386, EM_X86_64, Mem, core, note, prstatus_x86_64, vmcoreinfo

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PO64, PO32 = 0xFFFF888000000000, 0xC0000000
PRB_VAR, RING, DESCS, INFOS, DATA = 0x100, 0x200, 0x1000, 0x2000, 0x4000
DATA_BITS = 8                                   # a 256-byte text ring
COUNT_BITS = 3                                  # 8 descriptors

# struct layouts per pointer size: {name: offset}, sizes
LAYOUT = {
    8: dict(desc_ring=0, count_bits=0, descs=8, infos=16, head_id=24, tail_id=32,
            text_data_ring=48, size_bits=0, data=8, ring_size=88,
            state_var=0, text_blk_lpos=8, begin=0, next=8, desc_size=24),
    4: dict(desc_ring=0, count_bits=0, descs=4, infos=8, head_id=12, tail_id=16,
            text_data_ring=20, size_bits=0, data=4, ring_size=40,
            state_var=0, text_blk_lpos=4, begin=0, next=4, desc_size=12),
}
INFO_SIZE = 88                                  # printk_info: seq, ts_nsec, text_len,
#                                                 facility, flags:5/level:3, caller_id, dev_info


def prb_info(u):
    L = LAYOUT[u]
    return [("OSRELEASE", "6.1.0-synthetic"), ("PAGESIZE", "4096"),
            ("SYMBOL(prb)", f"{(PO64 if u == 8 else PO32) + PRB_VAR:x}"),
            ("SIZE(printk_ringbuffer)", str(L["ring_size"])),
            ("OFFSET(printk_ringbuffer.desc_ring)", str(L["desc_ring"])),
            ("OFFSET(printk_ringbuffer.text_data_ring)", str(L["text_data_ring"])),
            ("OFFSET(prb_desc_ring.count_bits)", str(L["count_bits"])),
            ("OFFSET(prb_desc_ring.descs)", str(L["descs"])),
            ("OFFSET(prb_desc_ring.infos)", str(L["infos"])),
            ("OFFSET(prb_desc_ring.head_id)", str(L["head_id"])),
            ("OFFSET(prb_desc_ring.tail_id)", str(L["tail_id"])),
            ("SIZE(prb_desc)", str(L["desc_size"])),
            ("OFFSET(prb_desc.state_var)", str(L["state_var"])),
            ("OFFSET(prb_desc.text_blk_lpos)", str(L["text_blk_lpos"])),
            ("OFFSET(prb_data_blk_lpos.begin)", str(L["begin"])),
            ("OFFSET(prb_data_blk_lpos.next)", str(L["next"])),
            ("SIZE(printk_info)", str(INFO_SIZE)),
            ("OFFSET(printk_info.seq)", "0"), ("OFFSET(printk_info.ts_nsec)", "8"),
            ("OFFSET(printk_info.text_len)", "16"), ("OFFSET(printk_info.caller_id)", "20"),
            ("OFFSET(prb_data_ring.size_bits)", str(L["size_bits"])),
            ("OFFSET(prb_data_ring.data)", str(L["data"])),
            ("OFFSET(atomic_long_t.counter)", "0")]


def align(n, u):
    return (n + u - 1) // u * u


class PrbBuilder:
    """A printk_ringbuffer in a Mem, records added one descriptor at a time."""

    def __init__(self, u):
        self.u = u
        self.L = LAYOUT[u]
        self.mem = Mem()
        po = PO64 if u == 8 else PO32
        self.po = po
        self.mem.add(0, 0x10000, vaddr=po)
        ulong = "<Q" if u == 8 else "<I"
        self.ulong = ulong
        L = self.L
        self.mem.put(PRB_VAR, struct.pack(ulong, po + RING))
        dr, tr = RING + L["desc_ring"], RING + L["text_data_ring"]
        self.mem.put(dr + L["count_bits"], struct.pack("<I", COUNT_BITS))
        self.mem.put(dr + L["descs"], struct.pack(ulong, po + DESCS))
        self.mem.put(dr + L["infos"], struct.pack(ulong, po + INFOS))
        self.mem.put(tr + L["size_bits"], struct.pack("<I", DATA_BITS))
        self.mem.put(tr + L["data"], struct.pack(ulong, po + DATA))

    def ids(self, tail, head):
        dr = RING + self.L["desc_ring"]
        self.mem.put(dr + self.L["tail_id"], struct.pack(self.ulong, tail))
        self.mem.put(dr + self.L["head_id"], struct.pack(self.ulong, head))

    def record(self, rid, state, begin, nxt, ts=0, text=b"", text_len=None, level=6,
               facility=0, caller=1, data_at=None, state_id=None):
        u, L = self.u, self.L
        slot = rid % (1 << COUNT_BITS)
        sv = (state << (8 * u - 2)) | (rid if state_id is None else state_id)
        d = DESCS + slot * L["desc_size"]
        self.mem.put(d + L["state_var"], struct.pack(self.ulong, sv))
        self.mem.put(d + L["text_blk_lpos"] + L["begin"], struct.pack(self.ulong, begin))
        self.mem.put(d + L["text_blk_lpos"] + L["next"], struct.pack(self.ulong, nxt))
        i = INFOS + slot * INFO_SIZE
        self.mem.put(i, struct.pack("<QQHBBI", rid, ts, len(text) if text_len is None else text_len,
                                    facility, level << 5, caller))
        if data_at is not None:            # the block: descriptor id, then the text
            self.mem.put(DATA + data_at, struct.pack(self.ulong, rid) + text)

    def file(self, tmp_path, info=None, machine=None, notes_before=()):
        machine = machine or (EM_X86_64 if self.u == 8 else EM_386)
        notes = [*notes_before, note("VMCOREINFO", 0, vmcoreinfo(info or prb_info(self.u)))]
        path = tmp_path / f"prb{self.u}"
        path.write_bytes(core(self.mem, notes, elfclass=64 if self.u == 8 else 32,
                              machine=machine))
        return path


def standard_prb(u):
    b = PrbBuilder(u)
    size = 1 << DATA_BITS
    b.ids(8, 14)
    # id 8: a plain record, on the ring's second lap (lpos 256 + 16)
    b.record(8, 2, size + 16, size + 16 + align(u + 10, u), ts=1_000_001_999,
             text=b"first line", data_at=16, caller=1)
    b.record(9, 0, 0, 0)                                       # reserved: skipped
    b.record(10, 1, 1, 1, ts=2_000_000_000)                    # committed, data-less
    t11 = b"tab\there \x01ctl \xe9 high"
    b.record(11, 2, 64, 64 + align(u + len(t11), u), ts=3_000_000_000, text=t11, data_at=64,
             level=3, facility=1)
    # id 12 wraps: begins at offset 240 of lap 2, its data at the start of lap 3
    t12 = b"wrapped record"
    b.record(12, 2, 2 * size + 240, 3 * size + align(u + len(t12), u), ts=123456789012345,
             text=t12, data_at=0, caller=0x80000001)
    # id 13: text_len says 100, the block holds 8 bytes after the id: 8 are printed
    b.record(13, 2, 128, 128 + align(u + 5, u), ts=5_000_000_000, text=b"trunc",
             text_len=100, data_at=128)
    b.record(14, 2, 0, 0, state_id=6)                           # another lap's id: skipped
    return b


EXPECTED_PRB = (b"[    1.000001] first line\n"
                b"[    2.000000] \n"
                b"[    3.000000] tab\there \\x01ctl \\xe9 high\n"
                b"[123456.789012] wrapped record\n"
                b"[    5.000000] trunc\\x00\\x00\\x00\n")


@pytest.mark.parametrize("u", [8, 4], ids=["x86_64-elf64", "i386-elf32"])
def test_prb_text(tmp_path, u):
    path = standard_prb(u).file(tmp_path)
    with Vmcore.open(str(path)) as d:
        assert dmesg.log_format(d) == "prb"
        assert dmesg.text(d) == EXPECTED_PRB


def test_prb_records_for_json(tmp_path):
    path = standard_prb(8).file(tmp_path)
    with Vmcore.open(str(path)) as d:
        recs = list(dmesg.records(d))
    assert [r.sequence for r in recs] == [8, 10, 11, 12, 13]
    assert recs[0].level == 6 and recs[0].caller() == "T1" and recs[0].ts_nsec == 1_000_001_999
    assert recs[2].level == 3 and recs[2].facility == 1
    assert recs[3].caller() == "C1"


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "pykexec", "vmcore", *args],
                          capture_output=True, env=env, timeout=60)


def test_cli_dmesg_and_json(tmp_path):
    path = standard_prb(8).file(tmp_path)
    p = run_cli("dmesg", str(path))
    assert p.returncode == 0 and p.stdout == EXPECTED_PRB and p.stderr == b""
    p = run_cli("dmesg", "--json", str(path))
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["sequence"] for r in rows] == [8, 10, 11, 12, 13]
    assert rows[0] == {"sequence": 8, "timestamp": 1.000001999, "ts_nsec": 1000001999,
                       "level": 6, "facility": 0, "caller_id": 1, "caller": "T1",
                       "text": "first line"}


# --- hostile prb ------------------------------------------------------------------------

def one_line_error(tmp_path, path, *needles):
    p = run_cli("dmesg", str(path))
    err = p.stderr.decode()
    assert p.returncode == 1 and p.stdout == b"", err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"pykexec vmcore dmesg: {path}: "), err
    for needle in needles:
        assert needle in err, err


def test_prb_huge_count(tmp_path):
    b = standard_prb(8)
    b.mem.put(RING + b.L["count_bits"], struct.pack("<I", 40))
    one_line_error(tmp_path, b.file(tmp_path), "count_bits 40")


def test_prb_tail_to_head_loop(tmp_path):
    b = standard_prb(8)
    b.ids(0, 1 << 40)                   # 2^40 ids to walk: refused, not looped over
    one_line_error(tmp_path, b.file(tmp_path), "spans", "more than its 8 descriptors")


def test_prb_pointer_outside_the_dump(tmp_path):
    b = standard_prb(8)
    b.mem.put(RING + b.L["descs"], struct.pack("<Q", PO64 + 0x100000))
    one_line_error(tmp_path, b.file(tmp_path), "0xffff888000100000 is not mapped in the dump")


def test_missing_vmcoreinfo(tmp_path):
    mem = Mem()
    mem.add(0, 0x1000)
    path = tmp_path / "noinfo"
    path.write_bytes(core(mem, [note("CORE", 1, prstatus_x86_64(0, {}))]))
    one_line_error(tmp_path, path, "no VMCOREINFO note")


def test_missing_log_symbols(tmp_path):
    path = standard_prb(8).file(tmp_path, info=[("OSRELEASE", "2.6.0")])
    one_line_error(tmp_path, path, "VMCOREINFO has no SYMBOL(log_buf)")


# --- 3.5-5.9: struct printk_log -----------------------------------------------------------

LOG_BUF, LOG_LEN = 0x4000, 256
HDR = 16            # printk_log: u64 ts_nsec, u16 len, u16 text_len, u16 dict_len,
#                     u8 facility, u8 flags:5/level:3


def structured(tmp_path, first, nxt, records, name="log"):
    mem = Mem()
    mem.add(0, 0x10000, vaddr=PO64)
    mem.put(0x100, struct.pack("<Q", PO64 + LOG_BUF))
    mem.put(0x108, struct.pack("<I", LOG_LEN))
    mem.put(0x110, struct.pack("<II", first, nxt))
    for at, ts, text, dict_, rec_len, level in records:
        mem.put(LOG_BUF + at, struct.pack("<QHHHBB", ts, rec_len, len(text), len(dict_), 0,
                                          level << 5) + text + dict_)
    info = [("OSRELEASE", "5.4.0-synthetic"),
            ("SYMBOL(log_buf)", f"{PO64 + 0x100:x}"), ("SYMBOL(log_buf_len)", f"{PO64 + 0x108:x}"),
            ("SYMBOL(log_first_idx)", f"{PO64 + 0x110:x}"),
            ("SYMBOL(log_next_idx)", f"{PO64 + 0x114:x}"),
            ("SIZE(printk_log)", str(HDR)), ("OFFSET(printk_log.ts_nsec)", "0"),
            ("OFFSET(printk_log.len)", "8"), ("OFFSET(printk_log.text_len)", "10")]
    path = tmp_path / name
    path.write_bytes(core(mem, [note("VMCOREINFO", 0, vmcoreinfo(info))]))
    return path


def test_structured_with_wrap_marker(tmp_path):
    path = structured(tmp_path, 160, 40, [
        (160, 7_000_007_000, b"third", b"", 24, 6),
        (184, 0, b"", b"", 0, 0),                               # the wrap marker (zeros)
        (0, 8_500_000_999, b"after wrap \x7f", b"KEY=v", 40, 4),
    ])
    with Vmcore.open(str(path)) as d:
        assert dmesg.log_format(d) == "structured"
        # vmcore-dmesg prints the marker as an empty record and never prints dicts
        assert dmesg.text(d) == (b"[    7.000007] third\n[    0.000000] \n"
                                 b"[    8.500000] after wrap \\x7f\n")
        recs = [r for r in dmesg.records(d) if r.committed]
        assert [(r.level, r.text) for r in recs] == [(6, b"third"), (4, b"after wrap \x7f")]


def test_structured_index_loop(tmp_path):
    # next_idx 8 is never a record boundary: record 0 (len 24) then zeros (wrap to 0) ...
    path = structured(tmp_path, 0, 8, [(0, 1, b"loop", b"", 24, 6)])
    one_line_error(tmp_path, path, "never reach log_next_idx")


# --- before 3.5: the plain buffer ---------------------------------------------------------

def plain(tmp_path, raw, log_end):
    mem = Mem()
    mem.add(0, 0x10000, vaddr=PO32)
    mem.put(0x100, struct.pack("<I", PO32 + 0x4000))
    mem.put(0x104, struct.pack("<IiI", log_end, len(raw), min(log_end, len(raw))))
    mem.put(0x4000, raw)
    info = [("OSRELEASE", "2.6.32-synthetic"), ("SYMBOL(log_buf)", f"{PO32 + 0x100:x}"),
            ("SYMBOL(log_end)", f"{PO32 + 0x104:x}"), ("SYMBOL(log_buf_len)", f"{PO32 + 0x108:x}"),
            ("SYMBOL(logged_chars)", f"{PO32 + 0x10c:x}")]
    path = tmp_path / "plain"
    path.write_bytes(core(mem, [note("VMCOREINFO", 0, vmcoreinfo(info))], elfclass=32,
                          machine=EM_386))
    return path


def test_plain_wrapped_buffer(tmp_path):
    body = b"<6>first line\n<4>[    1.500000] second line\n"
    ordered = b"t" * (63 - len(body)) + b"\n" + body   # the oldest line, cut by the wrap
    raw = ordered[54:] + ordered[:54]           # log_end 74 wrapped: the oldest byte at 10
    with Vmcore.open(str(plain(tmp_path, raw, 64 + 10))) as d:
        assert dmesg.log_format(d) == "plain"
        assert dmesg.text(d) == ordered
        recs = list(dmesg.records(d))
        assert [(r.level, r.ts_nsec, r.text) for r in recs] == [
            (None, None, b"t" * (63 - len(body))), (6, None, b"first line"),
            (4, 1_500_000_000, b"second line")]


def test_plain_not_yet_wrapped(tmp_path):
    raw = b"<6>early boot\n<6>more".ljust(64, b"\0")
    with Vmcore.open(str(plain(tmp_path, raw, 20))) as d:
        assert dmesg.text(d) == raw[:20]


def test_bad_dump_raises(tmp_path):
    b = standard_prb(8)
    b.mem.put(RING + b.L["size_bits"] + b.L["text_data_ring"], struct.pack("<I", 60))
    with Vmcore.open(str(b.file(tmp_path))) as d, pytest.raises(VmcoreError, match="size_bits 60"):
        dmesg.text(d)
