"""The bzImage file: its setup header, what the boot protocol lets a loader do with it.

Only reading and checking live here; building the zero page is `zeropage`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pykexec.errors import PykexecError
from pykexec.arch.x86 import bootparams as bp

PAGE_SIZE = 0x1000


class ImageError(PykexecError, ValueError):
    """The file is not a kernel this loader can use; the message says why."""

    exit_status = 255   # kexec-tools' loaders return -1: "Cannot load"


@dataclass(frozen=True)
class BzImage:
    data: bytes
    header: object  # the parsed setup header (construct Container)

    @classmethod
    def parse(cls, data: bytes) -> "BzImage":
        if len(data) < 1024:
            raise ImageError("too short for a bzImage")
        # only the header's bytes: a slice to the end would copy the whole kernel per parse
        hdr = bp.SetupHeader.parse(
            data[bp.SETUP_HEADER_OFFSET:bp.SETUP_HEADER_OFFSET + bp.SETUP_HEADER_SIZE])
        if hdr.boot_flag != bp.BOOT_FLAG or hdr.header != bp.HDRS_MAGIC:
            raise ImageError("no Linux boot header (missing 0xAA55 / HdrS)")
        image = cls(data, hdr)
        if len(data) < image.setup_size:
            raise ImageError("truncated bzImage (shorter than its setup code)")
        return image

    @property
    def protocol(self) -> int:
        return self.header.version

    def validate(self, path: str) -> "BzImage":
        """Every header field a plan uses, checked against the file and the boot protocol
        (HEADER_RULES); ImageError naming `path`, the field and its value otherwise."""
        for rule in HEADER_RULES:
            if self.protocol < rule.since:
                continue
            value = getattr(self.header, rule.field)
            if not rule.ok(self, value):
                raise ImageError(f"{path}: setup header {rule.field}={value:#x} (boot protocol "
                                 f"{self.protocol >> 8}.{self.protocol & 0xff}, file "
                                 f"{len(self.data):#x} bytes): {rule.problem(self, value)}")
        return self

    @property
    def setup_size(self) -> int:
        """The real-mode part: (setup_sects or 4, plus the boot sector) × 512 bytes."""
        return ((self.header.setup_sects or 4) + 1) * 512

    @property
    def payload(self) -> bytes:
        """The protected-mode image that a 64-bit or 32-bit boot loads."""
        return self.data[self.setup_size:]

    @property
    def payload_size(self) -> int:
        """len(payload), without copying it."""
        return max(len(self.data) - self.setup_size, 0)

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
        return self.header.init_size if self.protocol >= 0x020A else 4 * self.payload_size


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class HeaderRule:
    """A setup-header field the loaders rely on, from the protocol version that defines it:
    `ok(image, value)` says whether the value can be used, `problem` why not."""

    field: str
    since: int
    ok: Callable[["BzImage", int], bool]
    problem: Callable[["BzImage", int], str]


# The kernel's own rules (Documentation/arch/x86/boot.rst) for what the loaders read.
HEADER_RULES = (
    # The build tool writes setup + syssize paragraphs; a signature may follow, but a
    # file that ends before that is a truncated kernel (or a damaged setup_sects).
    HeaderRule("syssize", 0x0204,
               lambda im, v: v > 0 and im.setup_size + v * 16 <= len(im.data),
               lambda im, v: f"the setup code ({im.setup_size:#x} bytes, setup_sects="
                             f"{im.header.setup_sects}) and the {v * 16:#x}-byte protected-mode "
                             "part it announces run past the end of the file: a truncated or "
                             "damaged kernel"),
    # startup_32/64 round their load address up to kernel_alignment (mask arithmetic):
    # 0 or a non-power of two would start the kernel at a wrong address.
    HeaderRule("kernel_alignment", 0x0205, lambda im, v: _is_power_of_two(v),
               lambda im, v: "must be a power of two (the kernel aligns its load address "
                             "with it)"),
    # A relocatable kernel's preferred address, and a fixed one's only address.
    HeaderRule("pref_address", 0x020A, lambda im, v: v % PAGE_SIZE == 0 and v < 1 << 52,
               lambda im, v: "not a page-aligned physical address"),
    # The memory the kernel needs from its load address while it decompresses: at least
    # the protected-mode part the loader copies there.
    HeaderRule("init_size", 0x020A, lambda im, v: v >= im.payload_size,
               lambda im, v: f"smaller than the {im.payload_size:#x}-byte protected-mode part "
                             "that has to fit there"),
)


def parse_for_probe(data: bytes):
    """(image, None) for a bzImage, else (None, why not): a format's probe step."""
    try:
        return BzImage.parse(data), None
    except ImageError as err:
        return None, str(err)
    except Exception:  # construct's own errors on short or odd data
        return None, "not a bzImage"


# Room after the command line's NUL, as kexec-tools leaves.
PURGATORY_CMDLINE_SPARE = 64
SETUP_MIN_ADDR = 0x3000


def place_setup(load, image: BzImage, cmdline: str) -> int:
    """The setup area (zero page, then the command line) placed top-down; its address."""
    from pykexec.core.cmdline import byte_length
    setup_len = image_setup_size(image) + byte_length(cmdline) + 1 + PURGATORY_CMDLINE_SPARE
    return load.layout.place(setup_len, "boot_params",
                             "zero page from the bzImage's setup header, then the command line",
                             align=16, low=SETUP_MIN_ADDR)


def image_setup_size(image: BzImage) -> int:
    return max(image.setup_size, 4096)  # the command line follows the setup area


def fill_setup(load, image: BzImage, kernel_addr: int, setup_addr: int, cmdline: str,
               initrd_min: int, initrd_max=None) -> int:
    """The kernel's bytes, the initrd and setup_data placed, the zero page and command line
    written at `setup_addr`; returns the command line's address."""
    from pykexec.core.cmdline import as_bytes
    load.layout.fill(kernel_addr, image.payload)
    initrd, setup_data = load.place_initrd_and_setup_data(initrd_min, initrd_max)
    setup_size = image_setup_size(image)
    cmdline_addr = setup_addr + setup_size
    zero_page = load.zero_page(image.header_bytes, cmdline_addr, setup_size, initrd, setup_data)
    load.layout.fill(setup_addr, zero_page + bytes(setup_size - len(zero_page))
                     + as_bytes(cmdline) + bytes(1 + PURGATORY_CMDLINE_SPARE))
    return cmdline_addr
