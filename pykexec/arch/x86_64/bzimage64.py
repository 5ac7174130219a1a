"""bzImage64: a bzImage entered at its 64-bit entry (startup_64, load address + 0x200).

Placement follows kexec-tools, top-down in the window: (for -p: backup, elfcorehdr,) purgatory,
setup (zero page + command line), kernel (aligned as its header asks, init_size bytes),
initrd; setup_data bottom-up. Keeping the same order keeps the two loaders' layouts
comparable byte for byte everywhere but purgatory.
"""

from __future__ import annotations

from typing import Optional

from pykexec.arch.x86.bzimage import BzImage, ImageError
from pykexec.arch.x86_64.normalload import open_load
from pykexec.core.cmdline import as_bytes, byte_length, check_final, check_user_part
from pykexec.errors import LoadError
from pykexec.core.plan import Plan
from pykexec.core.ranges import align_up

NAME = "bzImage64"
STARTUP_64_OFFSET = 0x200
INITRD_MIN_ADDR = 0x1000000
SETUP_MIN_ADDR = 0x3000
PURGATORY_CMDLINE_SPARE = 64  # room after the command line's NUL, as kexec-tools leaves


def probe(data: bytes) -> Optional[str]:
    """None if this is a bzImage with a 64-bit entry, else why not."""
    try:
        image = BzImage.parse(data)
    except ImageError as err:
        return str(err)
    except Exception:  # construct's own errors on short or odd data
        return "not a bzImage"
    if not image.supports_64bit_entry:
        return (f"boot protocol {image.protocol >> 8}.{image.protocol & 0xff} without a 64-bit "
                "entry (needs 2.12+ and xloadflags KERNEL_64 | CAN_BE_LOADED_ABOVE_4G)")
    return None


def load(inputs) -> Plan:
    request = inputs.request
    path = inputs.kernel_path
    image = BzImage.parse(inputs.kernel).validate(path)
    header = image.header
    if request.real_mode or request.entry_32bit:
        raise LoadError("--real-mode / --entry-32bit: pykexec's purgatory enters a bzImage64 "
                        "kernel through its 64-bit entry only")
    check_user_part(inputs.cmdline, header.cmdline_size, path)
    load = open_load(inputs, NAME)
    kernel_memsz = align_up(image.init_size, 4096)
    kernel_where = f"{path} (protected-mode part from {image.setup_size:#x})"
    kernel_addr = None
    if not image.relocatable:
        # A kernel built without CONFIG_RELOCATABLE decompresses itself to pref_address
        # wherever it is loaded: it can only be given that very place.
        kernel_addr = _fixed_kernel_address(load, image, kernel_memsz, path)
        load.layout.place_at(kernel_addr, kernel_memsz, "kernel", kernel_where)
    cmdline = load.place_leading_segments()
    check_final(cmdline, header.cmdline_size, path, inputs.cmdline)
    setup_size = max(image.setup_size, 4096)  # the command line follows the setup area
    setup_len = setup_size + byte_length(cmdline) + 1 + PURGATORY_CMDLINE_SPARE
    setup_addr = load.layout.place(setup_len, "boot_params",
                                   "zero page from the bzImage's setup header, then the command line",
                                   align=16, low=SETUP_MIN_ADDR)
    if kernel_addr is None:
        kernel_addr = load.layout.place(kernel_memsz, "kernel", kernel_where,
                                        align=header.kernel_alignment,
                                        low=max(0x100000, header.pref_address))
    load.layout.fill(kernel_addr, image.payload)
    initrd, setup_data = load.place_initrd_and_setup_data(INITRD_MIN_ADDR)
    cmdline_addr = setup_addr + setup_size
    zero_page = load.zero_page(image.header_bytes, cmdline_addr, setup_size, initrd, setup_data)
    load.layout.fill(setup_addr, zero_page + bytes(setup_size - len(zero_page))
                     + as_bytes(cmdline) + bytes(1 + PURGATORY_CMDLINE_SPARE))
    return load.finish(rip=kernel_addr + STARTUP_64_OFFSET, boot_params_addr=setup_addr,
                       cmdline_addr=cmdline_addr)


def _fixed_kernel_address(load, image: BzImage, memsz: int, path: str) -> int:
    """pref_address, if the kernel's init_size bytes there are free in the window; else a
    refusal (for -p as kexec-tools' i386 loader refuses: it would run outside the region)."""
    addr = image.header.pref_address
    if not load.layout.fits_at(addr, memsz):
        where = "the free crash region" if load.inputs.request.crash else "free RAM in the window"
        raise LoadError(
            f"{path}: this bzImage is not relocatable (relocatable_kernel=0): it decompresses to "
            f"pref_address {addr:#x}, and {addr:#x}+{memsz:#x} (init_size) is not inside "
            f"{where} {load.window} (use a relocatable kernel)")
    return addr
