"""Minimal fake i386 kernels for the i386 loaders (never booted).

* `I386_BZIMAGE`: tests/bed/fakekernel.py's bzImage with a 32-bit kernel's header, as
  Debian's 686 kernels have it: no 64-bit entry (xloadflags 0), 16 MiB alignment and
  preferred address, init_size a little over 16 MiB.
* `vmlinux32_bytes`: an ELF32 EM_386 executable shaped like a 686 vmlinux: two PT_LOADs
  at physical 16 MiB (text, then data with a bss tail), linked at 0xc1000000, entry at
  the physical start (startup_32).
"""

from __future__ import annotations

import struct

from tests.bed.fakekernel import FakeKernel, payload_bytes

I386_BZIMAGE = FakeKernel(setup_sects=4, payload_size=64 * 1024, init_size=0x100C000,
                          kernel_alignment=0x1000000, pref_address=0x1000000,
                          protocol=0x020F, xloadflags=0, cmdline_size=2048)

PHYS = 0x1000000
VIRT = 0xC1000000


def vmlinux32_bytes(text_size: int = 0x40000, data_size: int = 0x8000,
                    bss_size: int = 0x20000, phys: int = PHYS) -> bytes:
    """An ELF32 vmlinux: Ehdr, 2 Phdrs, text at file offset 0x1000, data after it."""
    ehsize, phentsize, phnum = 52, 32, 2
    text_off = 0x1000
    data_off = text_off + text_size
    data_phys = phys + text_size
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, phys, ehsize, 0, 0, ehsize,
                               phentsize, phnum, 40, 0, 0)
    phdrs = struct.pack("<8I", 1, text_off, VIRT, phys, text_size, text_size, 5, 0x1000)
    phdrs += struct.pack("<8I", 1, data_off, VIRT + text_size, data_phys, data_size,
                         data_size + bss_size, 6, 0x1000)
    head = ehdr + phdrs
    return (head + bytes(text_off - len(head)) + payload_bytes(text_size)
            + b"D" * data_size)


def make_vmlinux32(path: str, **kw) -> str:
    with open(path, "wb") as f:
        f.write(vmlinux32_bytes(**kw))
    return path
