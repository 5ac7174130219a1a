"""bzImage: an x86 bzImage entered at its 32-bit entry (startup_32, the load address).

The 32-bit boot protocol: protected mode, paging off, flat CS 0x10 / DS 0x18, esi =
boot_params, ebx = ebp = edi = 0. A capture kernel must be relocatable (protocol 2.05+):
it runs wherever the crash region puts it.

Placement follows kexec-tools' i386 loader: backup and elfcorehdr top-down, purgatory
top-down below 2 GiB, setup (zero page + command line) top-down, then the kernel
**bottom-up**, aligned as the header's kernel_alignment asks and sized by its init_size
(the memory it needs while it decompresses; kexec-tools 2.0.25 reserved only the file
size, later versions init_size), kept below the 0x38000000 direct-map limit and the
header's initrd_addr_max; the initrd top-down from 16 MiB below initrd_addr_max; the
setup_data items bottom-up.
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
from pykexec.arch.x86 import bootparams as bp

NAME = "bzImage"
KERNEL_MIN_ADDR = 0x100000
LOWMEM_MAX = 0x37FFFFFF       # last byte of the i386 direct map
INITRD_MIN_ADDR = 0x1000000


def probe(data: bytes) -> Optional[str]:
    """None if this is a bzImage (boot protocol 2.00+, loaded high), else why not."""
    image, why = parse_for_probe(data)
    if image is None:
        return why
    if image.protocol < 0x0200 or not image.header.loadflags & bp.LOADED_HIGH:
        return "a zImage (not loaded high): not supported"
    return None


def load(inputs) -> Plan:
    request = inputs.request
    image = BzImage.parse(inputs.kernel).validate(inputs.kernel_path)
    header = image.header
    if x86_options(request).real_mode:
        raise LoadError(f"{inputs.kernel_path}: a capture kernel cannot be entered in real mode "
                        "(--real-mode)" if request.crash else
                        f"{inputs.kernel_path}: pykexec enters a kernel in 32-bit protected "
                        "mode only (--real-mode is not supported)")
    if not image.relocatable and request.crash:
        raise LoadError(f"{inputs.kernel_path}: this bzImage is not relocatable (boot protocol "
                        f"{image.protocol >> 8}.{image.protocol & 0xff}, relocatable_kernel "
                        "unset), so it cannot run in the crash region")
    # Before 2.06 the header has no cmdline_size; the limit was 255 bytes.
    cmdline_size = header.cmdline_size if image.protocol >= 0x0206 else 255
    if image.protocol >= 0x0206:
        check_user_part(inputs.cmdline, cmdline_size, inputs.kernel_path)
    load = open_load(inputs, NAME)
    cmdline = load.place_crash_segments()
    check_final(cmdline, cmdline_size, inputs.kernel_path, inputs.cmdline)
    load.place_purgatory()
    setup_addr = place_setup(load, image, cmdline)
    pref_address = header.pref_address if image.protocol >= 0x020A else 0
    initrd_max = header.initrd_addr_max if image.protocol >= 0x0203 else LOWMEM_MAX
    low = max(KERNEL_MIN_ADDR, pref_address)
    high = min(LOWMEM_MAX, initrd_max) + 1
    if not image.relocatable:       # (a normal load) it runs only where it was linked
        low, high = pref_address or KERNEL_MIN_ADDR, \
            (pref_address or KERNEL_MIN_ADDR) + align_up(image.init_size, 4096)
    kernel_addr = load.layout.place(
        align_up(image.init_size, 4096), "kernel",
        f"{inputs.kernel_path} (protected-mode part from {image.setup_size:#x}, "
        f"init_size {image.init_size:#x})",
        align=header.kernel_alignment, low=low, high=high, top_down=False)
    cmdline_addr = fill_setup(load, image, kernel_addr, setup_addr, cmdline, INITRD_MIN_ADDR,
                              initrd_max)
    return load.finish(entry=kernel_addr, boot_params_addr=setup_addr, cmdline_addr=cmdline_addr)
