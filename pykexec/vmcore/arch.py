"""The dump reader for a vmcore's e_machine, from the architecture registry.

Generic vmcore code never names an architecture: it asks `arch_for(e_machine)`, which
takes the reader an architecture module offers (`dump_reader()`), or the generic
`DumpReader` (PT_LOAD p_vaddr mapping only, registers undecoded) when none does.
"""

from __future__ import annotations

from typing import Type

from pykexec.arch import by_elf_machine, optional_hook
from pykexec.arch.dumpreader import CpuRegisters, DumpReader, Level, walk_page_tables  # noqa: F401


def arch_for(e_machine: int) -> Type[DumpReader]:
    arch = by_elf_machine(e_machine)
    reader = optional_hook(arch, "dump_reader")
    return reader if reader is not None else DumpReader
