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

MIN_PAGE = 0x1000             # no architecture maps less: a 4 KiB extent is always right


class CpuRegisters(NamedTuple):
    pid: int
    regs: Dict[str, int]          # register name -> value, in pr_reg order
    pc: Optional[int]             # program counter at the crash (rip / eip / pc)
    sp: Optional[int]


class Extent(NamedTuple):
    paddr: int                    # where a kernel virtual address is in physical memory
    size: int                     # bytes from there on that the same mapping holds (>= 1)


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
    found = walk_page_tables_extent(read_entry, root, vaddr, levels, entry_size, address_mask,
                                    present, large_bit)
    return None if found is None else found[0]


def walk_page_tables_extent(read_entry: Callable[[int], int], root: int, vaddr: int,
                            levels: Sequence[Level], entry_size: int, address_mask: int,
                            present: int = 1, large_bit: int = 1 << 7) -> Optional[Extent]:
    """walk_page_tables, with how many bytes from `vaddr` on the same page (small or large)
    maps contiguously: a reader of a long range walks once a page, not once a 4 KiB."""
    table = root
    for level in levels:
        index = (vaddr >> level.shift) & ((1 << level.bits) - 1)
        entry = read_entry(table + index * entry_size)
        if not entry & present:
            return None
        if level.large and entry & large_bit:
            page_mask = (1 << level.shift) - 1
            offset = vaddr & page_mask
            return Extent((entry & address_mask & ~page_mask) | offset, page_mask + 1 - offset)
        table = entry & address_mask
    return Extent(table | (vaddr & 0xFFF), 0x1000 - (vaddr & 0xFFF))


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

    def kvtop_extent(self, vaddr: int) -> Optional[Extent]:
        """kvtop(vaddr), and how many bytes on kvtop stays paddr + distance (the mapping's
        rest). This generic one knows only the PT_LOAD that maps vaddr; for a reader that
        translates its own way (kvtop) but gives no extents, it answers 4 KiB at a time."""
        if type(self).kvtop is not DumpReader.kvtop:
            paddr = self.kvtop(vaddr)
            return None if paddr is None else Extent(paddr, MIN_PAGE - vaddr % MIN_PAGE)
        return self.load_extent(vaddr)

    def load_extent(self, vaddr: int) -> Optional[Extent]:
        """kvtop_extent through the PT_LOADs' p_vaddr (dump.load_vaddr_to_paddr's rule)."""
        loads = self.dump.loads
        for i, load in enumerate(loads):
            if load.vaddr <= vaddr < load.vaddr + load.memsz:
                end = load.vaddr + load.memsz
                # an earlier PT_LOAD starting inside the rest would win from its start on
                for other in loads[:i]:
                    if vaddr < other.vaddr < end and other.memsz:
                        end = other.vaddr
                return Extent(load.paddr + vaddr - load.vaddr, end - vaddr)
        return None

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
