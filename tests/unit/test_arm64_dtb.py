"""pykexec.arch.arm64.dtb: the new kernel's device tree.

The oracle is kexec-tools itself: the snapshots' oracle/shim/c0-seg2.bin is the DTB Debian's
kexec-tools:arm64 passed to `kexec -p` on that machine. boot_dtb, given the same machine
tree, command line and addresses, must give those bytes exactly, with its random seed
being the only free value (we feed it kexec-tools' seed, and check that the seed was
really drawn). dtc reads our output as it reads kexec-tools'.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykexec.arch.arm64.dtb import BootDtb, DtbEdit, boot_dtb, console_uart
from pykexec.arch.arm64.fdt import Fdt, FdtError, cells
from tests.conftest import require

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
ARM64 = sorted(p.name for p in SNAPSHOTS.glob("qemu-arm64-*"))
DTB_MAGIC = b"\xd0\x0d\xfe\xed"


def snapshot(name: str) -> Path:
    path = SNAPSHOTS / name
    require((path / "sys/firmware/fdt").is_file(), f"{path}/sys/firmware/fdt is missing")
    return path


def crash_region(snap: Path):
    for line in (snap / "proc/iomem").read_text().splitlines():
        span, _, what = line.strip().partition(" : ")
        if what == "Crash kernel":
            lo, hi = (int(x, 16) for x in span.split("-"))
            return lo, hi + 1 - lo
    raise AssertionError("no crash region")


def oracle_load(snap: Path):
    """kexec-tools' load in this snapshot: its arguments and its segments' bytes."""
    calls = [dict(w.split("=", 1) for w in line.split())
             for line in (snap / "oracle/shim/calls.txt").read_text().splitlines()]
    segments = []
    for c in calls:
        if "segment" in c:
            blob = snap / "oracle/shim" / c["file"]
            segments.append((int(c["mem"], 16), int(c["bufsz"], 16),
                             blob.read_bytes() if blob.exists() else None))
    argv = json.loads((snap / "oracle/kexec-p-d.json").read_text())["argv"]
    append = next(a for a in argv if a.startswith("--append="))[len("--append="):]
    dtb = next(s[2] for s in segments if s[2] is not None and s[2][:4] == DTB_MAGIC)
    core = next(s for s in segments if s[2] is not None and s[2][:4] == b"\x7fELF")
    initrd = segments[1]
    return dict(cmdline=append, dtb=dtb, elfcorehdr=(core[0], core[1]),
                initrd=(initrd[0], initrd[0] + initrd[1]))


def as_dts(data: bytes) -> str:
    require(shutil.which("dtc"), "dtc is missing (apt-get install device-tree-compiler)")
    return subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", "-"], input=data,
                          capture_output=True, check=True).stdout.decode()


class Seeds:
    """A random source that hands out given bytes and records the requests."""

    def __init__(self, fill: bytes = b""):
        self.fill = fill
        self.asked = []

    def __call__(self, count: int) -> bytes:
        self.asked.append(count)
        return self.fill[:count] if self.fill else bytes(range(1, count + 1))


@pytest.mark.parametrize("name", ARM64)
def test_crash_dtb_is_kexec_tools_bytes(name):
    snap = snapshot(name)
    oracle = oracle_load(snap)
    theirs = Fdt.parse(oracle["dtb"], "oracle DTB")
    their_seed = theirs.get("/chosen", "kaslr-seed")
    machine = (snap / "sys/firmware/fdt").read_bytes()
    seeds = Seeds(their_seed or b"")
    ours = boot_dtb(machine, f"{name}/sys/firmware/fdt", cmdline=oracle["cmdline"],
                    initrd=oracle["initrd"], elfcorehdr=oracle["elfcorehdr"],
                    usable_memory=(crash_region(snap),), random_bytes=seeds)
    assert isinstance(ours, BootDtb)
    assert ours.data == oracle["dtb"]
    if their_seed is not None:
        # the machine's seed was wiped to 0; kexec-tools drew 8 fresh bytes, so did we
        assert Fdt.parse(machine).get("/chosen", "kaslr-seed") == bytes(8)
        assert their_seed != bytes(8) and seeds.asked == [8]
    else:
        assert seeds.asked == []
    assert as_dts(ours.data) == as_dts(oracle["dtb"])


def test_edits_say_what_changed():
    snap = snapshot("qemu-arm64-2g-1cpu")
    machine = (snap / "sys/firmware/fdt").read_bytes()
    out = boot_dtb(machine, "fdt", cmdline="console=ttyAMA0 reset_devices",
                   initrd=(0xAB000000, 0xAB120000), elfcorehdr=(0xB99FF000, 0x400),
                   usable_memory=((0xA9A00000, 0x10000000),), random_bytes=Seeds())
    assert out.edits == (
        DtbEdit("/chosen", "bootargs", "set", '"console=ttyAMA0 reset_devices"'),
        DtbEdit("/chosen", "kaslr-seed", "set", "8 random bytes"),
        DtbEdit("/chosen", "linux,elfcorehdr", "set", "<0x0 0xb99ff000 0x0 0x400>"),
        DtbEdit("/chosen", "linux,usable-memory-range", "set",
                "<0x0 0xa9a00000 0x0 0x10000000>"),
        DtbEdit("/chosen", "linux,initrd-start", "set", "<0x0 0xab000000>"),
        DtbEdit("/chosen", "linux,initrd-end", "set", "<0x0 0xab120000>"),
    )
    chosen = Fdt.parse(out.data).node("/chosen")
    assert list(chosen.properties) == [
        "linux,usable-memory-range", "linux,elfcorehdr", "linux,initrd-end",
        "linux,initrd-start", "bootargs", "stdout-path", "kaslr-seed"]
    assert chosen.properties["kaslr-seed"] == bytes(range(1, 9))


def test_normal_load_without_initrd_removes_the_old_one():
    machine = (snapshot("qemu-arm64-2g-2cpu") / "sys/firmware/fdt").read_bytes()
    assert Fdt.parse(machine).get("/chosen", "linux,initrd-start") is not None
    out = boot_dtb(machine, "fdt", cmdline="", initrd=None, random_bytes=Seeds())
    chosen = Fdt.parse(out.data).node("/chosen")
    assert "linux,initrd-start" not in chosen.properties
    assert "linux,initrd-end" not in chosen.properties
    assert "linux,elfcorehdr" not in chosen.properties
    assert "linux,usable-memory-range" not in chosen.properties
    # an empty command line keeps the tree's bootargs, as kexec-tools does
    assert chosen.properties["bootargs"] == Fdt.parse(machine).get("/chosen", "bootargs")
    assert [(e.property, e.action) for e in out.edits] == [
        ("kaslr-seed", "set"), ("linux,initrd-start", "delete"), ("linux,initrd-end", "delete")]


def test_random_source_failure_gives_a_zero_seed():
    machine = (snapshot("qemu-arm64-2g-1cpu") / "sys/firmware/fdt").read_bytes()

    def broken(count):
        raise OSError(11, "Resource temporarily unavailable")

    out = boot_dtb(machine, "fdt", cmdline="x", initrd=None, random_bytes=broken)
    assert Fdt.parse(out.data).get("/chosen", "kaslr-seed") == bytes(8)


def tree(chosen: str = "", root: str = "#address-cells = <2>; #size-cells = <2>;") -> bytes:
    require(shutil.which("dtc"), "dtc is missing (apt-get install device-tree-compiler)")
    src = f"/dts-v1/;\n/ {{ {root} chosen {{ {chosen} }}; }};\n"
    return subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"], input=src.encode(),
                          capture_output=True, check=True).stdout


def test_a_stale_rng_seed_is_replaced_and_a_live_kaslr_seed_refused():
    base = tree('rng-seed = [01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10];')
    seeds = Seeds()
    out = boot_dtb(base, "my.dtb", cmdline="x", initrd=None, random_bytes=seeds)
    assert seeds.asked == [16]
    assert Fdt.parse(out.data).get("/chosen", "rng-seed") == bytes(range(1, 17))
    with pytest.raises(FdtError, match=r"^my\.dtb: /chosen/kaslr-seed is not 0"):
        boot_dtb(tree("kaslr-seed = <0 5>;"), "my.dtb", cmdline="x", initrd=None,
                 random_bytes=Seeds())


def test_cells_follow_the_root():
    one = tree(root="#address-cells = <1>; #size-cells = <1>;")
    out = boot_dtb(one, "t", cmdline="x", initrd=None, elfcorehdr=(0x7F000000, 0x400),
                   usable_memory=((0x60000000, 0x10000000), (0x1000000, 0x100000)),
                   random_bytes=Seeds())
    fdt = Fdt.parse(out.data)
    assert fdt.get("/chosen", "linux,elfcorehdr") == cells([0x7F000000, 0x400], 1)
    # the low region last, as kexec-tools and the kernel order them
    assert fdt.get_cells("/chosen", "linux,usable-memory-range") == [
        0x60000000, 0x10000000, 0x1000000, 0x100000]
    with pytest.raises(FdtError, match=r"^t: the ELF core header 0x100000000\+0x400 does not "
                                       r"fit the root's #address-cells = 1"):
        boot_dtb(one, "t", cmdline="x", initrd=None, elfcorehdr=(1 << 32, 0x400),
                 random_bytes=Seeds())
    # no #address-cells/#size-cells: the kernel's defaults (1, 1), not the spec's (2, 1)
    bare = boot_dtb(tree(root=""), "t", cmdline="x", initrd=None, elfcorehdr=(0x1000, 0x400),
                    random_bytes=Seeds())
    assert Fdt.parse(bare.data).get("/chosen", "linux,elfcorehdr") == cells([0x1000, 0x400], 1)
    three = tree(root="#address-cells = <3>; #size-cells = <2>;")
    out = boot_dtb(three, "t", cmdline="x", initrd=None, elfcorehdr=(0x1000, 0x400),
                   random_bytes=Seeds())
    assert Fdt.parse(out.data).get_cells("/chosen", "linux,elfcorehdr") == [0, 0, 0x1000, 0, 0x400]


def test_no_chosen_node_is_created_first():
    src = b"/dts-v1/;\n/ { #address-cells = <2>; #size-cells = <2>; memory { }; };\n"
    base = subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"], input=src,
                          capture_output=True, check=True).stdout
    out = boot_dtb(base, "t", cmdline="", initrd=(0x1000, 0x2000), random_bytes=Seeds())
    fdt = Fdt.parse(out.data)
    assert [c.name for c in fdt.root.children] == ["chosen", "memory"]
    assert list(fdt.node("/chosen").properties) == ["linux,initrd-end", "linux,initrd-start"]


addresses = st.integers(0, (1 << 48) - 1)


@settings(max_examples=40, deadline=None)
@given(addresses, addresses, addresses, addresses, st.integers(1, 1 << 40), st.booleans())
def test_size_does_not_depend_on_addresses(core, start, length, usable, usable_size, with_initrd):
    """A loader packs with zeros, places the DTB, packs again: the size must hold."""
    machine = (SNAPSHOTS / "qemu-arm64-5g-2cpu/sys/firmware/fdt").read_bytes()

    def build(scale):
        return boot_dtb(machine, "fdt", cmdline="console=ttyAMA0",
                        initrd=(start * scale, (start + length) * scale) if with_initrd else None,
                        elfcorehdr=(core * scale, 0x400 * scale),
                        usable_memory=((usable * scale, usable_size * scale),),
                        random_bytes=Seeds())
    real, zero = build(1), build(0)
    assert len(real.data) == len(zero.data)
    assert Fdt.parse(real.data).get_cells("/chosen", "linux,elfcorehdr", 2) == [core, 0x400]


def test_bad_tree_is_one_line_naming_the_source():
    with pytest.raises(FdtError) as e:
        boot_dtb(b"\0" * 64, "/sys/firmware/fdt", cmdline="x", initrd=None, random_bytes=Seeds())
    assert str(e.value).startswith("/sys/firmware/fdt: ") and "\n" not in str(e.value)
    with pytest.raises(FdtError, match=r"^t: the root's #size-cells is not one cell"):
        boot_dtb(tree(root="#address-cells = <2>; #size-cells = <2 2>;"), "t", cmdline="x",
                 initrd=None, random_bytes=Seeds())
    big = tree(chosen=f"blob = [{'00 ' * (2 << 20)}];")
    with pytest.raises(FdtError, match=r"^t: the new kernel's device tree is \d+ bytes, more "
                                       r"than the 2 MiB"):
        boot_dtb(big, "t", cmdline="x", initrd=None, random_bytes=Seeds())


# --- console_uart ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ARM64)
def test_console_uart_of_the_snapshots(name):
    machine = (snapshot(name) / "sys/firmware/fdt").read_bytes()
    # QEMU virt's PL011 at 0x9000000; the EFI stub's tree has no stdout-path
    assert console_uart(machine) == (None if name.endswith("uefi") else 0x9000000)


UART = 'uart@1000 { compatible = "arm,pl011", "arm,primecell"; reg = <0x1000 0x1000>; };'


@pytest.mark.parametrize("chosen, body, expected", [
    ('stdout-path = "/soc/uart@1000:115200n8";',
     f'soc {{ #address-cells = <1>; #size-cells = <1>; ranges = <0x0 0x0 0x9000000 0x10000>; '
     f'{UART} }};', 0x9001000),
    ('stdout-path = "serial0:115200n8";',
     f'aliases {{ serial0 = "/soc/uart@1000"; }}; soc {{ #address-cells = <1>; '
     f'#size-cells = <1>; ranges; {UART} }};', 0x1000),
    ('stdout-path = "/soc/uart@1000";',
     f'soc {{ #address-cells = <1>; #size-cells = <1>; {UART} }};', None),   # no ranges
    ('stdout-path = "/soc/uart@1000";',
     'soc { #address-cells = <1>; #size-cells = <1>; ranges; '
     'uart@1000 { compatible = "ns16550a"; reg = <0x1000 0x1000>; }; };', None),
    ('stdout-path = "/nowhere";', "", None),
    ("", "", None),
])
def test_console_uart_follows_aliases_and_ranges(chosen, body, expected):
    src = (f"/dts-v1/;\n/ {{ #address-cells = <2>; #size-cells = <2>; chosen {{ {chosen} }}; "
           f"{body} }};\n")
    base = subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"], input=src.encode(),
                          capture_output=True, check=True).stdout
    assert console_uart(base) == expected


def test_console_uart_of_a_malformed_stdout_path_is_none():
    """Not NUL-terminated, or an alias that is not a string: no console, no error."""
    for chosen, body in (("stdout-path = [2f 70 6c];", ""),
                         ('stdout-path = "serial0";', "aliases { serial0 = <5>; };")):
        src = (f"/dts-v1/;\n/ {{ #address-cells = <2>; #size-cells = <2>; chosen {{ {chosen} }}; "
               f"{body} }};\n")
        base = subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"], input=src.encode(),
                              capture_output=True, check=True).stdout
        assert console_uart(base) is None
