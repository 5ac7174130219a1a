"""What the views read back out of an arm64 plan (pykexec.arch.interfaces.PlanDecoder).

arm64 has no boot-parameter block, memory map or setup_data: the device tree carries the
command line, initrd and crash properties (shown from the plan's `dtb_edits` note). What
is left to decode is which core-header PT_LOAD maps the kernel image: the one above the
linear map, in the upper half of the kernel's address space (2^64 - 2^47 and up for every
VA_BITS since 5.4, where the image and vmalloc live; the linear map lies below).
"""

from __future__ import annotations

from typing import Optional

UPPER_HALF = 0xFFFF800000000000
NO_VADDR = (1 << 64) - 1

E820_TYPE_NAMES: dict = {}
E820_IN_BOOT_PARAMS = 0
SETUP_DATA_NAMES: dict = {}
SETUP_DATA_MEANING: dict = {}
# the views' words for arm64's segments
SEGMENT_PURPOSE = {
    "kernel": "the new kernel's Image, run where it is loaded (image_size includes its BSS)",
    "dtb": "device tree for the new kernel: /chosen holds its command line, initrd and, for "
           "-p, the core header's address and the memory it may use",
    "purgatory": "runs before the new kernel: checks the segments' SHA-256, enters the Image "
                 "with x0 = the device tree's address",
}


def is_kernel_text(vaddr: int) -> bool:
    return UPPER_HALF <= vaddr < NO_VADDR


def is_boot_params(seg) -> bool:
    return False


def boot_params_segment(plan):
    return None


def cmdline_address(plan) -> Optional[int]:
    return None          # the command line is the device tree's /chosen/bootargs


def setup_data_chain(plan) -> list:
    return []


def read_e820(plan) -> list:
    return []


def boot_header(plan) -> dict:
    return {}


def find_entry_registers(plan) -> Optional[dict]:
    return None          # purgatory's symbols are in the plan's notes


def bzimage_payload(kernel: bytes) -> Optional[bytes]:
    """kexec_load copies the whole Image file (a signed one with its signature)."""
    return kernel
