"""arm64 loads through the command line on the arm64 snapshots, with stand-in kernels
(an Image header and padding; the placement depends on nothing else): normal loads (-l),
Image.gz and EFI zboot files, --dtb, --serial, the refusals of other architectures'
options both ways, and what kexec_file_load would say."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import struct
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from pykexec import arch as registry
from pykexec.arch import parse_args, plan_load
from pykexec.arch.arm64.fdt import Fdt
from pykexec.cli import run
from pykexec.machine import Machine
from tests.bed.arm64guest import SNAPSHOTS_DIR
from tests.unit.test_arm64_image import debian_image  # noqa: F401 (a fixture: Debian's Image)

DT = SNAPSHOTS_DIR / "qemu-arm64-2g-1cpu"
UEFI = SNAPSHOTS_DIR / "qemu-arm64-2g-1cpu-uefi"
X86 = Path(__file__).resolve().parents[2] / "examples" / "qemu-x86_64-1g-1cpu"
KEXEC_ARCH_AARCH64 = 183 << 16


def image(image_size=0x400000, file_size=0x10000, text_offset=0, flags=0b1010):
    head = bytearray(64)
    struct.pack_into("<QQQ", head, 8, text_offset, image_size, flags)
    head[0x38:0x3c] = b"ARM\x64"
    return bytes(head) + bytes(range(256)) * ((file_size - 64) // 256)


def zboot(payload: bytes, kind: str) -> bytes:
    """A zboot file: MZ, "zimg", payload offset and size, the compression's name."""
    head = bytearray(0x1000)
    head[0:4] = b"MZ\0\0"
    head[4:8] = b"zimg"
    struct.pack_into("<II", head, 8, 0x1000, len(payload))
    head[0x18:0x18 + len(kind)] = kind.encode()
    return bytes(head) + payload


@pytest.fixture
def files(tmp_path):
    out = {}
    for name, data in (("Image", image()), ("big", image(0x2010000, 0x1f6dfc0)),
                       ("initrd", b"initrd" * 1000)):
        out[name] = tmp_path / name
        out[name].write_bytes(data)
    return out


def cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = run(argv)
    return status, out.getvalue(), err.getvalue()


def plan(argv, snap=DT):
    return plan_load(parse_args(argv), Machine.read(str(snap)), random_bytes=bytes)


def by_kind(p):
    return {s.kind: s for s in p.segments}


def test_normal_load_goes_low_with_a_dtb_without_crash_properties(files):
    p = plan(["-l", str(files["Image"]), f"--initrd={files['initrd']}", "--append=root=/dev/vda"])
    segs = by_kind(p)
    assert p.flags == KEXEC_ARCH_AARCH64 and "elfcorehdr" not in segs
    # RAM starts at 0x40000000: a 4 MiB Image fits below the first reserved line (0x41860000)
    assert segs["kernel"].mem == 0x40000000
    assert segs["initrd"].mem == 0x40400000          # right after image_size
    assert segs["dtb"].mem == segs["initrd"].mem + 0x2000
    assert segs["purgatory"].mem <= p.entry < segs["purgatory"].mem + segs["purgatory"].memsz
    tree = Fdt.parse(segs["dtb"].data)
    assert tree.get_string("/chosen", "bootargs") == "root=/dev/vda"
    assert tree.get("/chosen", "linux,elfcorehdr") is None
    assert tree.get("/chosen", "linux,usable-memory-range") is None
    start = int.from_bytes(tree.get("/chosen", "linux,initrd-start"), "big")
    assert start == segs["initrd"].mem


def test_normal_load_of_a_big_image_skips_the_reserved_lines(files):
    segs = by_kind(plan(["-l", str(files["big"])]))
    # 0x40000000-0x4185ffff is too small for 0x2010000; 0x41eb0000 rounds up to 0x42000000
    assert segs["kernel"].mem == 0x42000000 and segs["kernel"].memsz == 0x2010000


def test_image_gz_plans_as_the_image(files, tmp_path):
    gz = tmp_path / "Image.gz"
    gz.write_bytes(gzip.compress(files["Image"].read_bytes()))
    a, b = plan(["-p", str(files["Image"])]), plan(["-p", str(gz)])
    assert [(s.mem, s.memsz, s.data) for s in a.segments if s.kind != "purgatory"] == \
        [(s.mem, s.memsz, s.data) for s in b.segments if s.kind != "purgatory"]
    assert b.notes["format"] == "Image"


@pytest.mark.parametrize("kind, compress", [
    ("gzip", gzip.compress),
    ("xzkern", lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)),
    ("lzma", lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE)),
])
def test_zboot_payloads(files, tmp_path, kind, compress):
    raw = files["Image"].read_bytes()
    path = tmp_path / f"vmlinuz.{kind}"
    path.write_bytes(zboot(compress(raw), kind))
    p = plan(["-p", str(path)])
    assert p.notes["format"] == "vmlinuz"
    assert by_kind(p)["kernel"].data == raw
    assert by_kind(p)["kernel"].mem == by_kind(plan(["-p", str(files["Image"])]))["kernel"].mem


def test_zboot_with_an_unknown_compression_is_one_line(files, tmp_path):
    path = tmp_path / "vmlinuz.lz4"
    path.write_bytes(zboot(b"\x04\x22\x4d\x18" + bytes(100), "lz4"))
    status, _, err = cli(["-p", "-c", str(path), "--sysroot", str(DT), "--dry-run"])
    assert status == 255 and err.count("\n") == 1 and "'lz4'" in err


def test_a_kernel_too_big_for_the_crash_region_is_refused(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(image(image_size=0x20000000))
    status, _, err = cli(["-p", "-c", str(path), "--sysroot", str(DT), "--dry-run"])
    assert status == 255 and err.count("\n") == 1 and "beyond the crash region" in err


def test_garbage_is_no_arm64_kernel(tmp_path):
    path = tmp_path / "garbage"
    path.write_bytes(bytes(4096))
    status, _, err = cli(["-p", "-c", str(path), "--sysroot", str(DT), "--dry-run"])
    assert status == 255 and err.count("\n") == 1
    assert "not an arm64 kernel" in err and "Image:" in err and "vmlinuz:" in err


def test_dtb_option_reads_the_file(files):
    p = plan(["-p", str(files["Image"]), f"--dtb={UEFI / 'sys/firmware/fdt'}"])
    tree = Fdt.parse(by_kind(p)["dtb"].data)
    assert tree.find("/memory") is None                    # the UEFI stub's tree, not DT's
    assert tree.get("/chosen", "linux,elfcorehdr") is not None
    assert p.notes["dtb_source"].endswith("qemu-arm64-2g-1cpu-uefi/sys/firmware/fdt")
    assert plan(["-p", str(files["Image"])]).notes["dtb_source"] == "/sys/firmware/fdt"


def test_serial_without_the_console_warns_and_stays_silent(files):
    p = plan(["-p", str(files["Image"]), "--serial=ttyAMA0"])
    assert any("ttyAMA0" in w for w in p.notes["warnings"])
    assert p.notes["purgatory_symbols"]["uart_base"] == 0


def test_serial_with_the_console_gives_purgatory_its_uart(files, tmp_path):
    import shutil
    snap = tmp_path / "m"
    shutil.copytree(DT, snap)
    tty = snap / "sys/class/tty/ttyAMA0"
    tty.mkdir(parents=True)
    (tty / "iomem_base").write_text("0x9000000\n")
    p = plan(["-p", str(files["Image"]), "--serial=ttyAMA0"], snap)
    assert p.notes["purgatory_symbols"]["uart_base"] == 0x9000000 and not p.notes["warnings"]


@pytest.mark.parametrize("option", ["--console-vga", "--console-serial", "--noefi",
                                    "--elf32-core-headers", "--serial-baud=9600"])
def test_an_x86_option_on_arm64_is_an_unrecognized_option(files, option):
    status, out, err = cli(["-p", "-c", str(files["Image"]), option, "--sysroot", str(DT),
                            "--dry-run"])
    assert status == 1 and out == "" and err.count("\n") == 1
    assert f"unrecognized option '{option.split('=')[0]}'" in err


def test_x86_refuses_the_device_tree_option(files):
    status, out, err = cli(["-p", "-c", str(files["Image"]), "--dtb=x", "--sysroot", str(X86),
                            "--dry-run"])
    assert status == 255 and out == "" and err.count("\n") == 1 and "device tree" in err


def test_x86_reads_serial_as_a_port_and_refuses_a_console_name(files):
    status, _, err = cli(["-p", "-c", str(files["Image"]), "--serial=ttyAMA0", "--sysroot",
                          str(X86), "--dry-run"])
    assert status == 255 and err.count("\n") == 1 and "Bad serial port base 'ttyAMA0'" in err


def test_kexec_file_load_takes_an_image_only(files, tmp_path):
    arm64 = registry.arch_for("aarch64")
    assert arm64.file_load_refusal(files["Image"].read_bytes()) is None
    z = zboot(gzip.compress(files["Image"].read_bytes()), "gzip")
    assert "only an arm64 Image" in arm64.file_load_refusal(z)
    path = tmp_path / "vmlinuz"
    path.write_bytes(z)
    status, _, err = cli(["-p", "-s", str(path), "--sysroot", str(DT), "--dry-run"])
    assert status == 253 and err.count("\n") == 1
    assert "ENOEXEC: the kernel loads only an arm64 Image" in err


def test_json_plan_shows_the_arm64_facts(files):
    status, out, err = cli(["-p", "-c", str(files["Image"]), "--sysroot", str(DT), "--dry-run",
                            "--json"])
    assert status == 0, err
    doc = json.loads(out)
    assert doc["arch"] == "arm64" and doc["flags"] == 0xB70001
    assert [s["kind"] for s in doc["segments"]] == ["kernel", "dtb", "purgatory", "elfcorehdr"]


def test_a_crash_load_without_a_crash_region_is_one_line(files, tmp_path):
    import shutil
    from pykexec.errors import LoadError
    snap = tmp_path / "m"
    shutil.copytree(DT, snap)
    iomem = snap / "proc/iomem"
    iomem.write_text("".join(l for l in iomem.read_text().splitlines(True)
                             if "Crash kernel" not in l))
    with pytest.raises(LoadError, match="no 'Crash kernel' region") as err:
        plan(["-p", str(files["Image"])], snap)
    assert "\n" not in str(err.value)
    assert by_kind(plan(["-l", str(files["Image"])], snap))["kernel"].mem == 0x40000000


def test_hotplug_is_refused_on_arm64(files, tmp_path):
    import shutil
    snap = tmp_path / "m"
    shutil.copytree(DT, snap)
    (snap / "sys/kernel/crash_elfcorehdr_size").write_text("4096\n")
    status, out, err = cli(["-p", "-c", str(files["Image"]), "--hotplug", "--sysroot", str(snap),
                            "--dry-run"])
    assert status == 255 and out == "" and err.count("\n") == 1 and "--hotplug" in err


def test_a_pe_signed_image_is_loaded_whole(tmp_path):
    from pykexec.arch.arm64.image import parse_image
    from tests.unit.test_arm64_image import efi_image
    data = efi_image(cert_size=0x300, image_size=0x400000)
    assert parse_image(data).signed
    path = tmp_path / "vmlinuz-signed"
    path.write_bytes(data)
    kernel = by_kind(plan(["-p", str(path)]))["kernel"]
    # as kexec-tools: the file with its certificate table, in image_size of memory
    assert kernel.data == data and kernel.memsz == 0x400000
    assert kernel.mem == 0xA9A00000


def test_debians_signed_arm64_kernel(debian_image):
    from pykexec.arch.arm64.image import parse_image
    data, path = debian_image
    header = parse_image(data)
    assert header.signed and header.pe is not None
    p = plan(["-p", str(path)])
    kernel = by_kind(p)["kernel"]
    assert kernel.data == data and kernel.memsz == header.image_size
    assert p.notes["format"] == "Image"


def test_an_empty_command_line_keeps_the_trees_bootargs_and_the_plan_says_so(files):
    """kexec-tools leaves /chosen/bootargs alone when the command line is empty, so the new
    kernel boots with the running one's line: the plan (and its report) must say that line,
    not an empty one. Under QEMU's device tree, bootargs is what /proc/cmdline shows."""
    running = (DT / "proc/cmdline").read_text().strip()
    assert "crashkernel=" in running
    p = plan(["-p", str(files["Image"]), "--append=", "--sysroot", str(DT)])
    assert p.cmdline == running
    assert p.notes["cmdline_origin"].startswith("kept from")
    dtb = Fdt.parse(by_kind(p)["dtb"].data, "dtb")
    assert dtb.get("/chosen", "bootargs") == running.encode() + b"\0"
    status, out, err = cli(["-p", str(files["Image"]), "--append=", "--sysroot", str(DT),
                            "--dry-run"])
    assert status == 0, err
    assert f"\n  {running}\n" in out and "kept from" in out
    # nothing in it was added by the loader
    assert "added by the loader" not in out
    # a given line replaces it, and nothing is said about where it came from
    p = plan(["-p", str(files["Image"]), "--append=console=ttyAMA0", "--sysroot", str(DT)])
    assert p.cmdline == "console=ttyAMA0" and "cmdline_origin" not in p.notes


def test_a_kept_command_line_with_control_bytes_is_escaped_in_the_report(files, tmp_path):
    """The kept bootargs come from a device tree, which may hold any bytes: the report
    shows them escaped on one line (no raw newline or terminal escape), the JSON keeps them."""
    import shutil
    import subprocess
    from tests.conftest import require
    require(shutil.which("dtc") is not None, "dtc is missing (apt-get install device-tree-compiler)")
    dts = tmp_path / "t.dts"
    dts.write_text('/dts-v1/;\n/ { #address-cells = <2>; #size-cells = <2>;\n'
                   '  chosen { bootargs = [ 63 61 66 ff 0a 1b 00 ]; };\n};\n')
    dtb = tmp_path / "t.dtb"
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(dts)], check=True)
    argv = ["-c", "-p", str(files["Image"]), f"--dtb={dtb}", "--append=", "--sysroot", str(DT),
            "--dry-run"]
    status, out, err = cli(argv)
    assert status == 0, err
    assert "\x1b" not in out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("command line (6 bytes"))
    assert lines[at + 1] == r"  caf\xff\n\x1b"
    status, out, err = cli(argv + ["--json"])
    assert status == 0, err
    assert json.loads(out)["cmdline"] == "caf\udcff\n\x1b"
