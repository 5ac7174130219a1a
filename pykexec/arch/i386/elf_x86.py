"""elf-x86: an uncompressed 32-bit vmlinux, as the 2006 kdump document loads it.

    pykexec -p vmlinux --args-linux --elf32-core-headers --append="root=... init 1 irqpoll maxcpus=1"

An i386 vmlinux is not relocatable once decompressed: startup_32 computes physical
addresses from its link addresses, so every PT_LOAD must go exactly at its p_paddr
(16 MiB for Debian's kernels: hence `crashkernel=64M@16M`). The argument style says
what the kernel is given:

* `--args-linux`: Linux boot parameters (a zero page with the capture memory map, the
  command line with `elfcorehdr=`, the initrd), entered at e_entry (startup_32) through
  purgatory with esi = the parameter block, as a bzImage's 32-bit entry is;
* `--args-none`: nothing at all: entry = e_entry, no purgatory, no crash segments. For
  a payload that is not Linux (there is no /proc/vmcore without an elfcorehdr);
* `--args-elf` (kexec-tools' default): ELF boot notes, which a Linux kernel ignores, so
  a capture kernel would not find the old kernel's memory: refused for -p.

Placement follows kexec-tools' i386 ELF loader: the kernel at its link address,
purgatory and the parameter block bottom-up above it, backup and elfcorehdr top-down,
the initrd top-down from 16 MiB (below the direct-map limit), setup_data bottom-up.
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Optional

from pykexec.arch.x86.elfimage import (check_entry, checked_loads, first_misfit, image_chunks,
                                       vmlinux_setup_header)
from pykexec.arch.x86.load import X86LoadSteps, open_load
from pykexec.arch.x86.options import x86_options
from pykexec.core.cmdline import COMMAND_LINE_MAX, as_bytes, check_final, check_user_part
from pykexec.errors import LoadError
from pykexec.core.plan import Plan
from pykexec.abi.elf import ELFCLASS32, EM_386

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

NAME = "elf-x86"
EM_486 = 6
PARAM_CMDLINE_OFFSET = 0x1000   # command line right after the zero page
PARAM_CMDLINE_SPARE = 64
INITRD_MIN_ADDR = 0x1000000
LOWMEM_MAX = 0x37FFFFFF
KERNEL_ALIGN = 0x1000000        # CONFIG_PHYSICAL_ALIGN of Debian's i386 kernels


def probe(data: bytes) -> Optional[str]:
    if data[:4] != b"\x7fELF":
        return "not an ELF file"
    if len(data) < 52 or data[4] != ELFCLASS32:
        return "not a 32-bit ELF file"
    machine = int.from_bytes(data[18:20], "little")
    if machine not in (EM_386, EM_486):
        return f"ELF for machine {machine}, not i386 ({EM_386})"
    from elftools.elf.elffile import ELFFile   # here: only an ELF kernel needs pyelftools
    try:
        elf = ELFFile(BytesIO(data))
        if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
            return f"ELF type {elf['e_type']}, not an executable"
        if any(s["p_type"] == "PT_INTERP" for s in elf.iter_segments()):
            return "a dynamically linked program, not a kernel"
        if not any(s["p_type"] == "PT_LOAD" for s in elf.iter_segments()):
            return "no PT_LOAD segments"
    except Exception as err:  # pyelftools raises several types on truncation
        return f"truncated or damaged ELF ({err})"
    return None


def param_header() -> bytes:
    return vmlinux_setup_header(initrd_addr_max=LOWMEM_MAX, kernel_alignment=KERNEL_ALIGN,
                                min_alignment=24)


def _place_image(load: X86LoadSteps, chunks, path: str) -> None:
    layout = load.layout
    misfit = first_misfit(layout, chunks)
    if misfit is not None:
        start, memsz = misfit.start, misfit.memsz
        raise LoadError(
            f"{path} is linked to run at {chunks[0][0]:#x}-{chunks[-1][0] + chunks[-1][1] - 1:#x} "
            f"(its PT_LOAD at {start:#x}+{memsz:#x} is not free RAM inside the crash region "
            f"{load.window}); a 32-bit vmlinux cannot be moved: reserve the crash region where "
            f"it is linked (crashkernel=64M@{chunks[0][0] >> 20}M) or load the bzImage")
    for start, memsz, data in chunks:
        layout.place_at(start, memsz, "elf_load", f"{path} PT_LOAD")
        layout.fill(start, data)


def load(inputs) -> Plan:
    request = inputs.request
    path = inputs.kernel_path
    mode = x86_options(request).args_mode or "elf"
    if mode == "elf":
        raise LoadError(f"{path}: --args-elf (the default for an ELF kernel) passes ELF boot "
                        "notes, which give a Linux capture kernel no elfcorehdr= and no memory "
                        "map; load a Linux vmlinux with --args-linux")
    from elftools.elf.elffile import ELFFile
    elf = ELFFile(BytesIO(inputs.kernel))
    entry = elf["e_entry"]
    loads = checked_loads(elf, path, len(inputs.kernel), 32)
    check_entry(entry, loads, path)
    chunks = image_chunks(inputs.kernel, loads, path)
    load = open_load(inputs, NAME)
    _place_image(load, chunks, path)
    if mode == "none":
        if inputs.initrd is not None:
            raise LoadError(f"{path}: --args-none passes nothing to the kernel, not an initrd")
        load.warnings.append(
            "--args-none: the kernel is entered at its ELF entry with no arguments, no "
            "purgatory (no digest check, no backup copy) and no elfcorehdr; a Linux capture "
            "kernel started this way has no /proc/vmcore")
        if not load.window.start <= entry < load.window.end:
            raise LoadError(f"{path}: entry {entry:#x} is outside the crash region {load.window}")
        return load.finish_without_purgatory(entry, args="none")
    check_user_part(inputs.cmdline, COMMAND_LINE_MAX, path)
    load.place_purgatory(low=0, top_down=False)
    # The parameter block is placed before the crash segments (kexec-tools' order), but
    # its size depends on the command line they extend: reserve for the longest one.
    param_len = PARAM_CMDLINE_OFFSET + COMMAND_LINE_MAX + 1 + PARAM_CMDLINE_SPARE
    param_addr = load.layout.place(param_len, "param_block",
                                   "zero page for --args-linux, then the command line",
                                   align=16, top_down=False)
    cmdline = load.place_crash_segments()
    check_final(cmdline, COMMAND_LINE_MAX, path, inputs.cmdline)
    initrd, setup_data = load.place_initrd_and_setup_data(INITRD_MIN_ADDR, LOWMEM_MAX)
    cmdline_addr = param_addr + PARAM_CMDLINE_OFFSET
    zero_page = load.zero_page(param_header(), cmdline_addr, PARAM_CMDLINE_OFFSET, initrd,
                               setup_data)
    load.layout.fill(param_addr, zero_page + as_bytes(cmdline) + bytes(1 + PARAM_CMDLINE_SPARE))
    return load.finish(entry=entry, boot_params_addr=param_addr, cmdline_addr=cmdline_addr,
                       args="linux")
