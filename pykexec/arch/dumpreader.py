"""What a vmcore reader needs from an architecture: the reader's base class and the page-table walk.

A `DumpReader` decodes NT_PRSTATUS registers and turns kernel virtual addresses into
physical ones. An architecture offers its subclass as `dump_reader()` (see
pykexec.arch.interfaces), found by the dump's e_machine through the registry
(`pykexec.vmcore.arch.arch_for`). A machine without one gets `DumpReader` itself:
addresses are translated through the PT_LOADs' p_vaddr only (what kexec-tools'
vmcore-dmesg does) and registers are left undecoded.

Page tables are walked by `walk_page_tables` from a level description, so 4- and 5-level
tables and 2- and 3-level (PAE) ones share one loop.
"""

from __future__ import annotations

import functools
import struct
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence



class CpuRegisters(NamedTuple):
    pid: int
    regs: Dict[str, int]          # register name -> value, in pr_reg order
    pc: Optional[int]             # program counter at the crash (rip / eip / pc)
    sp: Optional[int]


class Level(NamedTuple):
    shift: int                    # lowest virtual-address bit this level indexes
    bits: int                     # index width
    large: bool                   # an entry here may map a large page (PS bit)


def walk_page_tables(read_entry: Callable[[int], int], root: int, vaddr: int,
                     levels: Sequence[Level], entry_size: int, address_mask: int,
                     present: int = 1, large_bit: int = 1 << 7) -> Optional[int]:
    """The physical address `vaddr` maps to, or None where an entry is not present.

    `read_entry(paddr)` reads one table entry; `address_mask` keeps an entry's physical
    address bits (no flags, no NX, no memory-encryption bit)."""
    table = root
    for level in levels:
        index = (vaddr >> level.shift) & ((1 << level.bits) - 1)
        entry = read_entry(table + index * entry_size)
        if not entry & present:
            return None
        if level.large and entry & large_bit:
            page_mask = (1 << level.shift) - 1
            return (entry & address_mask & ~page_mask) | (vaddr & page_mask)
        table = entry & address_mask
    return table | (vaddr & 0xFFF)


class DumpReader:
    """The generic reader: PT_LOAD p_vaddr mapping only, registers not decoded."""

    name = "unknown"
    pointer_size = 0              # 0: the ELF class's word size

    def __init__(self, dump):
        # `dump` is a pykexec.vmcore.Vmcore (not imported: vmcore sits above arch); a reader
        # uses its elfclass, loads, vmcoreinfo, read_phys and load_vaddr_to_paddr
        self.dump = dump
        if not self.pointer_size:
            self.pointer_size = 8 if dump.elfclass == 64 else 4

    @staticmethod
    def prstatus(desc: bytes) -> Optional[CpuRegisters]:
        return None

    def kvtop(self, vaddr: int) -> Optional[int]:
        return self.dump.load_vaddr_to_paddr(vaddr)

    def describe_translation(self) -> List[str]:
        return ["PT_LOAD p_vaddr only"]

    # helpers for subclasses
    def read_entry_reader(self, entry_size: int) -> Callable[[int], int]:
        # a dump's page tables never change: one bounded cache per entry size, so walking
        # many neighbouring addresses (a struct page array) reads each table entry once
        readers = self.__dict__.setdefault("_entry_readers", {})
        if entry_size not in readers:
            fmt = "<Q" if entry_size == 8 else "<I"

            @functools.lru_cache(maxsize=1 << 14)
            def read(paddr: int) -> int:
                return struct.unpack(fmt, self.dump.read_phys(paddr, entry_size))[0]
            readers[entry_size] = read
        return readers[entry_size]
