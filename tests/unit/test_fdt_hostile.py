"""The FDT reader against dtc both ways on random trees, and against hostile DTBs.

Both ways: a random tree written as .dts source, compiled by dtc, reads as that tree and
repacks to dtc's bytes; the same tree packed by us reads in dtc (`-I dtb -O dts`) exactly
as dtc reads the source (`-I dts -O dts`). Hostile: any truncation, overwritten header
field, or byte change of a real DTB, and hand-made damage (loops of overlapping blocks,
nesting, names and lengths out of bounds, big inputs) give a tree or one FdtError line
naming the source, and boot_dtb the same; the big inputs are sized so that anything
slower than linear would not finish.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykexec.arch.arm64.dtb import boot_dtb
from pykexec.arch.arm64.fdt import (FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_NOP, FDT_PROP,
                                    MAX_DEPTH, MAX_NAME, Fdt, FdtError, FdtHeader, Node)
from tests.conftest import require

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
SOURCE = "machine.dtb"


def dtc(data: bytes, src: str, dst: str) -> bytes:
    require(shutil.which("dtc"), "dtc is missing (apt-get install device-tree-compiler)")
    proc = subprocess.run(["dtc", "-q", "-f", "-I", src, "-O", dst, "-"], input=data,
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


# --- dtc both ways ----------------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789,._+-", min_size=1, max_size=10)
values = st.one_of(st.binary(max_size=20),
                   st.lists(st.integers(0, 2**32 - 1), max_size=4).map(
                       lambda cs: b"".join(c.to_bytes(4, "big") for c in cs)),
                   st.text(alphabet="abc xyz=/", min_size=1, max_size=12).map(
                       lambda s: s.encode() + b"\0"))


@st.composite
def trees(draw, depth=0):
    node = Node(draw(names) if depth else "")
    for prop in draw(st.lists(names, max_size=4, unique=True)):
        node.properties[prop] = draw(values)
    if depth < 3:
        for name in draw(st.lists(names, max_size=3, unique=True)):
            child = draw(trees(depth=depth + 1))
            child.name = name
            node.children.append(child)
    return node


def as_source(root: Node) -> str:
    """The tree as .dts text, every value as a byte string (no guessing by the writer)."""
    def node(n: Node, indent: str) -> str:
        body = "".join(f"{indent}  {p} = [{v.hex(' ')}];\n" if v else f"{indent}  {p};\n"
                       for p, v in n.properties.items())
        body += "".join(node(c, indent + "  ") for c in n.children)
        return f"{indent}{n.name or '/'} {{\n{body}{indent}}};\n"
    return "/dts-v1/;\n" + node(root, "")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_both_ways_through_dtc(root):
    source = as_source(root).encode()
    theirs = dtc(source, "dts", "dtb")
    # dtc writes, we read: the tree of the source, and dtc's bytes when packed again
    parsed = Fdt.parse(theirs, "dtc's")
    assert parsed == Fdt(root=root)
    assert parsed.pack() == theirs
    # we write, dtc reads: the same text as dtc's reading of its own binary (its dts
    # output keeps the source's [bytes] spelling, so the binary is the common ground)
    ours = Fdt(root=root).pack()
    assert dtc(ours, "dtb", "dts") == dtc(theirs, "dtb", "dts")
    assert ours == theirs          # dtc's layout and strings block, built from scratch


# --- hostile input ------------------------------------------------------------------------------

def machine_dtb() -> bytes:
    path = SNAPSHOTS / "qemu-arm64-2g-2cpu/sys/firmware/fdt"
    require(path.is_file(), f"{path} is missing")
    return Fdt.parse(path.read_bytes()).pack()        # tight: 7 KiB, not QEMU's 1 MiB


def one_line_or_tree(data: bytes) -> None:
    """A tree (and a boot DTB from it), or one FdtError line naming the source."""
    try:
        Fdt.parse(data, SOURCE)
        boot_dtb(data, SOURCE, cmdline="console=ttyAMA0", initrd=(0x1000, 0x2000),
                 elfcorehdr=(0x3000, 0x400), usable_memory=((0, 1 << 28),),
                 random_bytes=lambda n: bytes(n))
    except FdtError as e:
        assert str(e).startswith(SOURCE + ": ") and "\n" not in str(e), str(e)


HEADER_FIELDS = [f.name for f in FdtHeader.subcons if f.name != "magic"]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_damaged_real_tree(data):
    base = bytearray(machine_dtb())
    how = data.draw(st.sampled_from(["truncate", "header", "bytes", "word"]))
    if how == "truncate":
        base = base[:data.draw(st.integers(0, len(base) - 1))]
    elif how == "header":
        field = data.draw(st.sampled_from(HEADER_FIELDS))
        at = 4 * ([f.name for f in FdtHeader.subcons].index(field))
        base[at:at + 4] = data.draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    elif how == "bytes":
        for _ in range(data.draw(st.integers(1, 8))):
            base[data.draw(st.integers(0, len(base) - 1))] = data.draw(st.integers(0, 255))
    else:   # a structure word replaced by a token or a huge length
        off = struct.unpack_from(">I", base, 8)[0]
        at = off + 4 * data.draw(st.integers(0, (struct.unpack_from(">I", base, 36)[0] - 4) // 4))
        word = data.draw(st.sampled_from([FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP,
                                          FDT_END, 0xFFFFFFFF, 0x7FFFFFFF]))
        base[at:at + 4] = word.to_bytes(4, "big")
    one_line_or_tree(bytes(base))


def build(structure: bytes, strings: bytes = b"", *, struct_at=None, strings_at=None,
          totalsize=None, version=17, rsvmap_at=40) -> bytes:
    """A DTB around hand-made blocks (header fields overridable to make them lie)."""
    rsv = bytes(16)
    s_at = 40 + len(rsv) if struct_at is None else struct_at
    str_at = 40 + len(rsv) + len(structure) if strings_at is None else strings_at
    body = rsv + structure + strings
    total = 40 + len(body) if totalsize is None else totalsize
    head = FdtHeader.build(dict(totalsize=total, off_dt_struct=s_at, off_dt_strings=str_at,
                                off_mem_rsvmap=rsvmap_at, version=version, last_comp_version=16,
                                boot_cpuid_phys=0, size_dt_strings=len(strings),
                                size_dt_struct=len(structure)))
    return head + body


def word(*values) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in values)


def begin(name: str) -> bytes:
    raw = name.encode() + b"\0"
    return word(FDT_BEGIN_NODE) + raw + bytes(-len(raw) % 4)


def prop(nameoff: int, value: bytes) -> bytes:
    return word(FDT_PROP, len(value), nameoff) + value + bytes(-len(value) % 4)


CHOSEN = begin("") + begin("chosen") + prop(0, b"x\0") + word(FDT_END_NODE, FDT_END_NODE, FDT_END)


@pytest.mark.parametrize("data, message", [
    (build(CHOSEN, b"bootargs\0", version=1), "device tree version 1"),
    (build(CHOSEN, b"bootargs\0", totalsize=1 << 20), "header says 1048576 bytes"),
    (build(CHOSEN, b"bootargs\0", struct_at=8), "structure block 0x8"),
    (build(CHOSEN, b"bootargs\0", strings_at=0x7FFFFFF0), "strings block 0x7ffffff0"),
    (build(CHOSEN, b"bootargs"), "property name offset 0x0 lies outside"),
    (build(CHOSEN, b"bootargs\0", rsvmap_at=0), "reservation map at 0x0 lies inside the header"),
    (build(CHOSEN, b"bootargs\0", rsvmap_at=36), "reservation map at 0x24 lies inside the header"),
    (build(CHOSEN, b"bootargs\0", rsvmap_at=1 << 20), "reservation map has no end entry"),
    (build(CHOSEN[:-4] + word(FDT_NOP), b"bootargs\0"), "ends without FDT_END"),
    (build(begin("") + word(FDT_END), b""), "FDT_END inside an open node"),
    (build(begin("") + word(FDT_END_NODE, FDT_END_NODE, FDT_END)), "FDT_END_NODE without a node"),
    (build(begin("") + word(FDT_END_NODE) + begin("") + word(FDT_END_NODE, FDT_END)),
     "a second root node"),
    (build(word(FDT_PROP, 0, 0, FDT_END), b"a\0"), "a property outside any node"),
    (build(begin("") + word(FDT_PROP, 0xFFFFFFF0, 0, FDT_END_NODE, FDT_END), b"a\0"),
     "bad token at structure offset 0x8"),
    (build(begin("") + word(7), b""), "unknown token 0x7"),
    (build(word(FDT_NOP) + CHOSEN, b"bootargs\0"), "FDT_NOP before the root node"),
    (build(begin("") + prop(0, b"") + word(FDT_END_NODE, FDT_END), b"n" * (MAX_NAME + 1) + b"\0"),
     f"longer than {MAX_NAME} bytes"),
    (build(begin("") + b"".join(begin(f"n{i}") for i in range(MAX_DEPTH))
           + word(*[FDT_END_NODE] * (MAX_DEPTH + 1), FDT_END)),
     f"nested deeper than {MAX_DEPTH} levels"),
])
def test_hand_made_damage(data, message):
    with pytest.raises(FdtError, match=message) as e:
        Fdt.parse(data, SOURCE)
    assert str(e.value).startswith(SOURCE + ": ") and "\n" not in str(e.value)
    one_line_or_tree(data)


def test_blocks_that_overlap_read_once():
    """The strings block inside the structure block (or both the same bytes): read as
    they say, each byte once; never a loop."""
    strings = b"bootargs\0"
    structure = CHOSEN + strings
    data = build(structure, b"", strings_at=40 + 16 + len(CHOSEN))
    head = bytearray(data)
    struct.pack_into(">I", head, 32, len(strings))           # size_dt_strings
    fdt = Fdt.parse(bytes(head), SOURCE)
    assert fdt.get("/chosen", "bootargs") == b"x\0"


def test_big_hostile_inputs_finish():
    """Inputs that are slow for a quadratic reader: 100,000 properties whose names start
    at every offset of a long name, 200,000 NOPs, a 64-deep tree, many siblings."""
    names = b"a" * (MAX_NAME - 1) + b"\0"
    many = begin("") + b"".join(prop(i % (MAX_NAME - 1), b"") for i in range(100_000))
    fdt = Fdt.parse(build(many + word(FDT_END_NODE, FDT_END), names), SOURCE)
    assert len(fdt.root.properties) == MAX_NAME - 1
    nops = begin("") + word(*[FDT_NOP] * 200_000) + word(FDT_END_NODE, FDT_END)
    fdt = Fdt.parse(build(nops), SOURCE)
    assert fdt.root.nops == {("end", ""): 200_000}
    assert Fdt.parse(fdt.pack(), SOURCE) == fdt
    deep = begin("") + b"".join(begin(f"n{i}") for i in range(MAX_DEPTH - 1)) \
        + word(*[FDT_END_NODE] * MAX_DEPTH, FDT_END)
    fdt = Fdt.parse(build(deep), SOURCE)
    assert Fdt.parse(fdt.pack(), SOURCE) == fdt
    wide = begin("") + b"".join(begin(f"n{i}") + word(FDT_END_NODE) for i in range(50_000)) \
        + word(FDT_END_NODE, FDT_END)
    fdt = Fdt.parse(build(wide), SOURCE)
    assert len(fdt.root.children) == 50_000
