"""arm64 kernel files: the Image header, Image.gz, and EFI zboot, declared with construct.

- **Image** (Documentation/arch/arm64/booting.rst): a 64-byte little-endian header at the
  start: two code words, `text_offset` (where in a 2 MiB aligned window the image goes),
  `image_size` (bytes the kernel occupies, BSS included; 0 before Linux 3.17, when
  text_offset is 0x80000 and the size unknown), `flags` (bit 0 big endian, bits 1-2 page
  size 4K/16K/64K, bit 3 "place anywhere" in physical memory), the magic "ARM\\x64" at 0x38
  and, when the kernel has the EFI stub, the offset of its PE header at 0x3c; the first
  code word then starts with "MZ". Debian ships this, signed: a PE/COFF file whose
  certificate table (data directory 4) follows the image.
- **Image.gz**: a gzip file holding an Image.
- **EFI zboot** (CONFIG_EFI_ZBOOT, drivers/firmware/efi/libstub/zboot-header.S): a PE file
  whose DOS header carries "zimg", the compressed payload's offset and size and the
  compression's name (Makefile.zboot: "gzip", "lz4", "lzma", "lzo", "xzkern", "zstd22");
  the payload holds an Image padded with zeros to its image_size (BSS included), itself
  possibly signed. `zboot_image` decompresses gzip, zstd (the zstandard package), lzma and
  xz (core.inputfiles' bounded readers), and ends a signed inner Image at the end of its certificate table (kexec-tools'
  rule: the signature stays for a kernel that checks it, the padding goes).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Optional

from construct import (Bytes, Const, ConstructError, Int16ul, Int32ul, Int64ul, PaddedString,
                       Struct)

from pykexec.abi.pe import MZ_MAGIC, PE_SIGNATURE, CoffHeader
from pykexec.errors import PykexecError

ARM64_IMAGE_MAGIC = b"ARM\x64"
PE_MAGIC = PE_SIGNATURE
GZIP_MAGIC = b"\x1f\x8b"
ZBOOT_IMAGE_TYPE = b"zimg"
IMAGE_FILE_MACHINE_ARM64 = 0xAA64
PE32_PLUS_MAGIC = 0x20B
IMAGE_DIRECTORY_ENTRY_SECURITY = 4      # the certificate table (Authenticode signatures)
PRE_3_17_TEXT_OFFSET = 0x80000          # image_size == 0: the kernel predates the fields

FLAG_BE = 1 << 0
FLAG_PAGE_SIZE_SHIFT = 1
FLAG_PAGE_SIZE_MASK = 3 << FLAG_PAGE_SIZE_SHIFT
FLAG_PHYS_ANYWHERE = 1 << 3
PAGE_SIZES = {0: None, 1: 4096, 2: 16384, 3: 65536}    # field value → bytes (0: unspecified)

Arm64ImageHeader = Struct(
    "code0" / Int32ul,
    "code1" / Int32ul,
    "text_offset" / Int64ul,
    "image_size" / Int64ul,
    "flags" / Int64ul,
    "res2" / Int64ul,
    "res3" / Int64ul,
    "res4" / Int64ul,
    "magic" / Const(ARM64_IMAGE_MAGIC),
    "pe_offset" / Int32ul,               # res5: the PE header's offset when there is one
)

ZbootHeader = Struct(
    "mz_magic" / Const(MZ_MAGIC + b"\0\0"),
    "image_type" / Const(ZBOOT_IMAGE_TYPE),
    "payload_offset" / Int32ul,
    "payload_size" / Int32ul,            # the compressed stream, without a trailing size word
    "reserved" / Bytes(8),
    "compress_type" / PaddedString(0x38 - 0x18, "ascii"),
    "pe_magic" / Bytes(4),
    "pe_offset" / Int32ul,
)

# The PE header (abi.pe's COFF header) and the first field of the optional header: only
# what locates the certificate table.
PeCoffHeader = Struct(*CoffHeader.subcons, "optional_magic" / Int16ul)
PE32_PLUS_NUMBER_OF_RVA_AND_SIZES = 108   # offsets in the PE32+ optional header
PE32_PLUS_DATA_DIRECTORIES = 112
DataDirectory = Struct("virtual_address" / Int32ul, "size" / Int32ul)


class ImageError(PykexecError, ValueError):
    """Not an arm64 kernel file of a known kind, or one that contradicts itself (one line)."""


@dataclass(frozen=True)
class PeInfo:
    offset: int                     # of "PE\0\0"
    machine: int
    sections: int
    certificate_offset: int         # file offset of the certificate table (0: unsigned)
    certificate_size: int


@dataclass(frozen=True)
class Arm64Image:
    """The header of an uncompressed arm64 Image."""

    text_offset: int
    image_size: int                 # 0: a kernel older than 3.17 (size unknown)
    flags: int
    file_size: int
    pe: Optional[PeInfo]            # the EFI stub's PE/COFF wrapper (Debian's signed Image)

    @property
    def big_endian(self) -> bool:
        return bool(self.flags & FLAG_BE)

    @property
    def page_size(self) -> Optional[int]:
        """4096, 16384 or 65536; None when the kernel does not say."""
        return PAGE_SIZES[(self.flags & FLAG_PAGE_SIZE_MASK) >> FLAG_PAGE_SIZE_SHIFT]

    @property
    def place_anywhere(self) -> bool:
        """The image may sit at any 2 MiB aligned base (else as close to RAM's start as can be)."""
        return bool(self.flags & FLAG_PHYS_ANYWHERE)

    @property
    def legacy(self) -> bool:
        """image_size 0: pre-3.17, text_offset 0x80000 and an unknown footprint."""
        return self.image_size == 0

    @property
    def effective_text_offset(self) -> int:
        return PRE_3_17_TEXT_OFFSET if self.legacy else self.text_offset

    @property
    def signed(self) -> bool:
        return self.pe is not None and self.pe.certificate_size > 0

    @property
    def unsigned_size(self) -> int:
        """Bytes before the certificate table (the whole file when unsigned)."""
        return self.pe.certificate_offset if self.signed else self.file_size

    @property
    def signed_size(self) -> int:
        """Bytes up to the end of the certificate table (the whole file when unsigned)."""
        return (self.pe.certificate_offset + self.pe.certificate_size if self.signed
                else self.file_size)


@dataclass(frozen=True)
class Zboot:
    """An EFI zboot file's header: where its compressed Image is, and how it is compressed."""

    payload_offset: int
    payload_size: int
    compress_type: str              # "gzip", "zstd", "lzma", "xzkern", "lzo", "lz4"...
    pe: Optional[PeInfo]

    def payload(self, data: bytes) -> bytes:
        return data[self.payload_offset:self.payload_offset + self.payload_size]


def _pe_info(data: bytes, offset: int, name: str) -> Optional[PeInfo]:
    if offset == 0:
        return None
    try:
        pe = PeCoffHeader.parse(data[offset:offset + PeCoffHeader.sizeof()])
    except ConstructError:
        raise ImageError(f"{name}: no PE header at {offset:#x}, where the header points") from None
    cert_offset = cert_size = 0
    opt = offset + CoffHeader.sizeof()     # the optional header follows the COFF header
    if pe.optional_magic == PE32_PLUS_MAGIC and pe.size_of_optional_header >= \
            PE32_PLUS_DATA_DIRECTORIES + 8 * (IMAGE_DIRECTORY_ENTRY_SECURITY + 1):
        if opt + PE32_PLUS_DATA_DIRECTORIES + 8 * (IMAGE_DIRECTORY_ENTRY_SECURITY + 1) > len(data):
            raise ImageError(f"{name}: the PE optional header at {opt:#x} runs past the end of "
                             f"the file ({len(data):#x})")
        count = Int32ul.parse(data[opt + PE32_PLUS_NUMBER_OF_RVA_AND_SIZES:][:4])
        if count > IMAGE_DIRECTORY_ENTRY_SECURITY:
            at = opt + PE32_PLUS_DATA_DIRECTORIES + 8 * IMAGE_DIRECTORY_ENTRY_SECURITY
            d = DataDirectory.parse(data[at:at + 8])
            # For the certificate table, virtual_address is a file offset.
            cert_offset, cert_size = d.virtual_address, d.size
            if cert_size and cert_offset + cert_size > len(data):
                raise ImageError(f"{name}: certificate table {cert_offset:#x}+{cert_size:#x} "
                                 f"runs past the end of the file ({len(data):#x})")
    return PeInfo(offset=offset, machine=pe.machine, sections=pe.number_of_sections,
                  certificate_offset=cert_offset, certificate_size=cert_size)


def parse_image(data: bytes, name: str = "kernel") -> Arm64Image:
    """The header of an arm64 Image (ImageError if `data` is not one)."""
    try:
        head = Arm64ImageHeader.parse(data)
    except ConstructError:
        raise ImageError(f"{name}: not an arm64 Image (no ARM\\x64 magic at 0x38)") from None
    pe = _pe_info(data, head.pe_offset, name) if data[:2] == MZ_MAGIC else None
    if pe is not None and pe.machine != IMAGE_FILE_MACHINE_ARM64:
        raise ImageError(f"{name}: PE machine {pe.machine:#x} is not arm64 ({IMAGE_FILE_MACHINE_ARM64:#x})")
    unsigned = pe.certificate_offset if pe and pe.certificate_size else len(data)
    if head.image_size and head.image_size < unsigned:
        # image_size covers text, data and BSS: never less than the file without its signature.
        raise ImageError(f"{name}: image_size {head.image_size:#x} is smaller than the file "
                         f"({len(data):#x})")
    return Arm64Image(text_offset=head.text_offset, image_size=head.image_size,
                      flags=head.flags, file_size=len(data), pe=pe)


def parse_zboot(data: bytes, name: str = "kernel") -> Zboot:
    """The header of an EFI zboot file (ImageError if `data` is not one)."""
    try:
        head = ZbootHeader.parse(data)
    except ConstructError:
        raise ImageError(f"{name}: not an EFI zboot image (no MZ + zimg header)") from None
    if head.payload_offset + head.payload_size > len(data) or head.payload_size == 0:
        raise ImageError(f"{name}: zboot payload {head.payload_offset:#x}+{head.payload_size:#x} "
                         f"lies outside the file ({len(data):#x} bytes)")
    return Zboot(payload_offset=head.payload_offset, payload_size=head.payload_size,
                 compress_type=head.compress_type,
                 pe=_pe_info(data, head.pe_offset, name))


def gunzip_image(data: bytes, name: str = "kernel", limit: int = 1 << 30) -> bytes:
    """The Image inside an Image.gz (at most `limit` bytes: a bomb is refused)."""
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = dec.decompress(data, limit)
    except zlib.error as e:
        raise ImageError(f"{name}: bad gzip data ({e})") from None
    if dec.unconsumed_tail:
        raise ImageError(f"{name}: decompresses to more than {limit} bytes")
    if not dec.eof:
        raise ImageError(f"{name}: the gzip data is truncated")
    return out


IMAGE_LIMIT = 1 << 30           # no arm64 Image is near 1 GiB: more is a decompression bomb
# zboot's compression names (Makefile.zboot's comp-type) -> core.inputfiles' decompressors
# (liblzma reads both the .lzma "alone" format of cmd_lzma and xz_wrap.sh's .xz)
ZBOOT_COMPRESSIONS = {"gzip": "gzip", "lzma": "xz", "xzkern": "xz", "zstd22": "zstd",
                      "zstd": "zstd"}


def zboot_image(data: bytes, name: str = "kernel", limit: int = IMAGE_LIMIT) -> bytes:
    """The Image inside an EFI zboot file: its payload decompressed (at most `limit`
    bytes, by core.inputfiles.decompress_bounded, whose InputFileError says a bomb or
    damaged data with the exit status kexec-tools gives) and, when that Image is signed,
    ended at its certificate table's end (the zero padding zboot adds up to image_size
    dropped). ImageError (one line naming `name`) for a compression pykexec cannot undo
    or no Image inside."""
    from pykexec.core.inputfiles import decompress_bounded
    zboot = parse_zboot(data, name)
    method = ZBOOT_COMPRESSIONS.get(zboot.compress_type)
    if method is None:
        raise ImageError(f"{name}: the zboot payload is compressed with "
                         f"{zboot.compress_type!r}; pykexec reads gzip, lzma, xzkern and zstd")
    inner = decompress_bounded(zboot.payload(data), method, name, "zboot payload", limit,
                               "an arm64 Image's limit")
    image = parse_image(inner, f"{name} (zboot payload)")
    return inner[:image.signed_size]


def kind(data: bytes) -> Optional[str]:
    """"image", "zboot", "gzip" or None: what an arm64 kernel file is, from its first bytes."""
    if data[4:8] == ZBOOT_IMAGE_TYPE and data[:2] == MZ_MAGIC:
        return "zboot"
    if data[0x38:0x3c] == ARM64_IMAGE_MAGIC:
        return "image"
    if data[:2] == GZIP_MAGIC:
        return "gzip"
    return None


__all__ = ["Arm64Image", "Arm64ImageHeader", "ImageError", "PeInfo", "Zboot", "ZbootHeader",
           "gunzip_image", "kind", "parse_image", "parse_zboot", "zboot_image"]
