"""pykexec.arch.arm64.fdt against Debian's dtc, fdtget, fdtput and fdtdump (the oracle).

Both ways: dtc compiles .dts sources to DTBs that we parse (every property compared with
what fdtget reads, and our re-pack byte-identical to dtc's); trees we build or edit are
packed and read back by `dtc -I dtb -O dts` and fdtdump, and our edits of QEMU's real
arm64 DTBs (tests/snapshots/qemu-arm64-*/sys/firmware/fdt) equal fdtput's same edits.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykexec.arch.arm64.fdt import (FDT_BEGIN_NODE, FDT_NOP, Fdt, FdtError, FdtHeader,
                                    Node, cells, decode_cells)
from tests.conftest import require

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
QEMU_DTBS = sorted(SNAPSHOTS.glob("qemu-arm64-*/sys/firmware/fdt"))

SOURCES = {
    "features": """/dts-v1/;
/memreserve/ 0x10000000 0x4000;
/memreserve/ 0x80000000 0x200000;
/ {
    #address-cells = <2>;
    #size-cells = <1>;
    compatible = "linux,dummy-virt", "arm,virt";
    ible = "suffix of compatible";
    model = "test";
    chosen {
        bootargs = "console=ttyAMA0 crashkernel=256M";
        empty-flag;
        bytes = [01 02 03];
        linux,initrd-start = <0x0 0x48000000>;
        mixed = "a", "bc";
    };
    memory@40000000 {
        device_type = "memory";
        reg = <0x0 0x40000000 0x80000000>;
    };
    cpus {
        #address-cells = <1>;
        #size-cells = <0>;
        cpu@0 { device_type = "cpu"; reg = <0>; };
        cpu@1 { device_type = "cpu"; reg = <1>; };
    };
    deep { a { b { c { leaf = <0xdeadbeef 0x1 0x2>; }; }; }; };
};
""",
    "empty-root": "/dts-v1/;\n/ { };\n",
    "odd-lengths": """/dts-v1/;
/ { p1 = [01]; p2 = [01 02]; p3 = [01 02 03]; p5 = [01 02 03 04 05]; s = "abcdefg";
    n { }; n2@1 { x; }; };
""",
}


def need_dtc():
    for tool in ("dtc", "fdtget", "fdtput", "fdtdump"):
        require(shutil.which(tool), f"{tool} is missing (apt-get install device-tree-compiler)")


def dtc(data: bytes, src: str, dst: str, force: bool = False) -> bytes:
    """dtc's conversion; `force`: write even a tree its checks reject (random names)."""
    proc = subprocess.run(["dtc", "-q", "-I", src, "-O", dst] + ["-f"] * force, input=data,
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def compile_dts(text: str) -> bytes:
    return dtc(text.encode(), "dts", "dtb")


def as_dts(dtb: bytes) -> str:
    return dtc(dtb, "dtb", "dts").decode()


def fdtget_bytes(dtb_path: Path, node: str, prop: str) -> bytes:
    out = subprocess.run(["fdtget", "-t", "bx", str(dtb_path), node, prop],
                         capture_output=True, text=True, check=True).stdout
    return bytes(int(x, 16) for x in out.split())


def fdtget_list(dtb_path: Path, flag: str, node: str):
    out = subprocess.run(["fdtget", flag, str(dtb_path), node], capture_output=True, text=True,
                         check=True).stdout
    return out.split()


@pytest.fixture(scope="module", autouse=True)
def _tools():
    need_dtc()


# --- dtc writes, we read -----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SOURCES))
def test_repack_of_dtc_output_is_byte_identical(name):
    dtb = compile_dts(SOURCES[name])
    assert Fdt.parse(dtb).pack() == dtb


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_property_as_fdtget_reads_it(name, tmp_path):
    dtb = compile_dts(SOURCES[name])
    path = tmp_path / "t.dtb"
    path.write_bytes(dtb)
    fdt = Fdt.parse(dtb)
    seen = 0
    for node_path, node in fdt.root.walk():
        assert fdtget_list(path, "-p", node_path) == list(node.properties)
        assert fdtget_list(path, "-l", node_path) == [c.name for c in node.children]
        for prop, value in node.properties.items():
            if value:       # fdtget -t bx prints nothing for an empty property
                assert fdtget_bytes(path, node_path, prop) == value, (node_path, prop)
            seen += 1
    assert seen == {"features": 19, "empty-root": 0, "odd-lengths": 6}[name]


def test_features_values():
    fdt = Fdt.parse(compile_dts(SOURCES["features"]))
    assert fdt.reserved == [(0x10000000, 0x4000), (0x80000000, 0x200000)]
    assert fdt.root_cells() == (2, 1)
    assert fdt.get_string("/chosen", "bootargs") == "console=ttyAMA0 crashkernel=256M"
    assert fdt.get("/chosen", "empty-flag") == b""
    assert fdt.get_cells("/chosen", "linux,initrd-start", 2) == [0x48000000]
    assert fdt.get_cells("/memory@40000000", "reg") == [0, 0x40000000, 0x80000000]
    assert fdt.get_cells("/memory", "reg") == [0, 0x40000000, 0x80000000]  # libfdt: no unit
    assert fdt.find("/cpus/cpu") is None                            # two match: ambiguous
    assert fdt.get_cells("/deep/a/b/c", "leaf") == [0xDEADBEEF, 1, 2]
    assert fdt.get("/nope", "x") is None and fdt.get("/chosen", "nope") is None


def test_nops_are_kept_in_place(tmp_path):
    """The kernel NOPs out a property it consumed (rng-seed) with FDT_NOP words where it
    was: the tree reads without it and packs with the NOPs in place (the same bytes), and
    a deletion leaves them where fdtput's (libfdt's) does."""
    data = bytearray(compile_dts(SOURCES["features"]))
    head = FdtHeader.parse(data)
    strings = data[head.off_dt_strings:head.off_dt_strings + head.size_dt_strings]
    prop = ((3).to_bytes(4, "big") + (3).to_bytes(4, "big")
            + strings.index(b"bytes\0").to_bytes(4, "big") + b"\1\2\3\0")
    at = data.index(prop, head.off_dt_struct)
    data[at:at + len(prop)] = FDT_NOP.to_bytes(4, "big") * 4
    data = bytes(data)
    fdt = Fdt.parse(data)
    assert "bytes" not in fdt.node("/chosen").properties
    assert fdt.node("/chosen").nops == {("prop", "linux,initrd-start"): 4}
    assert fdt.pack() == data
    path = tmp_path / "t.dtb"
    path.write_bytes(data)
    subprocess.run(["fdtput", "-d", str(path), "/chosen", "linux,initrd-start"], check=True)
    assert fdt.delete("/chosen", "linux,initrd-start")
    assert fdt.node("/chosen").nops == {("prop", "mixed"): 4}
    assert fdt.pack() == path.read_bytes()
    fdt.delete("/chosen", "mixed")                  # the last property: NOPs before the end
    assert fdt.node("/chosen").nops == {("end", ""): 4}
    assert as_dts(fdt.pack()).count("mixed") == 0


# --- we write, dtc reads -----------------------------------------------------------------------

def built_tree() -> Fdt:
    fdt = Fdt(reserved=[(0x48000000, 0x1000)], boot_cpuid_phys=1)
    fdt.set("/", "#address-cells", 2)
    fdt.set("/", "#size-cells", 2)
    fdt.set("/", "compatible", b"linux,dummy-virt\0")
    fdt.add_node("/chosen")
    fdt.set("/chosen", "bootargs", "console=ttyAMA0 reset_devices")
    fdt.set("/chosen", "linux,elfcorehdr", cells([0x7F000000, 0x10000], 2))
    fdt.set("/chosen", "linux,usable-memory-range", cells([0x60000000, 0x10000000], 2))
    fdt.add_node("/memory@40000000")
    fdt.set("/memory@40000000", "device_type", "memory")
    fdt.set("/memory@40000000", "reg", cells([0x40000000, 0x80000000], 2))
    fdt.set("/", "bytes", b"\x01\x02\x03")
    fdt.set("/", "flag", b"")
    return fdt


# libfdt's order: each new property first in its node, each new node first among its siblings.
EXPECTED_BUILT = """/dts-v1/;
/memreserve/ 0x48000000 0x1000;
/ {
    flag;
    bytes = [01 02 03];
    compatible = "linux,dummy-virt";
    #size-cells = <2>;
    #address-cells = <2>;
    memory@40000000 {
        reg = <0x0 0x40000000 0x0 0x80000000>;
        device_type = "memory";
    };
    chosen {
        linux,usable-memory-range = <0x0 0x60000000 0x0 0x10000000>;
        linux,elfcorehdr = <0x0 0x7f000000 0x0 0x10000>;
        bootargs = "console=ttyAMA0 reset_devices";
    };
};
"""


def test_built_tree_reads_back_in_dtc():
    mine = built_tree().pack()
    expected = dtc(EXPECTED_BUILT.encode(), "dts", "dts").decode()
    assert as_dts(mine) == expected
    # and dtc's own binary of the expected tree is ours byte for byte (boot cpu aside)
    theirs = subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-b", "1"],
                            input=EXPECTED_BUILT.encode(), capture_output=True, check=True).stdout
    assert mine == theirs


def test_fdtdump_agrees_with_our_header(tmp_path):
    fdt = built_tree()
    data = fdt.pack(pad=100)
    path = tmp_path / "t.dtb"
    path.write_bytes(data)
    dump = subprocess.run(["fdtdump", str(path)], capture_output=True, text=True, check=True).stdout
    head = FdtHeader.parse(data)
    fields = dict(re.findall(r"^// (\w+):\s+(\S+)", dump, re.M))
    for name in ("totalsize", "off_dt_struct", "off_dt_strings", "off_mem_rsvmap", "version",
                 "last_comp_version", "boot_cpuid_phys", "size_dt_strings", "size_dt_struct"):
        assert int(fields[name].split("(")[0], 0) == head[name], name
    assert head.totalsize == len(data) and head.off_mem_rsvmap % 8 == 0
    assert head.off_dt_struct % 4 == 0
    assert "linux,usable-memory-range = <0x00000000 0x60000000 0x00000000 0x10000000>;" in dump


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789,._+-", min_size=1, max_size=12)
values = st.binary(max_size=24)


@st.composite
def trees(draw, depth=0):
    node = Node(draw(names) if depth else "")
    for prop in draw(st.lists(names, max_size=4, unique=True)):
        node.properties[prop] = draw(values)
    if depth < 3:
        kids = draw(st.lists(names, max_size=3, unique=True))
        for name in kids:
            child = draw(trees(depth=depth + 1))
            child.name = name
            node.children.append(child)
    return node


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(1, 2**64 - 1)),
                         max_size=3))
def test_random_trees_survive_dtc(root, reserved):
    """Our DTB, rewritten by dtc (dtb → dtb), reads back as the same tree (dtc drops
    reservations of size 0, so there are none)."""
    fdt = Fdt(root=root, reserved=reserved)
    ours = fdt.pack()
    again = Fdt.parse(dtc(ours, "dtb", "dtb", force=True))
    assert again == fdt
    assert again.pack() == ours


# --- editing, with fdtput as the oracle --------------------------------------------------------

def qemu_dtbs():
    require(QEMU_DTBS, "no arm64 snapshot with sys/firmware/fdt under tests/snapshots")
    return QEMU_DTBS


def test_qemu_dtbs_exist():
    assert qemu_dtbs()


@pytest.mark.parametrize("path", QEMU_DTBS, ids=[p.parts[-4] for p in QEMU_DTBS])
def test_qemu_dtb_reads_and_edits_like_fdtput(path, tmp_path):
    data = path.read_bytes()
    fdt = Fdt.parse(data, str(path))
    head = FdtHeader.parse(data)
    # QEMU's tree is padded (1 MiB for -M virt); ours packs tight: same tree in dtc's eyes.
    assert as_dts(fdt.pack()) == as_dts(data)
    assert len(fdt.pack()) <= head.totalsize
    a, s = fdt.root_cells()
    copy = tmp_path / "fdtput.dtb"
    copy.write_bytes(subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dtb", "-p", "4096",
                                     str(path)], capture_output=True, check=True).stdout)

    def fdtput(*args):
        subprocess.run(["fdtput", *args], check=True, capture_output=True)

    fdt.set("/chosen", "bootargs", "console=ttyAMA0 nr_cpus=1 reset_devices")
    fdtput("-t", "s", str(copy), "/chosen", "bootargs", "console=ttyAMA0 nr_cpus=1 reset_devices")
    core = cells([0x7F000000], a) + cells([0x400], s)
    fdt.set("/chosen", "linux,elfcorehdr", core)
    fdtput("-t", "bx", str(copy), "/chosen", "linux,elfcorehdr", *[f"{b:x}" for b in core])
    for prop in ("linux,initrd-start", "linux,initrd-end", "kaslr-seed", "rng-seed"):
        if fdt.delete("/chosen", prop):
            fdtput("-d", str(copy), "/chosen", prop)
    fdt.add_node("/chosen/extra")
    fdt.set("/chosen/extra", "n", 5)
    fdtput("-c", str(copy), "/chosen/extra")
    fdtput("-t", "u", str(copy), "/chosen/extra", "n", "5")
    assert as_dts(fdt.pack()) == as_dts(copy.read_bytes())
    assert Fdt.parse(fdt.pack()) == fdt


def test_qemu_dtb_content():
    """What the arm64 loader will rely on, read from the real trees."""
    for path in qemu_dtbs():
        fdt = Fdt.parse(path.read_bytes())
        assert fdt.find("/chosen") is not None, path
        if "uefi" in path.parts[-4]:
            # the EFI stub's tree: /chosen only, with the UEFI system table and memory map
            assert [c.name for c in fdt.root.children] == ["chosen"]
            assert fdt.get("/chosen", "linux,uefi-system-table") is not None
        else:
            a, s = fdt.root_cells()
            assert (a, s) == (2, 2)
            reg = fdt.get_cells("/memory", "reg", 1)
            assert reg and len(reg) == a + s
            assert (reg[0] << 32 | reg[1]) == 0x40000000
            assert fdt.get_string("/chosen", "bootargs").startswith("console=ttyAMA0")
            cpus = [c for c in fdt.node("/cpus").children if c.name.startswith("cpu@")]
            assert len(cpus) == int(path.parts[-4].split("-")[3][0])


# --- bad input --------------------------------------------------------------------------------

def test_bad_input_is_one_line_error():
    good = compile_dts(SOURCES["features"])
    head = FdtHeader.parse(good)
    cases = {
        b"\0" * 64: "no 0xd00dfeed header",
        good[:100]: "header says",
        good[:head.off_dt_struct] + b"\0\0\0\x07" +
        good[head.off_dt_struct + 4:]: "unknown token",
        good[:head.off_dt_struct] + FDT_BEGIN_NODE.to_bytes(4, "big") + b"\xff\xfe\0\0" +
        good[head.off_dt_struct + 8:]: "bad token",
    }
    for data, message in cases.items():
        with pytest.raises(FdtError, match=message) as e:
            Fdt.parse(data, "x.dtb")
        assert str(e.value).startswith("x.dtb: ") and "\n" not in str(e.value)
    with pytest.raises(FdtError, match="no node /missing"):
        Fdt.parse(good).set("/missing", "p", 1)
    with pytest.raises(FdtError, match="does not fit"):
        cells([1 << 32], 1)
    assert decode_cells(cells([1, 2 << 32], 2), 2) == [1, 2 << 32]
