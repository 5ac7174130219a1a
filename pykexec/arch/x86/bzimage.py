"""The bzImage file: its setup header, what the boot protocol lets a loader do with it.

Only reading and checking live here; building the zero page is `zeropage`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

from pykexec.structs import bootparams as bp


class ImageError(ValueError):
    """The file is not a kernel this loader can use; the message says why."""


@dataclass(frozen=True)
class BzImage:
    data: bytes
    header: object  # the parsed setup header (construct Container)

    @classmethod
    def parse(cls, data: bytes) -> "BzImage":
        if len(data) < 1024:
            raise ImageError("too short for a bzImage")
        hdr = bp.SetupHeader.parse(data[bp.SETUP_HEADER_OFFSET:])
        if hdr.boot_flag != bp.BOOT_FLAG or hdr.header != bp.HDRS_MAGIC:
            raise ImageError("no Linux boot header (missing 0xAA55 / HdrS)")
        image = cls(data, hdr)
        if len(data) < image.setup_size:
            raise ImageError("truncated bzImage (shorter than its setup code)")
        return image

    @property
    def protocol(self) -> int:
        return self.header.version

    @property
    def setup_size(self) -> int:
        """The real-mode part: (setup_sects or 4, plus the boot sector) × 512 bytes."""
        return ((self.header.setup_sects or 4) + 1) * 512

    @property
    def payload(self) -> bytes:
        """The protected-mode image that a 64-bit or 32-bit boot loads."""
        return self.data[self.setup_size:]

    @property
    def header_bytes(self) -> bytes:
        """The setup header as the kernel file has it, from 0x1f1 up to where `jump` says it
        ends (0x202 + the jump's offset byte), capped at the fields this protocol defines."""
        end = 0x202 + self.data[0x201]
        end = min(end, bp.SETUP_HEADER_OFFSET + 0x7F)
        return self.data[bp.SETUP_HEADER_OFFSET:end]

    @property
    def supports_64bit_entry(self) -> bool:
        flags = bp.XLF_KERNEL_64 | bp.XLF_CAN_BE_LOADED_ABOVE_4G
        return (self.protocol >= 0x020C and self.header.loadflags & bp.LOADED_HIGH
                and self.header.xloadflags & flags == flags)

    @property
    def relocatable(self) -> bool:
        return self.protocol >= 0x0205 and bool(self.header.relocatable_kernel)

    @property
    def init_size(self) -> int:
        """Memory the kernel needs from its load address while it decompresses and starts."""
        return self.header.init_size if self.protocol >= 0x020A else 4 * len(self.payload)


def probe_bzimage64(data: bytes) -> bool:
    try:
        return bool(BzImage.parse(data).supports_64bit_entry)
    except Exception:  # construct raises its own errors on garbage
        return False
