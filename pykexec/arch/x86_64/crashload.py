"""The steps every x86_64 crash load shares, whatever the kernel's format.

A format's loader opens a `CrashLoad`, places what is its own (the kernel, its boot
parameters), and closes it with `finish`, which sets purgatory's registers and digest
and returns the plan. The order of placement stays with the format, because it decides
where things land.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from pykexec.arch.x86.crash import CrashSetup, crash_window, place_crash_segments
from pykexec.arch.x86.setupdata import place_setup_data
from pykexec.arch.x86.zeropage import ZeroPageInputs, build_zero_page
from pykexec.arch.x86.purgatory_setup import (X86_64, PurgatoryOptions, finish_purgatory,
                                              place_purgatory, registers_for_kernel)
from pykexec.cmdline import COMMAND_LINE_MAX
from pykexec.errors import LoadError
from pykexec.layout import Layout
from pykexec.plan import Plan
from pykexec.structs.elf import ELFCLASS64, EM_X86_64
from pykexec.syscall import KEXEC_ARCH_X86_64

ELF32_ON_X86_64 = ("--elf32-core-headers: x86_64 kernel addresses do not fit ELF32, and "
                   "crash/gdb/makedumpfile expect ELF64 here; writing ELF64 core headers")


class CrashLoad:
    def __init__(self, inputs, format_name: str):
        request = inputs.request
        if not request.crash:
            raise LoadError("only crash loads (-p) are supported for now")
        self.inputs = inputs
        self.format_name = format_name
        self.warnings: List[str] = []
        if request.core_header_class == 32:
            self.warnings.append(ELF32_ON_X86_64)
        self.window = crash_window(inputs.machine, request.mem_min, request.mem_max)
        self.layout = Layout(inputs.machine.ram, self.window, crash=True)
        self.crash: Optional[CrashSetup] = None
        self.purgatory = None

    def place_crash_segments_and_purgatory(self) -> str:
        """Backup, elfcorehdr and purgatory, top-down; returns the capture command line."""
        machine = self.inputs.machine
        kt = machine.kernel_text
        # pykexec passes no EFI runtime data to a capture kernel, so it always names the RSDP.
        self.crash = place_crash_segments(self.layout, machine, "x86_64", ELFCLASS64, EM_X86_64,
                                          (kt.paddr, kt.vaddr, kt.size), self.inputs.cmdline,
                                          machine.acpi_rsdp)
        if len(self.crash.cmdline) > COMMAND_LINE_MAX:
            raise LoadError(f"the capture command line would be {len(self.crash.cmdline)} "
                            f"characters (at most {COMMAND_LINE_MAX})")
        self.purgatory = place_purgatory(self.layout, X86_64)
        return self.crash.cmdline

    # The step's name shared with NormalLoad (pykexec.arch.x86_64.normalload).
    place_leading_segments = place_crash_segments_and_purgatory

    def place_initrd_and_setup_data(self, initrd_min: int) -> Tuple[Optional[Tuple[int, int]], int]:
        inputs = self.inputs
        initrd = None
        if inputs.initrd is not None:
            addr = self.layout.add(inputs.initrd, "initrd", inputs.initrd_path, low=initrd_min)
            initrd = (addr, len(inputs.initrd))
        return initrd, place_setup_data(self.layout, self.crash.e820, inputs.random_bytes)

    def zero_page(self, header_bytes: bytes, cmdline_addr: int, cmdline_offset: int,
                  initrd, setup_data: int) -> bytes:
        machine = self.inputs.machine
        return build_zero_page(ZeroPageInputs(
            header_bytes=header_bytes, cmdline_addr=cmdline_addr, cmdline_offset=cmdline_offset,
            e820=self.crash.e820, initrd=initrd, setup_data_head=setup_data,
            acpi_rsdp=machine.acpi_rsdp or 0, running_boot_params=machine.boot_params))

    def finish(self, rip: int, boot_params_addr: int, cmdline_addr: int, **notes) -> Plan:
        request, crash = self.inputs.request, self.crash
        regs = registers_for_kernel(self.purgatory, X86_64, rip, boot_params_addr)
        segments, symbols = finish_purgatory(self.layout.finish(), self.purgatory, X86_64, regs,
                                             PurgatoryOptions(
            panic_kernel=True, backup_start=crash.backup_start or 0,
            backup_src_start=crash.backup_src.start, backup_src_size=crash.backup_src.size,
            skip_checks=request.skip_checks, console_serial=request.console_serial,
            serial_base=request.serial_base, serial_baud=request.serial_baud,
            cmdline_end=cmdline_addr + len(crash.cmdline)))
        return Plan(
            arch="x86_64", syscall="kexec_load", flags=request.kexec_flags | KEXEC_ARCH_X86_64,
            entry=self.purgatory.entry, cmdline=crash.cmdline, segments=segments,
            notes={"format": self.format_name, "crash_window": [self.window.start, self.window.end],
                   "purgatory_symbols": symbols, "warnings": self.warnings,
                   "core_header": [p.what for p in crash.core_header.phdrs],
                   "capture_map_messages": list(crash.capture_map.messages),
                   "user_cmdline": self.inputs.cmdline, **notes})
