"""EFI zboot (CONFIG_EFI_ZBOOT) for kexec_load: a PE file whose header names a compressed
Image inside it (`zimg`, offset, size, "gzip"/"lzma"/"xzkern"/"zstd"). kexec-tools calls
this type "vmlinuz". The Image is taken out (pykexec.arch.arm64.image.zboot_image: payload
decompressed, a signed Image ended at its certificate table) and loaded as an Image."""

from __future__ import annotations

from typing import Optional

from pykexec.arch.arm64.image import ImageError, parse_image, parse_zboot, zboot_image
from pykexec.arch.arm64.load import Arm64Load
from pykexec.core.plan import Plan

NAME = "vmlinuz"


def probe(kernel: bytes) -> Optional[str]:
    try:
        parse_zboot(kernel)
    except ImageError as err:
        return str(err).split(": ", 1)[-1]
    return None


def load(inputs) -> Plan:
    kernel = zboot_image(inputs.kernel, inputs.kernel_path)
    image = parse_image(kernel, inputs.kernel_path)
    return Arm64Load(inputs, image, NAME, kernel).plan()
