"""x86_64 and i386 vmcores (the dump readers x86_64/ and i386/ offer): NT_PRSTATUS registers and kernel virtual-to-physical translation.

x86_64: the kernel image is mapped at __START_KERNEL_map + (paddr - phys_base) (phys_base
from VMCOREINFO NUMBER(phys_base), else from the kernel-text PT_LOAD); RAM is mapped
linearly at PAGE_OFFSET (page_offset_base: found from the RAM PT_LOADs, whose p_vaddr is
PAGE_OFFSET + p_paddr); anything else (vmalloc, vmemmap, modules) goes through the page
tables at SYMBOL(init_top_pgt), 4 or 5 levels as NUMBER(pgtable_l5_enabled) says, without
the memory-encryption bit NUMBER(sme_mask).

i386: lowmem is PAGE_OFFSET + paddr (PAGE_OFFSET from the PT_LOADs, else 0xC0000000) and
the kernel image lives there; the page tables at SYMBOL(swapper_pg_dir) (2 levels, or 3
with CONFIG_X86_PAE=y in VMCOREINFO) translate everything when they are readable.
"""

from __future__ import annotations

import struct
from typing import List, Optional

from pykexec.arch.dumpreader import CpuRegisters, DumpReader, Level, walk_page_tables
from pykexec.arch.x86.abi import START_KERNEL_MAP

# struct elf_prstatus: pr_reg (the saved pt_regs) after siginfo, signal sets, pids and times.
X86_64_PR_REG = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax",
                 "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss",
                 "fs_base", "gs_base", "ds", "es", "fs", "gs")
I386_PR_REG = ("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "ds", "es", "fs", "gs",
               "orig_eax", "eip", "cs", "eflags", "esp", "ss")
X86_64_PR_REG_OFFSET = 112
I386_PR_REG_OFFSET = 72
X86_64_PR_PID_OFFSET = 32
I386_PR_PID_OFFSET = 24

DEFAULT_KERNEL_IMAGE_SIZE = 1 << 30
I386_DEFAULT_PAGE_OFFSET = 0xC0000000
PHYS_ADDR_MASK_52 = ((1 << 52) - 1) & ~0xFFF

X86_64_LEVELS_4 = (Level(39, 9, False), Level(30, 9, True), Level(21, 9, True),
                   Level(12, 9, False))
X86_64_LEVELS_5 = (Level(48, 9, False),) + X86_64_LEVELS_4
I386_LEVELS_2 = (Level(22, 10, True), Level(12, 10, False))
I386_LEVELS_PAE = (Level(30, 2, False), Level(21, 9, True), Level(12, 9, False))


def decode_prstatus(desc: bytes, elfclass_bits: int) -> CpuRegisters:
    """pid and registers of an x86 NT_PRSTATUS (64: x86_64 layout, 32: i386 layout)."""
    if elfclass_bits == 64:
        names, offset, word, pid_at, pc, sp = (X86_64_PR_REG, X86_64_PR_REG_OFFSET, "Q",
                                               X86_64_PR_PID_OFFSET, "rip", "rsp")
    else:
        names, offset, word, pid_at, pc, sp = (I386_PR_REG, I386_PR_REG_OFFSET, "I",
                                               I386_PR_PID_OFFSET, "eip", "esp")
    size = struct.calcsize("<" + word)
    if len(desc) < offset + len(names) * size:
        raise ValueError(f"NT_PRSTATUS of {len(desc)} bytes is too short for pr_reg")
    regs = dict(zip(names, struct.unpack_from(f"<{len(names)}{word}", desc, offset)))
    pid = struct.unpack_from("<I", desc, pid_at)[0]
    return CpuRegisters(pid, regs, regs[pc], regs[sp])


def _linear_offset(dump, keep) -> Optional[int]:
    """p_vaddr - p_paddr shared by the most RAM bytes among PT_LOADs that `keep` accepts."""
    weight = {}
    no_vaddr = (1 << dump.elfclass) - 1       # "no virtual address" (highmem, some loaders)
    for load in dump.loads:
        if load.vaddr and load.vaddr != no_vaddr and keep(load.vaddr):
            delta = load.vaddr - load.paddr
            weight[delta] = weight.get(delta, 0) + load.memsz
    return max(weight, key=weight.get) if weight else None


class X86_64(DumpReader):
    name = "x86_64"
    pointer_size = 8

    def __init__(self, dump):
        super().__init__(dump)
        info = dump.vmcoreinfo
        num = info.number if info else (lambda _n: None)
        self.image_size = num("KERNEL_IMAGE_SIZE") or DEFAULT_KERNEL_IMAGE_SIZE
        self.phys_base = num("phys_base")
        if self.phys_base is None:
            text = _linear_offset(dump, lambda v: v >= START_KERNEL_MAP)
            self.phys_base = None if text is None else -(text - START_KERNEL_MAP)
        self.page_offset = _linear_offset(dump, lambda v: v < START_KERNEL_MAP)
        self.levels = X86_64_LEVELS_5 if num("pgtable_l5_enabled") == 1 else X86_64_LEVELS_4
        self.address_mask = PHYS_ADDR_MASK_52 & ~(num("sme_mask") or 0)
        root = None
        if info:
            root = info.symbol("init_top_pgt") or info.symbol("swapper_pg_dir")
        self.root = self._text(root) if root is not None else None
        self.ram_end = max((ld.paddr + ld.memsz for ld in dump.loads), default=0)

    @staticmethod
    def prstatus(desc):
        return decode_prstatus(desc, 64)

    def _text(self, vaddr: int) -> Optional[int]:
        if self.phys_base is not None and START_KERNEL_MAP <= vaddr < START_KERNEL_MAP + self.image_size:
            return vaddr - START_KERNEL_MAP + self.phys_base
        return None

    def kvtop(self, vaddr):
        paddr = self._text(vaddr)
        if paddr is not None:
            return paddr
        if self.page_offset is not None and 0 <= vaddr - self.page_offset < self.ram_end:
            return vaddr - self.page_offset
        if self.root is not None:
            return walk_page_tables(self.read_entry_reader(8), self.root, vaddr, self.levels,
                                    8, self.address_mask)
        return self.dump.load_vaddr_to_paddr(vaddr)

    def describe_translation(self) -> List[str]:
        out = []
        if self.phys_base is not None:
            out.append(f"kernel text {START_KERNEL_MAP:#x} + (paddr - phys_base {self.phys_base:#x})")
        if self.page_offset is not None:
            out.append(f"direct map PAGE_OFFSET {self.page_offset:#x}")
        if self.root is not None:
            out.append(f"{len(self.levels)}-level page tables at {self.root:#x}")
        return out


class I386(DumpReader):
    name = "i386"
    pointer_size = 4

    def __init__(self, dump):
        super().__init__(dump)
        info = dump.vmcoreinfo
        found = _linear_offset(dump, lambda v: True)
        self.page_offset = found if found is not None else I386_DEFAULT_PAGE_OFFSET
        self.pae = bool(info and info.config("X86_PAE"))
        self.levels = I386_LEVELS_PAE if self.pae else I386_LEVELS_2
        self.entry_size = 8 if self.pae else 4
        self.address_mask = PHYS_ADDR_MASK_52 if self.pae else 0xFFFFF000
        root = info.symbol("swapper_pg_dir") if info else None
        self.root = root - self.page_offset if root is not None and root >= self.page_offset else None
        self.ram_end = max((ld.paddr + ld.memsz for ld in dump.loads), default=0)

    @staticmethod
    def prstatus(desc):
        return decode_prstatus(desc, 32)

    def kvtop(self, vaddr):
        if self.root is not None:
            try:
                return walk_page_tables(self.read_entry_reader(self.entry_size), self.root,
                                        vaddr, self.levels, self.entry_size, self.address_mask)
            except ValueError:
                pass            # the tables are not in the dump: lowmem is still linear
        if 0 <= vaddr - self.page_offset < self.ram_end:
            return vaddr - self.page_offset
        return None

    def describe_translation(self) -> List[str]:
        out = [f"lowmem PAGE_OFFSET {self.page_offset:#x}"]
        if self.root is not None:
            out.append(f"{'PAE 3' if self.pae else '2'}-level page tables at {self.root:#x}")
        return out
