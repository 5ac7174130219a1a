"""The kernel log kept in a vmcore, in the three formats printk has used, found through
VMCOREINFO the way kexec-tools' vmcore-dmesg finds it:

- the lockless ring buffer (5.10+): SYMBOL(prb) points at a struct printk_ringbuffer; its
  descriptor ring (descs + infos, 2^count_bits of each) and text data ring (2^size_bits
  bytes) are described by the SIZE()/OFFSET() entries of printk_ringbuffer, prb_desc_ring,
  prb_desc, prb_data_blk_lpos, prb_data_ring, printk_info and atomic_long_t;
- structured records (3.5-5.9): SYMBOL(log_buf) (a pointer), log_first_idx, log_next_idx
  and SIZE(printk_log) + OFFSET(printk_log.ts_nsec/len/text_len) (or the older `log` names);
- the plain character buffer before that: log_buf, log_end, log_buf_len, logged_chars.

`write_text(dump, out)` writes exactly what vmcore-dmesg prints: each record as
"[%5lu.%06lu] " + text + "\\n", bytes that are neither printable ASCII nor whitespace as
\\xNN; for the plain buffer, its bytes as they are. `records(dump)` gives `Record`s for
--json. Level and facility are not in VMCOREINFO: they are read from the byte after
text_len's u16 (facility) and the next one (flags:5, level:3), the layout printk_info and
printk_log have had since 3.5. Corrupt structures (a count that would not fit in the dump,
a tail..head span longer than the ring, an index loop) raise VmcoreError.
"""

from __future__ import annotations

import re
import struct
from typing import Iterator, List, NamedTuple, Optional

from pykexec.vmcore.error import VmcoreError

FORMATS = ("prb", "structured", "plain")
CALLER_CPU_FLAG = 0x80000000        # printk caller_id: CPU number instead of a thread id
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\v\f\r"
_ESCAPE = [bytes([c]) if c in _PRINTABLE else b"\\x%02x" % c for c in range(256)]


class Record(NamedTuple):
    sequence: int
    ts_nsec: Optional[int]
    level: Optional[int]
    facility: Optional[int]
    caller_id: Optional[int]
    text: bytes
    committed: bool = True         # False: structured log's wrap marker (not a message)

    def caller(self) -> Optional[str]:
        """printk's caller as the kernel prints it: T<pid> or C<cpu>."""
        if self.caller_id is None:
            return None
        if self.caller_id & CALLER_CPU_FLAG:
            return f"C{self.caller_id & ~CALLER_CPU_FLAG}"
        return f"T{self.caller_id}"

    def as_json(self) -> dict:
        return {"sequence": self.sequence,
                "timestamp": None if self.ts_nsec is None else self.ts_nsec / 1e9,
                "ts_nsec": self.ts_nsec, "level": self.level, "facility": self.facility,
                "caller_id": self.caller_id, "caller": self.caller(),
                "text": self.text.decode("utf-8", "backslashreplace")}


def escape(text: bytes) -> bytes:
    return b"".join(_ESCAPE[c] for c in text) if text.translate(None, _PRINTABLE) else bytes(text)


def timestamp(ts_nsec: int) -> bytes:
    sec, rest = divmod(ts_nsec, 1_000_000_000)
    return b"[%5d.%06d] " % (sec, rest // 1000)


def log_format(dump) -> str:
    """Which format the dump's kernel used (vmcore-dmesg's order of checks)."""
    info = dump.need_info()
    if info.symbol("prb"):
        return "prb"
    if info.symbol("log_first_idx"):
        return "structured"
    return "plain"


def _ulong(data, offset: int, size: int) -> int:
    return struct.unpack_from("<Q" if size == 8 else "<I", data, offset)[0]


def _memory_bytes(dump) -> int:
    return sum(ld.memsz for ld in dump.loads)


# ---------------------------------------------------------------------------------------
# 5.10+: the lockless ring buffer

class _Prb:
    def __init__(self, dump):
        need = dump.need
        self.dump = dump
        self.ulong = dump.pointer_size
        prb = dump.read_ulong(need("symbol", "prb"))
        ring = bytes(dump.read_virt(prb, need("size", "printk_ringbuffer")))
        desc_ring = need("offset", "printk_ringbuffer.desc_ring")
        text_ring = need("offset", "printk_ringbuffer.text_data_ring")
        count_bits = struct.unpack_from("<I", ring, desc_ring + need("offset", "prb_desc_ring.count_bits"))[0]
        size_bits = struct.unpack_from("<I", ring, text_ring + need("offset", "prb_data_ring.size_bits"))[0]
        self.desc_size = need("size", "prb_desc")
        self.info_size = need("size", "printk_info")
        limit = _memory_bytes(dump)
        if count_bits >= 32 or (self.desc_size + self.info_size) << count_bits > limit:
            raise dump.error(f"printk ring buffer: count_bits {count_bits} gives more "
                             f"descriptors than the dump's memory holds (corrupt prb)")
        if size_bits >= 40 or 1 << size_bits > limit:
            raise dump.error(f"printk ring buffer: size_bits {size_bits} gives a text ring "
                             f"larger than the dump's memory (corrupt prb)")
        self.count = 1 << count_bits
        self.data_size = 1 << size_bits
        u = self.ulong
        descs_at = _ulong(ring, desc_ring + need("offset", "prb_desc_ring.descs"), u)
        infos_at = _ulong(ring, desc_ring + need("offset", "prb_desc_ring.infos"), u)
        data_at = _ulong(ring, text_ring + need("offset", "prb_data_ring.data"), u)
        counter = need("offset", "atomic_long_t.counter")
        self.tail = _ulong(ring, desc_ring + need("offset", "prb_desc_ring.tail_id") + counter, u)
        self.head = _ulong(ring, desc_ring + need("offset", "prb_desc_ring.head_id") + counter, u)
        self.descs = dump.read_virt(descs_at, self.desc_size * self.count)
        self.infos = dump.read_virt(infos_at, self.info_size * self.count)
        self.data = dump.read_virt(data_at, self.data_size)
        self.state_at = need("offset", "prb_desc.state_var") + counter
        lpos = need("offset", "prb_desc.text_blk_lpos")
        self.begin_at = lpos + need("offset", "prb_data_blk_lpos.begin")
        self.next_at = lpos + need("offset", "prb_data_blk_lpos.next")
        self.seq_at = need("offset", "printk_info.seq")
        self.ts_at = need("offset", "printk_info.ts_nsec")
        self.len_at = need("offset", "printk_info.text_len")
        info = dump.need_info()
        self.caller_at = info.offset("printk_info", "caller_id")
        bits = 8 * u
        self.flags_shift = bits - 2
        self.id_mask = (1 << self.flags_shift) - 1
        span = (self.head - self.tail) & self.id_mask
        if span >= self.count:
            raise dump.error(f"printk ring buffer: tail_id {self.tail:#x} to head_id "
                             f"{self.head:#x} spans {span + 1} records, more than its "
                             f"{self.count} descriptors (corrupt prb)")
        self.span = span

    def ids(self) -> Iterator[int]:
        for n in range(self.span + 1):
            yield (self.tail + n) & self.id_mask

    def record(self, rid: int) -> Optional[Record]:
        slot = rid % self.count
        desc = slot * self.desc_size
        info = slot * self.info_size
        u = self.ulong
        state = _ulong(self.descs, desc + self.state_at, u)
        if state & self.id_mask != rid or (state >> self.flags_shift) & 3 not in (1, 2):
            return None          # reserved, reusable or another lap's id: not a record
        begin = _ulong(self.descs, desc + self.begin_at, u) % self.data_size
        end = _ulong(self.descs, desc + self.next_at, u) % self.data_size
        infos = self.infos
        ts = struct.unpack_from("<Q", infos, info + self.ts_at)[0]
        seq = struct.unpack_from("<Q", infos, info + self.seq_at)[0]
        facility, flags_level = struct.unpack_from("<BB", infos, info + self.len_at + 2)
        caller = (struct.unpack_from("<I", infos, info + self.caller_at)[0]
                  if self.caller_at is not None else None)
        text = b""
        if begin != end:             # a data-less record still prints its timestamp
            length = struct.unpack_from("<H", infos, info + self.len_at)[0]
            if begin > end:          # the block wrapped: its data starts the ring
                begin = 0
            begin += u               # each data block starts with its descriptor id
            length = min(length, (end - begin) % (1 << 64), self.data_size - begin)
            text = bytes(self.data[begin:begin + max(length, 0)])
        return Record(seq, ts, flags_level >> 5, facility, caller, text)


def prb_records(dump) -> Iterator[Record]:
    ring = _Prb(dump)
    for rid in ring.ids():
        rec = ring.record(rid)
        if rec is not None:
            yield rec


# ---------------------------------------------------------------------------------------
# 3.5-5.9: struct printk_log records in log_buf

def _log_offset(info, member: str) -> Optional[int]:
    value = info.offset("printk_log", member)
    return value if value is not None else info.offset("log", member)


def structured_records(dump) -> Iterator[Record]:
    info = dump.need_info()
    need = dump.need
    header = info.size("printk_log") or info.size("log")
    if not header:
        raise dump.error("VMCOREINFO has no SIZE(printk_log) (nor the older SIZE(log))")
    offsets = {m: _log_offset(info, m) for m in ("ts_nsec", "len", "text_len")}
    for member, value in offsets.items():
        if value is None:
            raise dump.error(f"VMCOREINFO has no OFFSET(printk_log.{member})")
    buf_at = dump.read_ulong(need("symbol", "log_buf"))
    buf_len = dump.read_u32(need("symbol", "log_buf_len"))
    first = dump.read_u32(need("symbol", "log_first_idx"))
    nxt = dump.read_u32(need("symbol", "log_next_idx"))
    if buf_len > _memory_bytes(dump):
        raise dump.error(f"log_buf_len {buf_len} is larger than the dump's memory (corrupt)")
    buf = bytes(dump.read_virt(buf_at, buf_len))
    idx, seq = first, 0
    # every record has at least a header: more steps than that is a loop
    for _ in range(buf_len // max(header, 1) + 2):
        if idx == nxt:
            return
        if idx + header > buf_len:
            raise dump.error(f"log record index {idx:#x} is past log_buf_len {buf_len:#x} "
                             f"(corrupt log)")
        ts = struct.unpack_from("<Q", buf, idx + offsets["ts_nsec"])[0]
        text_len = struct.unpack_from("<H", buf, idx + offsets["text_len"])[0]
        rec_len = struct.unpack_from("<H", buf, idx + offsets["len"])[0]
        facility, flags_level = struct.unpack_from("<BB", buf, idx + offsets["text_len"] + 4)
        text = buf[idx + header:idx + header + text_len]
        if len(text) != text_len:
            raise dump.error(f"log record at index {idx:#x} runs past log_buf (corrupt log)")
        # a zero len is the wrap marker: vmcore-dmesg prints it too (an empty line)
        yield Record(seq, ts, flags_level >> 5, facility, None, text, committed=rec_len != 0)
        seq += 1
        idx = 0 if rec_len == 0 else idx + rec_len
    raise dump.error(f"log records from log_first_idx {first:#x} never reach log_next_idx "
                     f"{nxt:#x} (corrupt log)")


# ---------------------------------------------------------------------------------------
# before 3.5: a plain character ring

def plain_text(dump) -> bytes:
    need = dump.need
    buf_at = dump.read_ulong(need("symbol", "log_buf"))
    end = dump.read_u32(need("symbol", "log_end"))
    buf_len = struct.unpack("<i", struct.pack("<I", dump.read_u32(need("symbol", "log_buf_len"))))[0]
    need("symbol", "logged_chars")
    if buf_len <= 0 or buf_len > _memory_bytes(dump):
        raise dump.error(f"log_buf_len {buf_len} is not a buffer size (corrupt log)")
    raw = bytes(dump.read_virt(buf_at, buf_len))
    wrap = end % buf_len
    ordered = raw[wrap:] + raw[:wrap]
    logged = min(end, buf_len)
    return ordered[buf_len - logged:]


_PLAIN_LINE = re.compile(rb"^(?:<(\d+)>)?(?:\[\s*(\d+)\.(\d+)\] )?")


def plain_records(dump) -> Iterator[Record]:
    for seq, line in enumerate(plain_text(dump).split(b"\n")[:-1]):
        m = _PLAIN_LINE.match(line)
        prio = int(m.group(1)) if m.group(1) else None
        ts = (int(m.group(2)) * 1_000_000_000 + int(m.group(3).ljust(9, b"0")[:9])
              if m.group(2) else None)
        yield Record(seq, ts, None if prio is None else prio & 7,
                     None if prio is None else prio >> 3, None, line[m.end():])


# ---------------------------------------------------------------------------------------

def records(dump) -> Iterator[Record]:
    fmt = log_format(dump)
    if fmt == "prb":
        return prb_records(dump)
    if fmt == "structured":
        return structured_records(dump)
    return plain_records(dump)


def write_text(dump, out, batch: int = 256) -> str:
    """Write the log as vmcore-dmesg prints it to binary stream `out`; return the format."""
    fmt = log_format(dump)
    if fmt == "plain":
        out.write(plain_text(dump))
        return fmt
    pending: List[bytes] = []
    source = prb_records(dump) if fmt == "prb" else structured_records(dump)
    for rec in source:
        pending.append(timestamp(rec.ts_nsec) + escape(rec.text) + b"\n")
        if len(pending) >= batch:
            out.write(b"".join(pending))
            pending.clear()
    out.write(b"".join(pending))
    return fmt


def text(dump) -> bytes:
    import io
    buf = io.BytesIO()
    write_text(dump, buf)
    return buf.getvalue()
