"""arm64 vmcores: NT_PRSTATUS registers and kernel virtual-to-physical translation.

Translation uses VMCOREINFO, not the dump's p_vaddr: a dump loaded by kexec-tools 2.0.25
without _text in kallsyms has PT_LOADs with wrong virtual addresses (page_offset 0, a
garbage kernel-text header), and VMCOREINFO says everything:

* the linear map [PAGE_OFFSET, PAGE_END): paddr = vaddr - PAGE_OFFSET + PHYS_OFFSET, with
  PAGE_OFFSET from NUMBER(VA_BITS) (pykexec.arch.arm64.kernelmap.linear_map_base);
* the kernel image: paddr = vaddr - NUMBER(kimage_voffset), from _stext's 2 MiB block on;
* anything else (vmalloc, modules, vmemmap) through the page tables at
  SYMBOL(swapper_pg_dir): 4 KiB granule, 3 or 4 levels as VA_BITS says (other granules
  and 52-bit tables are not walked: those addresses stay unmapped).

NT_PRSTATUS (struct elf_prstatus, include/uapi/linux/elfcore.h): pr_pid at 32 and pr_reg,
arm64's user_pt_regs (x0..x30, sp, pc, pstate), at 112.
"""

from __future__ import annotations

import struct
from typing import List, Optional

from pykexec.arch.arm64.kernelmap import ADDRESS_MASK, linear_map_base
from pykexec.arch.dumpreader import CpuRegisters, DumpReader, Extent

PR_PID_OFFSET = 32
PR_REG_OFFSET = 112
PR_REG = tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate")
KIMAGE_SPAN = 1 << 30                 # the image and its BSS fit well within 1 GiB
BLOCK_2M = 2 << 20
GRANULE_4K = 4096
DESCRIPTOR_VALID = 1 << 0
DESCRIPTOR_TABLE = 1 << 1             # table (levels 0-2) or page (level 3); 0: a block
OUTPUT_ADDRESS = ((1 << 48) - 1) & ~(GRANULE_4K - 1)


def decode_prstatus(desc: bytes) -> CpuRegisters:
    if len(desc) < PR_REG_OFFSET + 8 * len(PR_REG):
        raise ValueError(f"NT_PRSTATUS of {len(desc)} bytes is too short for arm64's pr_reg")
    regs = dict(zip(PR_REG, struct.unpack_from(f"<{len(PR_REG)}Q", desc, PR_REG_OFFSET)))
    pid = struct.unpack_from("<I", desc, PR_PID_OFFSET)[0]
    return CpuRegisters(pid, regs, regs["pc"], regs["sp"])


class Arm64DumpReader(DumpReader):
    name = "arm64"
    pointer_size = 8

    def __init__(self, dump):
        super().__init__(dump)
        info = dump.vmcoreinfo
        num = info.number if info else (lambda _n: None)
        va_bits = num("VA_BITS")
        stext = info.symbol("_stext") if info else None
        self.va_bits = va_bits
        self.phys_offset = num("PHYS_OFFSET")
        voffset = num("kimage_voffset")
        self.kimage_voffset = None if voffset is None else voffset & ADDRESS_MASK
        self.page_offset = self.page_end = None
        if va_bits and 36 <= va_bits <= 52 and stext and self.phys_offset is not None:
            self.page_offset = linear_map_base(va_bits, stext)
            self.page_end = self.page_offset + (1 << (va_bits - 1))
        self.kimage = None
        if stext and self.kimage_voffset is not None:
            start = stext & ~(BLOCK_2M - 1)
            self.kimage = (start, start + KIMAGE_SPAN)
        self.root = None
        page_size = info.page_size if info else None
        pgd = info.symbol("swapper_pg_dir") if info else None
        if pgd is not None and page_size in (None, GRANULE_4K) and va_bits in (39, 48):
            self.root = self._image(pgd)
            self.levels = 3 if va_bits == 39 else 4

    @staticmethod
    def prstatus(desc):
        return decode_prstatus(desc)

    def _image(self, vaddr: int) -> Optional[int]:
        if self.kimage is not None and self.kimage[0] <= vaddr < self.kimage[1]:
            return (vaddr - self.kimage_voffset) & ADDRESS_MASK
        return None

    def kvtop(self, vaddr):
        found = self.kvtop_extent(vaddr)
        return None if found is None else found.paddr

    def kvtop_extent(self, vaddr):
        if self.page_offset is not None and self.page_offset <= vaddr < self.page_end:
            paddr = (vaddr - self.page_offset + self.phys_offset) & ADDRESS_MASK
            return Extent(paddr, self.page_end - vaddr)
        paddr = self._image(vaddr)
        if paddr is not None:
            return Extent(paddr, self.kimage[1] - vaddr)
        if self.root is not None:
            return self._walk(vaddr)
        return self.load_extent(vaddr)

    def _walk(self, vaddr: int) -> Optional[Extent]:
        """The 4 KiB-granule translation: table descriptors down, a block or page last."""
        read = self.read_entry_reader(8)
        table = self.root
        for level in range(4 - self.levels, 4):
            shift = 12 + 9 * (3 - level)
            entry = read(table + 8 * ((vaddr >> shift) & 0x1FF))
            if not entry & DESCRIPTOR_VALID:
                return None
            if level == 3 or not entry & DESCRIPTOR_TABLE:
                if level == 3 and not entry & DESCRIPTOR_TABLE:
                    return None          # a level-3 "block" is reserved: not mapped
                if level == 0 and not entry & DESCRIPTOR_TABLE:
                    return None          # no level-0 blocks with a 4 KiB granule
                size = 1 << shift
                offset = vaddr & (size - 1)
                return Extent((entry & OUTPUT_ADDRESS & ~(size - 1)) | offset, size - offset)
            table = entry & OUTPUT_ADDRESS
        return None   # pragma: no cover - level 3 always returns

    def describe_translation(self) -> List[str]:
        out = []
        if self.page_offset is not None:
            out.append(f"linear map PAGE_OFFSET {self.page_offset:#x} = PHYS_OFFSET "
                       f"{self.phys_offset & ADDRESS_MASK:#x} (VA_BITS {self.va_bits})")
        if self.kimage is not None:
            out.append(f"kernel image vaddr - kimage_voffset {self.kimage_voffset:#x}")
        if self.root is not None:
            out.append(f"{self.levels}-level page tables (4 KiB granule) at {self.root:#x}")
        return out or ["PT_LOAD p_vaddr only (no VMCOREINFO)"]
