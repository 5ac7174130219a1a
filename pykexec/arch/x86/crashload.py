"""The steps every x86 crash load shares (x86_64 and i386), whatever the kernel's format.

`X86CrashLoad` implements `pykexec.arch.x86.load.X86LoadSteps` for -p; a format gets it
from `open_load`. What differs between the architectures (window limits, purgatory
bounds and register block, checks of the final segments) stays with the subclass; the
core header's facts come from the Arch (`crash_elf_info`), the arch flag from its
`kexec_arch`.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from pykexec.abi.kexec import KEXEC_UPDATE_ELFCOREHDR
from pykexec.arch.x86.crash import CrashSetup, crash_window, place_crash_segments
from pykexec.arch.x86.efi import efi_boot_data, xloadflags
from pykexec.arch.x86.firmware import acpi_rsdp
from pykexec.arch.x86.purgatory_setup import (PurgatoryKind, PurgatoryOptions, finish_purgatory,
                                              registers_for_kernel)
from pykexec.arch.x86.load import SharedSteps
from pykexec.arch.x86.options import x86_options
from pykexec.core.cmdline import COMMAND_LINE_MAX, byte_length, check_final
from pykexec.errors import LoadError
from pykexec.core.layout import Layout
from pykexec.core.plan import Plan, Segment
from pykexec.core.ranges import ADDR_LIMIT, Range


# With --hotplug the kernel rewrites the elfcorehdr after the load, so purgatory must not
# check it.
HOTPLUG_UNHASHED = ("elfcorehdr",)


def hotplug_flag(request) -> int:
    """x86's kexec_load flag for crash hotplug. x86 kernels (6.5+) test
    KEXEC_UPDATE_ELFCOREHDR for kexec_load, also after KEXEC_CRASH_HOTPLUG_SUPPORT was
    added (6.10); 6.5-6.9 refuse the latter with EINVAL."""
    return KEXEC_UPDATE_ELFCOREHDR if request.crash and request.hotplug else 0


class X86CrashLoad(SharedSteps):
    purgatory_kind: PurgatoryKind
    purgatory_high: int = ADDR_LIMIT   # purgatory's default placement: below this

    def __init__(self, inputs, format_name: str):
        if not inputs.request.crash:
            raise LoadError("only crash loads (-p) are supported for now")
        self.inputs = inputs
        self.arch = inputs.arch
        self.format_name = format_name
        self.warnings: List[str] = []
        self.window = self.crash_window()
        self.layout = Layout(inputs.machine.ram, self.window, crash=True)
        self.crash: Optional[CrashSetup] = None
        self.purgatory = None
        # EFI runtime data for the capture kernel, as kexec-tools passes it (x86_64 bzImages
        # with XLF_EFI_KEXEC on UEFI machines, unless --noefi)
        self.efi = efi_boot_data(inputs.machine, xloadflags(inputs.kernel),
                                 x86_options(inputs.request).noefi)
        self.efi_memmap: Optional[int] = None

    @property
    def new_e820(self):
        return self.crash.e820

    def crash_window(self) -> Range:
        request = self.inputs.request
        return crash_window(self.inputs.machine, request.mem_min, request.mem_max)

    def place_crash_segments(self) -> str:
        """Backup and elfcorehdr, top-down; returns the capture command line."""
        machine = self.inputs.machine
        info = self.arch.crash_elf_info(machine, self.inputs.request)
        # Without EFI data the capture kernel is told where ACPI is (kexec-tools' rule).
        rsdp = acpi_rsdp(machine) if self.efi is None else None
        self.crash = place_crash_segments(self.layout, machine, info, self.inputs.cmdline,
                                          rsdp, self.inputs.request.hotplug)
        check_final(self.crash.cmdline, COMMAND_LINE_MAX, self.inputs.kernel_path,
                    self.inputs.cmdline)
        return self.crash.cmdline

    def finish(self, entry: int, boot_params_addr: int, cmdline_addr: int, **notes) -> Plan:
        """The final segments, purgatory patched with registers, backup and digest."""
        request, crash = self.inputs.request, self.crash
        options = x86_options(request)
        regs = registers_for_kernel(self.purgatory, self.purgatory_kind, entry, boot_params_addr)
        segments, symbols = finish_purgatory(
            self.layout.finish(), self.purgatory, self.purgatory_kind, regs, PurgatoryOptions(
                panic_kernel=True, backup_start=crash.backup_start or 0,
                backup_src_start=crash.backup_src.start, backup_src_size=crash.backup_src.size,
                skip_checks=request.skip_checks, console_serial=options.console_serial,
                serial_base=options.serial_base, serial_baud=options.serial_baud,
                cmdline_end=cmdline_addr + byte_length(crash.cmdline),
                unhashed_kinds=HOTPLUG_UNHASHED if request.hotplug else ()))
        self.check_segments(segments)
        return self.plan(segments, self.purgatory.entry, symbols, **notes)

    def check_segments(self, segments: Tuple[Segment, ...]) -> None:
        """The architecture's last word on the final segments (nothing to say by default)."""

    def finish_without_purgatory(self, entry: int, **notes) -> Plan:
        return self.plan(self.layout.finish(), entry, **notes)

    def plan(self, segments, entry: int, symbols=None, **notes) -> Plan:
        request, crash = self.inputs.request, self.crash
        return Plan(
            arch=self.arch.name, syscall="kexec_load",
            flags=request.kexec_flags | self.arch.kexec_arch | hotplug_flag(request),
            entry=entry, cmdline=crash.cmdline if crash else self.inputs.cmdline,
            segments=segments,
            notes={"format": self.format_name,
                   "crash_window": [self.window.start, self.window.end],
                   "purgatory_symbols": symbols or {}, "warnings": self.warnings,
                   "core_header": [p.what for p in crash.core_header.phdrs] if crash else [],
                   "capture_map_messages": list(crash.capture_map.messages) if crash else [],
                   "user_cmdline": self.inputs.cmdline,
                   **({"efi_runtime_map_entries": self.efi.entries} if self.efi else {}),
                   **notes})
