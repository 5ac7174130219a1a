"""pykexec.arch.arm64.explain: `pykexec inspect` of an arm64 Image, Image.gz, EFI zboot file
and device tree. The numbers are checked against what the test knows independently: the
struct-built files of test_arm64_image, Debian's real Image (with `file` and the package's
version as oracles), and the snapshots' DTBs as dtc and fdtget read them.
"""

from __future__ import annotations

import gzip
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykexec.arch.arm64 import explain
from pykexec.arch.arm64.fdt import FdtError
from pykexec.arch.arm64.image import ImageError
from tests.conftest import require
from tests.unit.test_arm64_image import (compress, debian_image, efi_image, image_header,  # noqa: F401
                                         padded, zboot_file)

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
DTBS = sorted(SNAPSHOTS.glob("qemu-arm64-*/sys/firmware/fdt"))
BANNER = b"Linux version 6.99.0-test (me@here) #1 SMP\n"


def signed_image(cert_size=0x230) -> bytes:
    """An EFI-stub Image with a banner in its body and a certificate table at its end."""
    data = bytearray(efi_image(body_size=0x4000, cert_size=cert_size, image_size=0x10000))
    data[0x1000:0x1000 + len(BANNER)] = BANNER
    return bytes(data)


def report(data: bytes, path: str = "f") -> str:
    assert explain.probe(data[:4096])
    return explain.explain(data, path, len(data))


def test_image_report():
    data = signed_image()
    text = report(data, "Image")
    pe_end = 0x40 + 24 + 112 + 16 * 8          # the PE header test_arm64_image builds
    assert text.startswith(f"Image: arm64 Image (a Linux kernel for AArch64), {len(data)} bytes\n")
    assert "  kernel: Linux version 6.99.0-test (me@here) #1 SMP\n" in text
    assert (f"signed: certificate table at {pe_end + 0x4000:#x}, 0x230 bytes" in text)
    assert "keeps 64 KiB free there" in text
    assert "little endian, 4K pages, placed anywhere in RAM" in text   # flags 0xa
    rows = dict(re.findall(r"^  (0x[0-9a-f]+)  (\w+)", text, re.M))
    assert rows == {"0x00": "code0", "0x04": "code1", "0x08": "text_offset", "0x10": "image_size",
                    "0x18": "flags", "0x38": "magic", "0x3c": "pe_offset"}
    assert re.search(r"^  0x10  image_size +0x10000 \(64 KiB\)", text, re.M)
    assert re.search(r"^  0x3c  pe_offset +0x40 ", text, re.M)


def test_old_image_without_stub():
    text = report(image_header(text_offset=0x80000, image_size=0, flags=0) + bytes(64), "old")
    assert "image_size 0: a kernel older than Linux 3.17, loaded at 0x80000" in text
    assert "no EFI stub" in text


def test_debian_image_report(debian_image):  # noqa: F811
    data, path = debian_image
    text = report(data, str(path))
    # the package's version (from the file name) is in the banner the report quotes
    version = path.name.split("vmlinuz-", 1)[1]
    assert re.search(rf"^  kernel: Linux version {re.escape(version)} ", text, re.M)
    image_size = struct.unpack_from("<Q", data, 0x10)[0]
    assert re.search(rf"^  0x10  image_size +{image_size:#x} ", text, re.M)
    require(shutil.which("file"), "file(1) is missing")
    described = subprocess.run(["file", "-b", str(path)], capture_output=True, text=True).stdout
    assert "little-endian, 4K pages" in described and "little endian, 4K pages" in text
    gz = gzip.compress(data, 1)
    text_gz = report(gz, "Image.gz")
    assert text_gz.startswith(f"Image.gz: gzip-compressed arm64 Image (Image.gz), {len(gz)} "
                              f"bytes, {len(data)} bytes decompressed")
    assert text_gz.split("\n", 1)[1] == text.split("\n", 1)[1]


@pytest.mark.parametrize("how", ["gzip", "zstd22", "lzma"])
def test_zboot_report(how):
    inner = signed_image()
    payload = compress(padded(inner, 0x10000), how)
    data = zboot_file(payload, how.encode())
    text = report(data, "vmlinuz.efi")
    lines = text.splitlines()
    assert lines[0].startswith("vmlinuz.efi: EFI zboot file")
    assert lines[1].startswith(f"  zimg header: payload at 0x1000, {len(payload):#x} bytes (")
    assert lines[1].endswith(f"), compressed with '{how}'")
    assert f"inside: an arm64 Image of {len(inner)} bytes" in text     # ends at the signature
    assert "kernel: Linux version 6.99.0-test" in text


def test_zboot_with_an_unknown_compression_still_shows_its_header():
    text = report(zboot_file(b"\x04\x22\x4d\x18" + bytes(30), b"lz4"), "vmlinuz.efi")
    assert "compressed with 'lz4'" in text
    assert "the Image inside cannot be read: the zboot payload is compressed with 'lz4'" in text


def dtc_dts(path: Path) -> str:
    require(shutil.which("dtc") and shutil.which("fdtget"), "dtc/fdtget are missing "
            "(apt-get install device-tree-compiler)")
    return subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(path)], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("path", DTBS, ids=[p.parts[-4] for p in DTBS])
def test_dtb_report(path):
    dts = dtc_dts(path)
    data = path.read_bytes()
    text = report(data, str(path))
    lines = [line.strip() for line in dts.splitlines()]
    nodes = sum(line.endswith("{") for line in lines)
    props = sum(line.endswith(";") and line != "};" and not line.startswith("/")
                for line in lines)
    assert re.search(rf"^  {nodes} nodes, {props} properties", text, re.M)
    chosen = subprocess.run(["fdtget", "-p", str(path), "/chosen"], capture_output=True,
                            text=True, check=True).stdout.split()
    shown = re.findall(r"^    ([\w,#-]+) = ", text, re.M)
    assert shown == chosen
    if "uefi" in str(path):
        assert "no memory node (the EFI stub's tree" in text and "console:" not in text
    else:
        size = int(path.parts[-4].split("-")[2][:-1]) << 30
        assert f"  memory /memory@40000000: 0x40000000-{0x40000000 + size - 1:#x}" in text
        cpus = int(path.parts[-4].split("-")[3][0])
        assert f"  cpus: {cpus}\n" in text
        assert "  console: PL011 UART at 0x9000000" in text
        assert "kaslr-seed = <0x0 0x0>  (KASLR seed, wiped to 0" in text
        assert "11 NOP words" in text         # the rng-seed the kernel blanked


def test_probe_takes_only_arm64_files():
    assert not explain.probe(b"\x7fELF" + bytes(60))
    bz = bytearray(0x400)
    bz[0x1FE:0x200] = b"\x55\xaa"
    bz[0x202:0x206] = b"HdrS"
    assert not explain.probe(bytes(bz))                                  # an x86 bzImage
    assert not explain.probe(gzip.compress(b"not a kernel" * 100))       # some gzip file
    riscv = bytearray(zboot_file(b"x" * 64, b"gzip"))
    riscv[0x44:0x46] = (0x5064).to_bytes(2, "little")                    # PE machine riscv64
    assert not explain.probe(bytes(riscv))
    assert explain.probe(zboot_file(b"x" * 64, b"gzip"))
    assert explain.probe(gzip.compress(signed_image())[:4096])            # Image.gz, its head


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["dtb", "image", "gz"]), st.integers(0, 1 << 20), st.integers(0, 255))
def test_damaged_files_are_one_line(which, where, byte):
    """Truncated or with a byte changed: a report, or one ValueError line naming the file."""
    base = {"dtb": DTBS[0].read_bytes()[:8192] if DTBS else b"",
            "image": signed_image(), "gz": gzip.compress(signed_image())}[which]
    require(base, "no snapshot DTB")
    data = bytearray(base[:max(64, where % len(base))] if where & 1 else base)
    at = where % len(data)
    data[at] = byte
    data = bytes(data)
    if not explain.probe(data[:4096]):
        return
    try:
        explain.explain(data, "f.bin", len(data))
    except (ImageError, FdtError, ValueError) as e:
        assert str(e).startswith("f.bin") and "\n" not in str(e)


def test_inspect_command_uses_the_explainer(monkeypatch, tmp_path):
    """Through `pykexec inspect`'s detection, as the architecture will register it."""
    from pykexec.views import inspect as inspect_mod
    real = inspect_mod.image_explainers()
    monkeypatch.setattr(inspect_mod, "image_explainers", lambda: (*real, explain))
    dtb = tmp_path / "board.dtb"
    dtb.write_bytes(DTBS[0].read_bytes())
    assert inspect_mod.inspect_path(str(dtb)).startswith(f"{dtb}: flattened device tree")
    gz = tmp_path / "Image.gz"
    gz.write_bytes(gzip.compress(signed_image()))
    assert "gzip-compressed arm64 Image" in inspect_mod.inspect_path(str(gz))
    other = tmp_path / "notes.gz"
    other.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(inspect_mod.InspectError, match="gzip data"):
        inspect_mod.inspect_path(str(other))
    bad = tmp_path / "bad.dtb"
    bad.write_bytes(DTBS[0].read_bytes()[:100])
    with pytest.raises(inspect_mod.InspectError, match=r"bad\.dtb: header says"):
        inspect_mod.inspect_path(str(bad))


def test_dtb_with_odd_values_is_explained(tmp_path):
    """A model that is not a string and a stdout-path without its NUL are shown, not errors."""
    require(shutil.which("dtc"), "dtc is missing")
    src = (b'/dts-v1/;\n/ { model = <1 2>; #address-cells = <2>; #size-cells = <2>; '
           b'chosen { stdout-path = [2f 70 6c]; }; };\n')
    data = subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"], input=src,
                          capture_output=True, check=True).stdout
    text = report(data, "odd.dtb")
    assert 'machine: model "<0x1 0x2>"' not in text and "machine: model <0x1 0x2>" in text
    assert "    stdout-path = [2f 70 6c]  (the console)" in text and "console: PL011" not in text
