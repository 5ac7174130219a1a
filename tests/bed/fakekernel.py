"""A minimal fake x86_64 bzImage: just enough header for kexec's bzImage64 loader.

It is never booted. It only has to pass the bzImage64 probe (boot flag, "HdrS", protocol
>= 2.12, LOADED_HIGH, xloadflags KERNEL_64 | CAN_BE_LOADED_ABOVE_4G) and give the loader
the header fields it places the kernel with (setup_sects, kernel_alignment, init_size,
cmdline_size, pref_address). The payload is a recognisable byte pattern so a test can
find the protected-mode part in a plan.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from tests.bed.bootproto import SETUP_HEADER_JUMP, SETUP_HEADER_OFFSET, SetupHeader

SECTOR = 512
LOADED_HIGH = 0x01
# XLF_KERNEL_64, CAN_BE_LOADED_ABOVE_4G, EFI_HANDOVER_32/64, EFI_KEXEC, 5LEVEL, 5LEVEL_ENABLED:
# what a Debian 6.1 kernel advertises.
XLOADFLAGS_DEBIAN = 0x7F


@dataclass(frozen=True)
class FakeKernel:
    setup_sects: int = 4
    payload_size: int = 16 * 1024
    init_size: int = 8 * 1024 * 1024
    kernel_alignment: int = 0x200000
    pref_address: int = 0x1000000
    protocol: int = 0x020F
    xloadflags: int = XLOADFLAGS_DEBIAN
    cmdline_size: int = 2048

    @property
    def setup_size(self) -> int:
        """Bytes before the protected-mode payload: the boot sector plus setup_sects sectors."""
        return (self.setup_sects + 1) * SECTOR


def payload_bytes(size: int) -> bytes:
    """A pattern that is easy to recognise and differs from page to page."""
    block = bytes(range(256))
    out = bytearray()
    page = 0
    while len(out) < size:
        out += b"FAKEKERN" + page.to_bytes(8, "little") + block[16:] + block * 15
        page += 1
    return bytes(out[:size])


def bzimage_bytes(k: FakeKernel = FakeKernel()) -> bytes:
    setup = bytearray(k.setup_size)
    header = SetupHeader.build(dict(
        setup_sects=k.setup_sects,
        root_flags=1,
        syssize=(k.payload_size + 15) // 16,
        ram_size=0,
        vid_mode=0xFFFF,
        root_dev=0,
        boot_flag=0xAA55,
        jump=SETUP_HEADER_JUMP,
        version=k.protocol,
        realmode_swtch=0,
        start_sys_seg=0x1000,
        kernel_version=0,
        type_of_loader=0,
        loadflags=LOADED_HIGH,
        setup_move_size=0x8000,
        code32_start=0x100000,
        ramdisk_image=0,
        ramdisk_size=0,
        bootsect_kludge=0,
        heap_end_ptr=0,
        ext_loader_ver=0,
        ext_loader_type=0,
        cmd_line_ptr=0,
        initrd_addr_max=0x7FFFFFFF,
        kernel_alignment=k.kernel_alignment,
        relocatable_kernel=1,
        min_alignment=21,
        xloadflags=k.xloadflags,
        cmdline_size=k.cmdline_size - 1,   # the header counts without the NUL
        hardware_subarch=0,
        hardware_subarch_data=0,
        payload_offset=0,
        payload_length=0,
        setup_data=0,
        pref_address=k.pref_address,
        init_size=k.init_size,
        handover_offset=0,
        kernel_info_offset=0,
    ))
    setup[SETUP_HEADER_OFFSET:SETUP_HEADER_OFFSET + len(header)] = header
    return bytes(setup) + payload_bytes(k.payload_size)


def make_bzimage(path: str, kernel: FakeKernel = FakeKernel()) -> str:
    """Write a fake bzImage to `path`; returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(bzimage_bytes(kernel))
    return path


def make_initrd(path: str, size: int = 64 * 1024) -> str:
    """An initrd-shaped file (only its bytes matter to a loader): a pattern of `size` bytes."""
    with open(path, "wb") as f:
        f.write((b"FAKEINITRD" + bytes(range(246))) * (size // 256) + b"\xEE" * (size % 256))
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="write a minimal fake x86_64 bzImage")
    ap.add_argument("path")
    ap.add_argument("--init-size", type=lambda s: int(s, 0), default=FakeKernel.init_size)
    ns = ap.parse_args(argv)
    make_bzimage(ns.path, FakeKernel(init_size=ns.init_size))


if __name__ == "__main__":
    main()
