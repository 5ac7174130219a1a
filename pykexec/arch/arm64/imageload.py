"""The arm64 Image format for kexec_load: an uncompressed Image (also PE-signed, as Debian
ships /boot/vmlinuz), or an Image.gz, which the input reader has already gunzipped as
kexec-tools' does. The whole file is loaded, signature included (kexec-tools does so too:
the certificate table lies within image_size, in memory the kernel clears as BSS)."""

from __future__ import annotations

from typing import Optional

from pykexec.arch.arm64.image import ImageError, parse_image
from pykexec.arch.arm64.load import Arm64Load
from pykexec.core.plan import Plan

NAME = "Image"


def probe(kernel: bytes) -> Optional[str]:
    try:
        parse_image(kernel)
    except ImageError as err:
        return str(err).split(": ", 1)[-1]
    return None


def load(inputs) -> Plan:
    image = parse_image(inputs.kernel, inputs.kernel_path)
    return Arm64Load(inputs, image, NAME, inputs.kernel).plan()
