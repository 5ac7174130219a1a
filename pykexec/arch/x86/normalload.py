"""The steps every x86 normal load (`-l`, `-f`, `--load-preserve-context`) shares.

`X86NormalLoad` implements `pykexec.arch.x86.load.X86LoadSteps` as the crash loads do, so
each image format places its
own buffers in the same order for both: there is no backup and no ELF core header, the
window is all RAM of the firmware memory map (clamped to --mem-min/--mem-max), placement
is top-down so purgatory, boot parameters, kernel and initrd land in the highest RAM
(above 4 GiB when there is RAM there: the zero page's ext_* fields carry the high bits),
the new kernel's e820 is the full firmware map, and purgatory runs with panic_kernel = 0.
An architecture's subclass names its purgatory and the highest address its new kernel can
be entered with (i386: 4 GiB, paging off).
On EFI machines a bzImage with XLF_EFI_KEXEC also gets the running kernel's EFI runtime
data (pykexec.arch.x86.efi), unless --noefi.
"""

from __future__ import annotations

from typing import List, Optional

from pykexec.arch.x86.bootparams import e820_type
from pykexec.arch.x86.efi import efi_boot_data, xloadflags
from pykexec.arch.x86.load import SharedSteps
from pykexec.arch.x86.options import x86_options
from pykexec.arch.x86.purgatory_setup import (PurgatoryKind, PurgatoryOptions, finish_purgatory,
                                              registers_for_kernel)
from pykexec.core.cmdline import COMMAND_LINE_MAX, byte_length
from pykexec.errors import LoadError
from pykexec.core.layout import Layout
from pykexec.core.plan import Plan
from pykexec.core.ranges import ADDR_LIMIT, Range


def normal_window(mem_min: int = 0, mem_max: Optional[int] = None,
                  limit: int = ADDR_LIMIT) -> Range:
    end = limit if mem_max is None else min(limit, mem_max + 1)
    if mem_min >= end:
        raise LoadError(f"--mem-min {mem_min:#x} is not below --mem-max {end - 1:#x}")
    return Range(mem_min, end)


class X86NormalLoad(SharedSteps):
    crash = None   # the same attribute CrashLoad fills; nothing crash-related here
    purgatory_kind: PurgatoryKind          # the architecture's purgatory
    address_limit: int = ADDR_LIMIT        # every segment below this
    purgatory_high: int = ADDR_LIMIT       # purgatory's default placement: below this

    def __init__(self, inputs, format_name: str):
        request = inputs.request
        self.inputs = inputs
        self.format_name = format_name
        self.warnings: List[str] = []
        machine = inputs.machine
        self.window = normal_window(request.mem_min, request.mem_max, self.address_limit)
        self.layout = Layout(machine.ram, self.window, crash=False)
        self.e820 = tuple((r.range.start, r.range.size, e820_type(r.type)) for r in machine.memory_map)
        self.cmdline = inputs.cmdline
        self.purgatory = None
        self.efi = efi_boot_data(machine, xloadflags(inputs.kernel), x86_options(request).noefi)
        self.efi_memmap: Optional[int] = None
        if byte_length(self.cmdline) > COMMAND_LINE_MAX:
            raise LoadError(f"the command line is {byte_length(self.cmdline)} bytes "
                            f"(at most {COMMAND_LINE_MAX})")

    @property
    def new_e820(self):
        return self.e820

    def place_crash_segments(self) -> str:
        """Nothing to place without a crash; returns the new kernel's command line."""
        return self.cmdline

    def _notes(self, **notes) -> dict:
        return {"format": self.format_name, "window": [self.window.start, self.window.end],
                "efi_runtime_map_entries": self.efi.entries if self.efi else 0,
                "warnings": self.warnings, "user_cmdline": self.inputs.cmdline,
                "e820_entries": len(self.e820), **notes}

    def finish(self, entry: int, boot_params_addr: int, cmdline_addr: int, **notes) -> Plan:
        request = self.inputs.request
        options = x86_options(request)
        kind = self.purgatory_kind
        regs = registers_for_kernel(self.purgatory, kind, entry, boot_params_addr)
        segments, symbols = finish_purgatory(self.layout.finish(), self.purgatory, kind, regs,
                                             PurgatoryOptions(
            panic_kernel=False, skip_checks=request.skip_checks,
            console_serial=options.console_serial, serial_base=options.serial_base,
            serial_baud=options.serial_baud, cmdline_end=cmdline_addr + byte_length(self.cmdline)))
        arch = self.inputs.arch
        return Plan(
            arch=arch.name, syscall="kexec_load", flags=request.kexec_flags | arch.kexec_arch,
            entry=self.purgatory.entry, cmdline=self.cmdline, segments=segments,
            notes=self._notes(purgatory_symbols=symbols, **notes))

    def finish_without_purgatory(self, entry: int, **notes) -> Plan:
        """--args-none: the kernel's own entry, nothing in between."""
        request, arch = self.inputs.request, self.inputs.arch
        return Plan(arch=arch.name, syscall="kexec_load",
                    flags=request.kexec_flags | arch.kexec_arch,
                    entry=entry, cmdline=None, segments=self.layout.finish(),
                    notes=self._notes(**notes))

