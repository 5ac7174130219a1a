"""EFI zboot (CONFIG_EFI_ZBOOT) for kexec_load: a PE file whose header names a compressed
Image inside it (`zimg`, offset, size, "gzip"/"lzma"/"xzkern"/"zstd"). kexec-tools calls
this type "vmlinuz". The Image is decompressed here, trimmed at its own certificate table
when signed, and loaded as an Image."""

from __future__ import annotations

import io
from typing import Optional

from pykexec.arch.arm64.image import ImageError, parse_image, parse_zboot
from pykexec.arch.arm64.load import Arm64Load
from pykexec.core.inputfiles import decompress_bounded
from pykexec.core.plan import Plan
from pykexec.errors import LoadError

NAME = "vmlinuz"
# zboot's compression names -> the input reader's decompressors
DECOMPRESSORS = {"gzip": "gzip", "lzma": "xz", "xzkern": "xz"}
ZBOOT_IMAGE_LIMIT = 1 << 30


def probe(kernel: bytes) -> Optional[str]:
    try:
        parse_zboot(kernel)
    except ImageError as err:
        return str(err).split(": ", 1)[-1]
    return None


def inner_image(data: bytes, path: str, limit: int = ZBOOT_IMAGE_LIMIT) -> bytes:
    """The Image a zboot file carries, decompressed and without its signature."""
    zboot = parse_zboot(data, path)
    payload = zboot.payload(data)
    kind = zboot.compress_type
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise LoadError(f"{path}: a zstd-compressed zboot Image needs the Python package "
                            "zstandard") from None
        out = bytearray()
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload))
            while True:
                chunk = reader.read(1 << 20)
                if not chunk:
                    break
                out += chunk
                if len(out) > limit:
                    raise LoadError(f"{path}: the zboot payload decompresses to more than "
                                    f"{limit:#x} bytes")
        except zstandard.ZstdError as err:
            raise LoadError(f"{path}: damaged zstd payload ({err})") from None
        image = bytes(out)
    elif kind in DECOMPRESSORS:
        image = decompress_bounded(payload, DECOMPRESSORS[kind], path, "zboot payload", limit,
                                   f"{limit:#x} bytes")
    else:
        raise LoadError(f"{path}: zboot payload compressed with {kind!r}, which pykexec cannot "
                        f"decompress (gzip, lzma, xzkern, zstd)")
    header = parse_image(image, f"{path} (zboot payload)")
    return image[:header.unsigned_size]


def load(inputs) -> Plan:
    kernel = inner_image(inputs.kernel, inputs.kernel_path)
    image = parse_image(kernel, inputs.kernel_path)
    return Arm64Load(inputs, image, NAME, kernel).plan()
