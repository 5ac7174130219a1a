"""bzImage64: a bzImage entered at its 64-bit entry (startup_64, load address + 0x200).

Placement follows kexec-tools, top-down in the window: (for -p: backup, elfcorehdr,) purgatory,
setup (zero page + command line), kernel (aligned as its header asks, init_size bytes),
initrd; setup_data bottom-up. Keeping the same order keeps the two loaders' layouts
comparable byte for byte everywhere but purgatory.
"""

from __future__ import annotations

from typing import Optional

from pykexec.arch.x86.bzimage import BzImage, fill_setup, parse_for_probe, place_setup
from pykexec.arch.x86.load import open_load
from pykexec.arch.x86.options import x86_options
from pykexec.core.cmdline import check_final, check_user_part
from pykexec.errors import LoadError
from pykexec.core.plan import Plan
from pykexec.core.ranges import align_up

NAME = "bzImage64"
STARTUP_64_OFFSET = 0x200
INITRD_MIN_ADDR = 0x1000000


def probe(data: bytes) -> Optional[str]:
    """None if this is a bzImage with a 64-bit entry, else why not."""
    image, why = parse_for_probe(data)
    if image is None:
        return why
    if not image.supports_64bit_entry:
        return (f"boot protocol {image.protocol >> 8}.{image.protocol & 0xff} without a 64-bit "
                "entry (needs 2.12+ and xloadflags KERNEL_64 | CAN_BE_LOADED_ABOVE_4G)")
    return None


def load(inputs) -> Plan:
    request = inputs.request
    path = inputs.kernel_path
    image = BzImage.parse(inputs.kernel).validate(path)
    header = image.header
    options = x86_options(request)
    if options.real_mode or options.entry_32bit:
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
    cmdline = load.place_crash_segments()
    load.place_purgatory()
    check_final(cmdline, header.cmdline_size, path, inputs.cmdline)
    setup_addr = place_setup(load, image, cmdline)
    if kernel_addr is None:
        kernel_addr = load.layout.place(kernel_memsz, "kernel", kernel_where,
                                        align=header.kernel_alignment,
                                        low=max(0x100000, header.pref_address))
    cmdline_addr = fill_setup(load, image, kernel_addr, setup_addr, cmdline, INITRD_MIN_ADDR)
    return load.finish(entry=kernel_addr + STARTUP_64_OFFSET, boot_params_addr=setup_addr,
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
