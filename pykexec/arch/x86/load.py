"""The steps an x86 format's loader calls, declared once, and the one factory for them.

A format (bzImage64, bzImage, elf-x86_64, elf-x86) opens a load with `open_load`, places
what is its own (the kernel, its boot parameters) in the order that decides where things
land, calls the steps below in between, and closes with `finish(entry=...)`. What a crash
load adds (backup, ELF core header, capture memory map) and what an architecture differs
in (window limits, purgatory, arch flag) stay behind the steps: the crash loads are
`pykexec.arch.x86.crashload.X86CrashLoad` and its per-architecture subclasses, the normal
loads `pykexec.arch.x86.normalload.X86NormalLoad` and its subclasses.
"""

from __future__ import annotations

import importlib
from typing import List, Optional, Protocol, Tuple, runtime_checkable

from pykexec.arch.x86.efi import patch_efi_info, place_efi_data
from pykexec.arch.x86.firmware import acpi_rsdp, edd
from pykexec.arch.x86.purgatory_setup import PURGATORY_MIN_ADDR, place_purgatory
from pykexec.arch.x86.setupdata import place_setup_data
from pykexec.arch.x86.zeropage import ZeroPageInputs, build_zero_page
from pykexec.core.layout import Layout
from pykexec.core.plan import Plan
from pykexec.core.ranges import Range


@runtime_checkable
class X86LoadSteps(Protocol):
    inputs: object             # pykexec.arch.x86.inputs.LoadInputs
    format_name: str
    layout: Layout
    window: Range
    warnings: List[str]
    crash: object              # the CrashSetup once placed; None for a normal load
    purgatory: object          # the LoadedObject once placed

    def place_crash_segments(self) -> str:
        """Backup and elfcorehdr (crash loads; nothing otherwise); returns the new kernel's
        final command line."""

    def place_purgatory(self, low: Optional[int] = None, high: Optional[int] = None,
                        top_down: bool = True) -> None:
        """Purgatory, within the architecture's bounds unless the format narrows them."""

    def place_initrd_and_setup_data(self, initrd_min: int, initrd_max: Optional[int] = None
                                    ) -> Tuple[Optional[Tuple[int, int]], int]:
        """The initrd (address, size) or None, and the head of the setup_data list."""

    def zero_page(self, header_bytes: bytes, cmdline_addr: int, cmdline_offset: int,
                  initrd, setup_data: int) -> bytes:
        """boot_params for the new kernel, with this load's memory map."""

    def finish(self, entry: int, boot_params_addr: int, cmdline_addr: int, **notes) -> Plan:
        """Purgatory's registers and digest set; the plan, entered at purgatory."""

    def finish_without_purgatory(self, entry: int, **notes) -> Plan:
        """--args-none: the plan entered at the kernel's own entry."""


def place_initrd(layout: Layout, inputs, initrd_min: int, initrd_max: Optional[int] = None
                 ) -> Optional[Tuple[int, int]]:
    """The initrd top-down within [initrd_min, initrd_max]: (address, size), or None."""
    if inputs.initrd is None:
        return None
    where = {"low": initrd_min}
    if initrd_max is not None:
        where["high"] = initrd_max + 1
    return layout.add(inputs.initrd, "initrd", inputs.initrd_path, **where), len(inputs.initrd)


def open_load(inputs, format_name: str) -> X86LoadSteps:
    """The load steps for this request on its architecture: crash (-p) or normal."""
    arch = inputs.arch
    path = arch.crash_load if inputs.request.crash or arch.normal_load is None \
        else arch.normal_load
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)(inputs, format_name)


class SharedSteps:
    """The steps a crash load and a normal load take alike: purgatory within the
    architecture's bounds, then the initrd and the setup_data list (SETUP_EFI and its
    runtime map first when EFI data is passed), and the zero page. Each load says which
    memory map the new kernel gets (`new_e820`) and whether it passes EFI data (`efi`)."""

    purgatory_kind: object         # pykexec.arch.x86.purgatory_setup.PurgatoryKind
    purgatory_high: int
    efi: object = None             # pykexec.arch.x86.efi.EfiBootData or None
    efi_memmap: Optional[int] = None

    @property
    def new_e820(self):
        raise NotImplementedError   # pragma: no cover - each load has one

    def place_purgatory(self, low: Optional[int] = None, high: Optional[int] = None,
                        top_down: bool = True) -> None:
        self.purgatory = place_purgatory(
            self.layout, self.purgatory_kind, PURGATORY_MIN_ADDR if low is None else low,
            self.purgatory_high if high is None else high, top_down)

    def place_initrd_and_setup_data(self, initrd_min: int, initrd_max: Optional[int] = None
                                    ) -> Tuple[Optional[Tuple[int, int]], int]:
        inputs = self.inputs
        initrd = place_initrd(self.layout, inputs, initrd_min, initrd_max)
        head = 0
        if self.efi is not None:
            head, self.efi_memmap = place_efi_data(self.layout, self.efi)
        return initrd, place_setup_data(self.layout, self.new_e820, inputs.random_bytes,
                                        head=head)

    def zero_page(self, header_bytes: bytes, cmdline_addr: int, cmdline_offset: int,
                  initrd, setup_data: int) -> bytes:
        machine = self.inputs.machine
        page = build_zero_page(ZeroPageInputs(
            header_bytes=header_bytes, cmdline_addr=cmdline_addr, cmdline_offset=cmdline_offset,
            e820=self.new_e820, initrd=initrd, setup_data_head=setup_data,
            acpi_rsdp=acpi_rsdp(machine) or 0, running_boot_params=machine.boot_params,
            edd=edd(machine)))
        if self.efi is not None and self.efi_memmap is not None:
            page = patch_efi_info(page, self.efi, self.efi_memmap)
        return page
