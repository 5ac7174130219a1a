"""elf-x86_64: an uncompressed vmlinux, entered at its ELF entry (startup_64) with Linux
boot parameters (`--args-linux`).

kexec-tools loads each PT_LOAD at its link-time physical address, so a stock vmlinux
(linked at 16 MiB) can only be a capture kernel if the crash region sits there. An x86_64
kernel relocates itself physically at start-up (startup_64 derives its load offset from
where it runs, which only has to be 2 MiB aligned), so when the link address is not free
pykexec moves the whole image, keeping its internal layout, to an aligned hole in the
crash region, and says so.
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Optional

from pykexec.arch.x86.elfimage import (check_entry, checked_loads, first_misfit, image_chunks,
                                       vmlinux_setup_header)
from pykexec.arch.x86.load import open_load
from pykexec.arch.x86.options import x86_options
from pykexec.core.cmdline import COMMAND_LINE_MAX, as_bytes, byte_length, check_final, check_user_part
from pykexec.errors import LoadError
from pykexec.core.plan import Plan
from pykexec.arch.x86 import bootparams as bp
from pykexec.abi.elf import ELFCLASS64, EM_X86_64

if TYPE_CHECKING:       # pyelftools is imported when the kernel is an ELF file
    from elftools.elf.elffile import ELFFile

NAME = "elf-x86_64"
KERNEL_MIN_ALIGN = 0x200000     # startup_64 refuses a load offset that is not 2 MiB aligned
PARAM_CMDLINE_OFFSET = 0x1000   # command line right after the zero page
PARAM_CMDLINE_SPARE = 64
INITRD_MIN_ADDR = 0x1000000


def probe(data: bytes) -> Optional[str]:
    if data[:4] != b"\x7fELF":
        return "not an ELF file"
    if len(data) < 64 or data[4] != ELFCLASS64:
        return "not a 64-bit ELF file"
    machine = int.from_bytes(data[18:20], "little")
    if machine != EM_X86_64:
        return f"ELF for machine {machine}, not x86_64 ({EM_X86_64})"
    from elftools.elf.elffile import ELFFile   # here: only an ELF kernel needs pyelftools
    try:
        elf = ELFFile(BytesIO(data))
        if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
            return f"ELF type {elf['e_type']}, not an executable"
        if not any(s["p_type"] == "PT_LOAD" for s in elf.iter_segments()):
            return "no PT_LOAD segments"
    except Exception as err:  # pyelftools raises several types on truncation
        return f"truncated or damaged ELF ({err})"
    return None


def _kernel_alignment(elf: ELFFile) -> int:
    """Where the image may move to: its PT_LOAD alignment, at least what startup_64 needs."""
    return max(KERNEL_MIN_ALIGN, *(s["p_align"] for s in elf.iter_segments()
                                   if s["p_type"] == "PT_LOAD"))


def _param_header() -> bytes:
    return vmlinux_setup_header(
        initrd_addr_max=0x7FFFFFFF, kernel_alignment=KERNEL_MIN_ALIGN, relocatable_kernel=1,
        min_alignment=21, xloadflags=bp.XLF_KERNEL_64 | bp.XLF_CAN_BE_LOADED_ABOVE_4G)


def load(inputs) -> Plan:
    request = inputs.request
    args_mode = x86_options(request).args_mode
    if request.crash and args_mode != "linux":
        raise LoadError(f"{inputs.kernel_path}: an ELF capture kernel needs --args-linux (ELF boot "
                        "notes and --args-none give it no elfcorehdr= and no memory map)")
    if args_mode == "none":
        return _load_args_none(inputs)
    if args_mode != "linux":
        raise LoadError(f"{inputs.kernel_path}: pykexec boots an ELF Linux kernel with "
                        "--args-linux (boot parameters) or --args-none; ELF boot notes "
                        "(--args-elf, kexec-tools' default) give Linux no memory map")
    elf, chunks = _checked_image(inputs)
    align = _kernel_alignment(elf)
    check_user_part(inputs.cmdline, COMMAND_LINE_MAX, inputs.kernel_path)
    load = open_load(inputs, NAME)
    layout = load.layout
    # The link address wins when it is free (as kexec-tools requires); else move the image.
    misfit = first_misfit(layout, chunks)
    if misfit is None:
        _place_image(layout, chunks, 0, inputs.kernel_path)
    cmdline = load.place_crash_segments()
    load.place_purgatory()
    check_final(cmdline, COMMAND_LINE_MAX, inputs.kernel_path, inputs.cmdline)
    param_len = PARAM_CMDLINE_OFFSET + byte_length(cmdline) + 1 + PARAM_CMDLINE_SPARE
    param_addr = layout.place(param_len, "param_block",
                              "zero page for --args-linux, then the command line", align=16)
    delta = 0
    if misfit is not None:
        link_start = chunks[0].start
        span = chunks[-1].start + chunks[-1].memsz - link_start
        delta = layout.find(span, "kernel", align=align, source=inputs.kernel_path) - link_start
        where = (f"the free crash region {layout.window}" if request.crash
                 else f"free RAM in the window {layout.window}")
        load.warnings.append(
            f"{inputs.kernel_path} is linked at {link_start:#x}-{link_start + span - 1:#x}, but "
            f"its part at {misfit.start:#x}-{misfit.start + misfit.memsz - 1:#x} is not inside "
            f"{where}; loading the whole image at {link_start + delta:#x} (x86_64 kernels "
            "relocate themselves physically)")
        _place_image(layout, chunks, delta, inputs.kernel_path)
    initrd, setup_data = load.place_initrd_and_setup_data(INITRD_MIN_ADDR)
    cmdline_addr = param_addr + PARAM_CMDLINE_OFFSET
    zero_page = load.zero_page(_param_header(), cmdline_addr, PARAM_CMDLINE_OFFSET, initrd,
                               setup_data)
    layout.fill(param_addr, zero_page + as_bytes(cmdline) + bytes(1 + PARAM_CMDLINE_SPARE))
    return load.finish(entry=elf["e_entry"] + delta, boot_params_addr=param_addr,
                       cmdline_addr=cmdline_addr, kernel_relocated_by=delta)


def _load_args_none(inputs) -> Plan:
    """--args-none (normal loads): the PT_LOADs at their addresses, entered at e_entry."""
    if inputs.initrd is not None or inputs.cmdline:
        raise LoadError("--args-none passes nothing to the kernel: no --initrd, --append or "
                        "--reuse-cmdline with it")
    elf, chunks = _checked_image(inputs)
    load = open_load(inputs, NAME)
    _place_image(load.layout, chunks, 0, inputs.kernel_path)
    return load.finish_without_purgatory(entry=elf["e_entry"], args="none")


def _place_image(layout, chunks, delta: int, path: str) -> None:
    for c in chunks:
        where = f"{path} PT_LOAD" + (f" linked at {c.start:#x}" if delta else "")
        layout.place_at(c.start + delta, c.memsz, "elf_load", where)
        layout.fill(c.start + delta, c.data)


def _checked_image(inputs):
    """The ELF file and its PT_LOADs as chunks, after the ELF validation layer."""
    from elftools.elf.elffile import ELFFile
    elf = ELFFile(BytesIO(inputs.kernel))
    loads = checked_loads(elf, inputs.kernel_path, len(inputs.kernel), 64)
    check_entry(elf["e_entry"], loads, inputs.kernel_path)
    return elf, image_chunks(inputs.kernel, loads, inputs.kernel_path)
