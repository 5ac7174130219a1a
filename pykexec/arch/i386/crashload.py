"""The steps every i386 crash load shares, whatever the kernel's format.

A format's loader opens a `CrashLoad`, places what is its own (the kernel, its boot
parameters), and closes it with `finish`, which sets purgatory's registers and digest
and returns the plan. The i386 rules live here:

* the ELF core header class: ELF32 when every crash memory range ends at or below
  4 GiB (the last one, in /proc/iomem order, decides, as in kexec-tools), else ELF64;
  `--elf32-core-headers` / `--elf64-core-headers` force it, and ELF32 with memory above
  4 GiB is refused (an ELF32 header cannot hold those addresses);
* EM_386, no kernel-text PT_LOAD, page offset 0xc0000000, ranges split at the
  0x38000000 direct-map limit and highmem without a virtual address;
* every segment and the entry below 4 GiB (purgatory runs with paging off);
* flags: the crash bit with KEXEC_ARCH_DEFAULT, which is what Debian's i386 kexec sends
  on an i686 kernel (the kernel takes DEFAULT as its own arch).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from pykexec.arch.x86.purgatory_setup import (I386, PURGATORY_MIN_ADDR, PurgatoryOptions,
                                              finish_purgatory, place_purgatory,
                                              registers_for_kernel)
from pykexec.arch.x86.crash import CrashSetup, crash_window, place_crash_segments
from pykexec.arch.x86.setupdata import place_setup_data
from pykexec.arch.x86.zeropage import ZeroPageInputs, build_zero_page
from pykexec.cmdline import COMMAND_LINE_MAX
from pykexec.elfcore import core_class_for
from pykexec.errors import LoadError
from pykexec.layout import Layout
from pykexec.plan import Plan
from pykexec.ranges import MemType, Range
from pykexec.structs.elf import ELFCLASS32, ELFCLASS64, EM_386
from pykexec.syscall import KEXEC_ARCH_DEFAULT

ARCH = "i386"
FOUR_GIB = 1 << 32
PURGATORY_MAX_ADDR = 0x7FFFFFFF  # kexec-tools' bound for a protected-mode bzImage (inclusive)


def core_header_class(machine, forced: Optional[int]) -> int:
    """ELFCLASS32 or ELFCLASS64 for this machine's crash memory (see the module doc).

    Only RAM gets a PT_LOAD, so only RAM above 4 GiB needs ELF64. (kexec-tools looks at
    the last crash range of any type: a firmware "reserved" range above 4 GiB alone makes
    it choose ELF64; pykexec does not, and says so in the plan's warnings.)
    """
    ranges = machine.crash_memory_ranges(ARCH)
    above = [r for r in ranges if r.type is MemType.RAM and r.range.last >= FOUR_GIB]
    if forced == 32 and above:
        raise LoadError(
            f"--elf32-core-headers: RAM {above[0].range} lies above 4 GiB, which an ELF32 core "
            "header cannot describe; use --elf64-core-headers (or leave the choice to pykexec)")
    if forced in (32, 64):
        return ELFCLASS32 if forced == 32 else ELFCLASS64
    return ELFCLASS64 if above else ELFCLASS32


def kexec_tools_class_differs(machine, forced: Optional[int]) -> bool:
    """True when kexec-tools' rule (the last range of any type) would choose otherwise."""
    if forced in (32, 64):
        return False
    ranges = machine.crash_memory_ranges(ARCH)
    return core_class_for(ARCH, ranges, None) != core_header_class(machine, None)


class CrashLoad:
    def __init__(self, inputs, format_name: str):
        request = inputs.request
        if not request.crash:
            raise LoadError("only crash loads (-p) are supported for now")
        self.inputs = inputs
        self.format_name = format_name
        self.warnings: List[str] = []
        self.elfclass = core_header_class(inputs.machine, request.core_header_class)
        if kexec_tools_class_differs(inputs.machine, request.core_header_class):
            self.warnings.append(
                "all RAM lies below 4 GiB, so the core header is ELF32; kexec-tools would write "
                "ELF64 here because a non-RAM range above 4 GiB comes last in /proc/iomem")
        window = crash_window(inputs.machine, request.mem_min, request.mem_max)
        if window.start >= FOUR_GIB:
            raise LoadError(f"the crash region {window} lies above 4 GiB, where a 32-bit kernel "
                            "cannot be entered (reserve it with crashkernel=Y@X below 4 GiB)")
        self.window = Range(window.start, min(window.end, FOUR_GIB))
        self.layout = Layout(inputs.machine.ram, self.window, crash=True)
        self.crash: Optional[CrashSetup] = None
        self.purgatory = None

    def place_crash_segments(self) -> str:
        """Backup and elfcorehdr, top-down; returns the capture command line."""
        machine = self.inputs.machine
        self.crash = place_crash_segments(self.layout, machine, ARCH, self.elfclass, EM_386,
                                          None, self.inputs.cmdline, machine.acpi_rsdp)
        if len(self.crash.cmdline) > COMMAND_LINE_MAX:
            raise LoadError(f"the capture command line would be {len(self.crash.cmdline)} "
                            f"characters (at most {COMMAND_LINE_MAX})")
        return self.crash.cmdline

    def place_purgatory(self, low: int = PURGATORY_MIN_ADDR, high: int = PURGATORY_MAX_ADDR,
                        top_down: bool = True) -> None:
        self.purgatory = place_purgatory(self.layout, I386, low, high + 1, top_down)

    def place_initrd_and_setup_data(self, initrd_min: int, initrd_max: int
                                    ) -> Tuple[Optional[Tuple[int, int]], int]:
        inputs = self.inputs
        initrd = None
        if inputs.initrd is not None:
            addr = self.layout.add(inputs.initrd, "initrd", inputs.initrd_path, low=initrd_min,
                                   high=initrd_max + 1)
            initrd = (addr, len(inputs.initrd))
        return initrd, place_setup_data(self.layout, self.crash.e820, inputs.random_bytes)

    def zero_page(self, header_bytes: bytes, cmdline_addr: int, cmdline_offset: int,
                  initrd, setup_data: int) -> bytes:
        machine = self.inputs.machine
        return build_zero_page(ZeroPageInputs(
            header_bytes=header_bytes, cmdline_addr=cmdline_addr, cmdline_offset=cmdline_offset,
            e820=self.crash.e820, initrd=initrd, setup_data_head=setup_data,
            acpi_rsdp=machine.acpi_rsdp or 0, running_boot_params=machine.boot_params))

    def finish(self, eip: int, boot_params_addr: int, cmdline_addr: int, **notes) -> Plan:
        request, crash = self.inputs.request, self.crash
        regs = registers_for_kernel(self.purgatory, I386, eip, boot_params_addr)
        segments, symbols = finish_purgatory(self.layout.finish(), self.purgatory, I386, regs,
                                             PurgatoryOptions(
            panic_kernel=True, backup_start=crash.backup_start or 0,
            backup_src_start=crash.backup_src.start, backup_src_size=crash.backup_src.size,
            skip_checks=request.skip_checks, console_serial=request.console_serial,
            serial_base=request.serial_base, serial_baud=request.serial_baud,
            cmdline_end=cmdline_addr + len(crash.cmdline)))
        high = [s for s in segments if s.mem + s.memsz > FOUR_GIB]
        if high:
            raise LoadError(f"the {high[0].kind} segment at {high[0].mem:#x} ends above 4 GiB")
        return self.plan(segments, self.purgatory.entry, symbols, **notes)

    def plan(self, segments, entry: int, symbols=None, **notes) -> Plan:
        request, crash = self.inputs.request, self.crash
        return Plan(
            arch=ARCH, syscall="kexec_load", flags=request.kexec_flags | KEXEC_ARCH_DEFAULT,
            entry=entry, cmdline=crash.cmdline if crash else self.inputs.cmdline,
            segments=segments,
            notes={"format": self.format_name,
                   "crash_window": [self.window.start, self.window.end],
                   "purgatory_symbols": symbols or {}, "warnings": self.warnings,
                   "core_header": [p.what for p in crash.core_header.phdrs] if crash else [],
                   "core_header_class": 32 if self.elfclass == ELFCLASS32 else 64,
                   "capture_map_messages": list(crash.capture_map.messages) if crash else [],
                   "user_cmdline": self.inputs.cmdline, **notes})
