"""pykexec.arch.arm64.image: the arm64 Image header, Image.gz and EFI zboot.

On Debian's real arm64 kernel (the bed's download, tests/bed/arm64guest.py; `file` as an
oracle for its flags) and on synthetic files built here with struct at the offsets of
Documentation/arch/arm64/booting.rst and the kernel's zboot-header.S.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykexec.arch.arm64.image import ImageError, gunzip_image, kind, parse_image, parse_zboot
from tests.conftest import require


@pytest.fixture(scope="module")
def debian_image() -> bytes:
    from tests.bed import arm64guest
    from tests.bed.kernels import BedError
    try:
        kernel = arm64guest.cached_kernel()
    except BedError as e:
        require(False, f"Debian's arm64 kernel is not available: {e}")
    return kernel.bzimage.read_bytes(), kernel.bzimage


def image_header(text_offset=0, image_size=0x2010000, flags=0xA, pe_offset=0, code0=0x14000000):
    """64 bytes: code0, code1, text_offset, image_size, flags, res2-4, "ARM\\x64", res5."""
    return struct.pack("<IIQQQQQQ4sI", code0, 0, text_offset, image_size, flags, 0, 0, 0,
                       b"ARM\x64", pe_offset)


def pe_header(machine=0xAA64, cert=(0, 0)):
    """PE signature, COFF header and a PE32+ optional header with 16 data directories."""
    opt = bytearray(112 + 16 * 8)
    struct.pack_into("<H", opt, 0, 0x20B)
    struct.pack_into("<I", opt, 108, 16)
    struct.pack_into("<II", opt, 112 + 4 * 8, *cert)
    return b"PE\0\0" + struct.pack("<HHIIIHH", machine, 1, 0, 0, 0, len(opt), 0x206) + bytes(opt)


def efi_image(body_size=0x4000, cert_size=0, machine=0xAA64, image_size=0x10000):
    head = bytearray(image_header(image_size=image_size, pe_offset=0x40, code0=0x5A4D | 0x91 << 24))
    pe = pe_header(machine, (0x40 + len(pe_header()) + body_size, cert_size) if cert_size else (0, 0))
    return bytes(head) + pe + bytes(body_size) + b"\x30" * cert_size


# --- Debian's Image ----------------------------------------------------------------------------

def test_debian_image(debian_image):
    data, path = debian_image
    img = parse_image(data, str(path))
    assert kind(data) == "image" and data[:2] == b"MZ"
    assert img.text_offset == 0 and not img.legacy
    assert img.image_size >= img.file_size and img.image_size % 0x10000 == 0
    assert (img.big_endian, img.page_size, img.place_anywhere) == (False, 4096, True)
    require(shutil.which("file"), "file(1) is missing")
    described = subprocess.run(["file", "-b", str(path)], capture_output=True, text=True).stdout
    assert "ARM64 boot executable Image, little-endian, 4K pages" in described
    # signed: the certificate table (Authenticode) is the file's tail
    assert img.pe.machine == 0xAA64 and img.signed
    assert img.pe.certificate_offset + img.pe.certificate_size == len(data)
    assert img.unsigned_size == img.pe.certificate_offset
    assert data[img.pe.certificate_offset + 4:img.pe.certificate_offset + 8] == \
        b"\x00\x02\x02\x00"   # WIN_CERTIFICATE: revision 0x0200, type PKCS_SIGNED_DATA


def test_debian_image_gz(debian_image):
    data, _ = debian_image
    packed = gzip.compress(data, compresslevel=1)
    assert kind(packed) == "gzip"
    assert gunzip_image(packed) == data
    with pytest.raises(ImageError, match="more than 1048576 bytes"):
        gunzip_image(packed, "Image.gz", limit=1 << 20)


# --- synthetic Images --------------------------------------------------------------------------

@pytest.mark.parametrize("field,page", [(0, None), (1, 4096), (2, 16384), (3, 65536)])
def test_page_size_field(field, page):
    img = parse_image(image_header(flags=field << 1) + bytes(64))
    assert img.page_size == page and not img.place_anywhere and not img.big_endian


def test_flags_and_legacy():
    img = parse_image(image_header(flags=0b1001) + bytes(64))
    assert img.big_endian and img.place_anywhere and img.pe is None and not img.signed
    old = parse_image(image_header(text_offset=0x80000, image_size=0, flags=0))
    assert old.legacy and old.effective_text_offset == 0x80000 and old.unsigned_size == 64
    new = parse_image(image_header(text_offset=0x200000) + bytes(64))
    assert new.effective_text_offset == 0x200000


def test_signed_pe_image():
    data = efi_image(cert_size=0x100)
    img = parse_image(data)
    assert img.signed and img.unsigned_size == len(data) - 0x100
    unsigned = parse_image(efi_image())
    assert unsigned.pe is not None and not unsigned.signed and unsigned.unsigned_size == len(efi_image())


def test_bad_images():
    cases = {
        bytes(64): "no ARM\\\\x64 magic",
        image_header()[:40]: "no ARM\\\\x64 magic",
        efi_image(machine=0x8664): "PE machine 0x8664 is not arm64",
        efi_image(cert_size=0x100)[:-1]: "runs past the end",
        image_header(image_size=0x80) + bytes(0x100): "smaller than the file",
        image_header(pe_offset=0x40, code0=0x5A4D) + b"XX\0\0": "no PE header at 0x40",
    }
    for data, message in cases.items():
        with pytest.raises(ImageError, match=message) as e:
            parse_image(data, "Image")
        assert str(e.value).startswith("Image: ") and "\n" not in str(e.value)
    assert kind(bytes(64)) is None


# --- EFI zboot ---------------------------------------------------------------------------------

def zboot_file(payload: bytes, compress_type: bytes):
    """MZ, "zimg", payload offset and size, 8 reserved bytes, compression name at 0x18,
    the PE magic at 0x38 and the PE header's offset at 0x3c; the payload at 0x1000."""
    head = bytearray(0x1000)
    struct.pack_into("<4s4sII8s", head, 0, b"MZ\0\0", b"zimg", 0x1000, len(payload), bytes(8))
    head[0x18:0x18 + len(compress_type)] = compress_type
    struct.pack_into("<4sI", head, 0x38, b"\xcd\x23\x82\x81", 0x40)
    head[0x40:0x40 + len(pe_header())] = pe_header()
    return bytes(head) + payload + struct.pack("<I", 0)   # the size word zboot appends


@pytest.mark.parametrize("compress_type", [b"gzip", b"zstd22", b"lzma"])
def test_zboot_header(compress_type):
    inner = image_header() + bytes(0x800)
    payload = gzip.compress(inner) if compress_type == b"gzip" else b"\x28\xb5\x2f\xfd" + bytes(20)
    data = zboot_file(payload, compress_type)
    assert kind(data) == "zboot"
    z = parse_zboot(data, "vmlinuz.efi")
    assert (z.payload_offset, z.payload_size) == (0x1000, len(payload))
    assert z.compress_type == compress_type.decode()
    assert z.payload(data) == payload and z.pe.machine == 0xAA64
    if compress_type == b"gzip":
        assert parse_image(gunzip_image(z.payload(data))).image_size == 0x2010000


def test_bad_zboot():
    data = bytearray(zboot_file(b"x" * 16, b"gzip"))
    struct.pack_into("<I", data, 12, 0x10000)
    with pytest.raises(ImageError, match="zboot payload 0x1000\\+0x10000 lies outside"):
        parse_zboot(bytes(data), "vmlinuz.efi")
    with pytest.raises(ImageError, match="no MZ \\+ zimg header"):
        parse_zboot(image_header(), "Image")
    with pytest.raises(ImageError, match="bad gzip data"):
        gunzip_image(b"\x1f\x8b" + bytes(30))


# --- zboot payloads ----------------------------------------------------------------------------

def compress(data: bytes, how: str) -> bytes:
    """The payload as the kernel's build makes it (Makefile.lib's cmd_*), with the tools."""
    import lzma
    if how == "gzip":
        return gzip.compress(data, 9)
    if how == "lzma":              # cmd_lzma: lzma -9 (the .lzma "alone" format)
        return lzma.compress(data, format=lzma.FORMAT_ALONE)
    if how == "xzkern":            # scripts/xz_wrap.sh: xz --check=crc32
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    require(shutil.which("zstd"), "zstd is missing (apt-get install zstd)")
    return subprocess.run(["zstd", "-q", "-c", "-22", "--ultra"], input=data, check=True,
                          capture_output=True).stdout


def padded(image: bytes, image_size: int) -> bytes:
    """Makefile.zboot's copy_and_pad: the Image padded with zeros to its image_size."""
    return image + bytes(image_size - len(image))


@pytest.mark.parametrize("how", ["gzip", "lzma", "xzkern", "zstd22"])
@pytest.mark.parametrize("cert_size", [0, 0x230])
def test_zboot_image_in_every_compression(how, cert_size):
    from pykexec.arch.arm64.image import zboot_image
    inner = efi_image(body_size=0x4000, cert_size=cert_size, image_size=0x10000)
    data = zboot_file(compress(padded(inner, 0x10000), how), how.encode())
    out = zboot_image(data, "vmlinuz.efi")
    # signed: up to the certificate table's end (kexec-tools' rule); else the padded whole
    assert out == (inner if cert_size else padded(inner, 0x10000))
    img = parse_image(out)
    assert img.signed == bool(cert_size) and img.signed_size == len(out)


def test_zboot_image_refusals(monkeypatch):
    from pykexec.arch.arm64.image import zboot_image
    from pykexec.core.inputfiles import InputFileError
    inner = padded(efi_image(), 0x10000)
    refused = {   # data: (error, message, exit status)
        zboot_file(b"\x04\x22\x4d\x18" + bytes(30), b"lz4"):
            (ImageError, "compressed with 'lz4'; pykexec reads", None),
        zboot_file(gzip.compress(inner)[:-20], b"gzip"): (InputFileError, "damaged gzip", 255),
        zboot_file(compress(inner, "xzkern")[:-30], b"xzkern"): (InputFileError, "damaged xz", 255),
        zboot_file(compress(inner, "zstd22")[:-30], b"zstd22"):
            (InputFileError, "damaged zstd data \\(the zstd data ends inside a frame", 255),
        zboot_file(gzip.compress(bytes(0x1000)), b"gzip"):
            (ImageError, r"\(zboot payload\): not an arm64 Image", None),
    }
    for data, (error, message, status) in refused.items():
        with pytest.raises(error, match=message) as e:
            zboot_image(data, "vmlinuz.efi")
        assert str(e.value).startswith("vmlinuz.efi") and "\n" not in str(e.value)
        assert getattr(e.value, "exit_status", None) == status or status is None
    for how in ("gzip", "lzma", "zstd22"):      # a bomb: stopped at the limit
        bomb = zboot_file(compress(inner + bytes(4 << 20), how), how.encode())
        with pytest.raises(InputFileError, match="decompresses .* to more than the 0x40000 bytes"):
            zboot_image(bomb, "vmlinuz.efi", limit=1 << 18)
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)
    with pytest.raises(InputFileError, match="zstandard is missing"):
        zboot_image(zboot_file(compress(inner, "zstd22"), b"zstd22"), "vmlinuz.efi")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["gzip", "lzma", "zstd22"]), st.integers(0, 10**6), st.binary(min_size=1,
                                                                                     max_size=4))
def test_damaged_zboot_payloads_are_one_line(how, where, junk):
    """Any damage to the payload: the Image back, or one ImageError line."""
    from pykexec.arch.arm64.image import zboot_image
    payload = bytearray(PAYLOADS[how])
    at = where % len(payload)
    payload[at:at + len(junk)] = junk
    from pykexec.core.inputfiles import InputFileError
    try:
        zboot_image(zboot_file(bytes(payload), how.encode()), "vmlinuz.efi")
    except (ImageError, InputFileError) as e:
        assert str(e).startswith("vmlinuz.efi") and "\n" not in str(e)


PAYLOADS = {how: compress(padded(efi_image(cert_size=0x100), 0x10000), how)
            for how in ("gzip", "lzma")}
PAYLOADS["zstd22"] = (compress(padded(efi_image(cert_size=0x100), 0x10000), "zstd22")
                      if shutil.which("zstd") else gzip.compress(b""))


def test_truncated_pe_header_is_one_line():
    """Found by test_arm64_explain's hypothesis run: a file cut inside the PE optional
    header raised construct's StreamError."""
    data = efi_image()[:0xE0]
    with pytest.raises(ImageError, match=r"^Image: the PE optional header at 0x58 runs past the "
                                         r"end of the file \(0xe0\)$"):
        parse_image(data, "Image")


def test_damaged_deflate_block_is_one_line():
    """Found by the hypothesis test above: a gzip payload whose first deflate block is
    damaged raised zlib.error out of core.inputfiles.decompress_bounded (the -c path's
    reader too), not its one-line refusal."""
    from pykexec.core.inputfiles import InputFileError, decompress_bounded
    payload = bytearray(PAYLOADS["gzip"])
    payload[10] = 0                              # the first byte after the gzip header
    with pytest.raises(InputFileError, match=r"^k: cannot determine the file type of the "
                                             r"kernel: damaged gzip data \(Error -3"):
        decompress_bounded(bytes(payload), "gzip", "k", "kernel", 1 << 30, "1 GiB")
