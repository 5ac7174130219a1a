"""bzImage64: a bzImage entered at its 64-bit entry (startup_64, load address + 0x200).

Placement follows kexec-tools, top-down in the window: backup, elfcorehdr, purgatory,
setup (zero page + command line), kernel (aligned as its header asks, init_size bytes),
initrd; setup_data bottom-up. Keeping the same order keeps the two loaders' layouts
comparable byte for byte everywhere but purgatory.
"""

from __future__ import annotations

from typing import Optional

from pykexec.arch.x86.bzimage import BzImage, ImageError
from pykexec.arch.x86.crash import check_cmdline, crash_window, place_crash_segments
from pykexec.arch.x86.setupdata import place_setup_data
from pykexec.arch.x86.zeropage import ZeroPageInputs, build_zero_page
from pykexec.arch.x86_64.purgatory_setup import (PurgatoryOptions, finish_purgatory,
                                                 place_purgatory, registers_for_kernel)
from pykexec.cmdline import COMMAND_LINE_MAX
from pykexec.errors import LoadError
from pykexec.layout import Layout
from pykexec.plan import Plan
from pykexec.ranges import align_up
from pykexec.structs.elf import ELFCLASS64, EM_X86_64
from pykexec.syscall import KEXEC_ARCH_X86_64

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
    request, machine = inputs.request, inputs.machine
    if not request.crash:
        raise LoadError("only crash loads (-p) are supported for now")
    image = BzImage.parse(inputs.kernel)
    if request.real_mode or request.entry_32bit:
        raise LoadError("--real-mode / --entry-32bit cannot start a bzImage64 capture kernel")
    check_cmdline(inputs.cmdline, image.header.cmdline_size, inputs.kernel_path)
    warnings = []
    if request.core_header_class == 32:
        warnings.append("--elf32-core-headers: x86_64 kernel addresses do not fit ELF32, and "
                        "crash/gdb/makedumpfile expect ELF64 here; writing ELF64 core headers")

    window = crash_window(machine, request.mem_min, request.mem_max)
    layout = Layout(machine.ram, window, crash=True)
    kt = machine.kernel_text
    # pykexec passes no EFI runtime data to a capture kernel, so it always names the RSDP.
    crash = place_crash_segments(layout, machine, "x86_64", ELFCLASS64, EM_X86_64,
                                 (kt.paddr, kt.vaddr, kt.size), inputs.cmdline, machine.acpi_rsdp)
    cmdline = crash.cmdline
    if len(cmdline) > COMMAND_LINE_MAX:
        raise LoadError(f"the capture command line would be {len(cmdline)} characters "
                        f"(at most {COMMAND_LINE_MAX})")

    purgatory = place_purgatory(layout)
    setup_size = max(image.setup_size, 4096)  # the command line follows the setup area
    setup_len = setup_size + len(cmdline) + 1 + PURGATORY_CMDLINE_SPARE
    setup_addr = layout.place(setup_len, "boot_params",
                              "zero page from the bzImage's setup header, then the command line",
                              align=16, low=SETUP_MIN_ADDR)
    header = image.header
    kernel_addr = layout.place(align_up(image.init_size, 4096), "kernel",
                               f"{inputs.kernel_path} (protected-mode part from {image.setup_size:#x})",
                               align=header.kernel_alignment,
                               low=max(0x100000, header.pref_address))
    layout.fill(kernel_addr, image.payload)
    initrd = None
    if inputs.initrd is not None:
        initrd_addr = layout.add(inputs.initrd, "initrd", inputs.initrd_path, low=INITRD_MIN_ADDR)
        initrd = (initrd_addr, len(inputs.initrd))
    setup_data = place_setup_data(layout, crash.e820, inputs.random_bytes)

    cmdline_addr = setup_addr + setup_size
    zero_page = build_zero_page(ZeroPageInputs(
        header_bytes=image.header_bytes, cmdline_addr=cmdline_addr, cmdline_offset=setup_size,
        e820=crash.e820, initrd=initrd, setup_data_head=setup_data,
        acpi_rsdp=machine.acpi_rsdp or 0, running_boot_params=machine.boot_params))
    layout.fill(setup_addr, zero_page + bytes(setup_size - len(zero_page))
                + cmdline.encode() + bytes(1 + PURGATORY_CMDLINE_SPARE))

    regs = registers_for_kernel(purgatory, rip=kernel_addr + STARTUP_64_OFFSET, rsi=setup_addr)
    segments, symbols = finish_purgatory(layout.finish(), purgatory, regs, PurgatoryOptions(
        panic_kernel=True, backup_start=crash.backup_start or 0,
        backup_src_start=crash.backup_src.start, backup_src_size=crash.backup_src.size,
        skip_checks=request.skip_checks, console_serial=request.console_serial,
        serial_base=request.serial_base, serial_baud=request.serial_baud,
        cmdline_end=cmdline_addr + len(cmdline)))
    return Plan(
        arch="x86_64", syscall="kexec_load", flags=request.kexec_flags | KEXEC_ARCH_X86_64,
        entry=purgatory.entry, cmdline=cmdline, segments=segments,
        notes={"format": NAME, "crash_window": [window.start, window.end],
               "purgatory_symbols": symbols, "warnings": warnings,
               "core_header": [p.what for p in crash.core_header.phdrs],
               "capture_map_messages": list(crash.capture_map.messages)})
