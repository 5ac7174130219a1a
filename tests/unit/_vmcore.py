"""Synthetic ELF vmcores for the vmcore tests, packed with `struct` from the ELF and kernel
layouts (System V gABI; include/uapi/linux/elfcore.h; arch/x86 pt_regs), independently of
pykexec's own declarations, so a wrong declaration in pykexec cannot agree with itself.

`core(...)` returns the bytes of a whole file; `Mem` collects (paddr, bytes) pieces and
turns them into PT_LOADs; `prstatus_*` build NT_PRSTATUS descriptors; `vmcoreinfo(...)`
the VMCOREINFO text. The i12-save work may use these too.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Optional, Sequence, Tuple

EM_386, EM_X86_64 = 3, 62
PT_LOAD, PT_NOTE = 1, 4
ET_CORE, ET_EXEC = 4, 2

X86_64_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax",
               "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss",
               "fs_base", "gs_base", "ds", "es", "fs", "gs")
I386_REGS = ("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "ds", "es", "fs", "gs",
             "orig_eax", "eip", "cs", "eflags", "esp", "ss")


def note(name: str, ntype: int, desc: bytes) -> bytes:
    n = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def prstatus_x86_64(pid: int, regs: Dict[str, int]) -> bytes:
    """struct elf_prstatus on x86_64: 336 bytes, pr_pid at 32, pr_reg (27 u64) at 112."""
    out = bytearray(336)
    struct.pack_into("<I", out, 32, pid)
    struct.pack_into("<27Q", out, 112, *(regs.get(r, 0) for r in X86_64_REGS))
    return bytes(out)


def prstatus_i386(pid: int, regs: Dict[str, int]) -> bytes:
    """struct elf_prstatus on i386: 144 bytes, pr_pid at 24, pr_reg (17 u32) at 72."""
    out = bytearray(144)
    struct.pack_into("<I", out, 24, pid)
    struct.pack_into("<17I", out, 72, *(regs.get(r, 0) for r in I386_REGS))
    return bytes(out)


def vmcoreinfo(entries: Sequence[Tuple[str, str]], trailing_newline: bool = True) -> bytes:
    text = "\n".join(f"{k}={v}" for k, v in entries)
    return (text + ("\n" if trailing_newline else "")).encode()


class Mem:
    """Physical memory pieces; each becomes one PT_LOAD (vaddr = paddr + vdelta)."""

    def __init__(self):
        self.pieces: List[list] = []   # [paddr, bytearray, vaddr, memsz]

    def add(self, paddr: int, size: int, vaddr: int = 0, memsz: Optional[int] = None):
        buf = bytearray(size)
        self.pieces.append([paddr, buf, vaddr, memsz if memsz is not None else size])
        return buf

    def put(self, paddr: int, data: bytes) -> None:
        for start, buf, _v, _m in self.pieces:
            if start <= paddr and paddr + len(data) <= start + len(buf):
                buf[paddr - start:paddr - start + len(data)] = data
                return
        raise AssertionError(f"{paddr:#x} is in no piece")


def core(mem: Mem, notes: Sequence[bytes], elfclass: int = 64, machine: int = EM_X86_64,
         e_type: int = ET_CORE) -> bytes:
    """An ELF core: header, one PT_NOTE with `notes`, one PT_LOAD per piece of `mem`."""
    is64 = elfclass == 64
    ehsize, phentsize = (64, 56) if is64 else (52, 32)
    phnum = 1 + len(mem.pieces)
    note_bytes = b"".join(notes)
    note_off = ehsize + phnum * phentsize
    data_off = (note_off + len(note_bytes) + 0xFFF) & ~0xFFF
    phdrs = []
    if is64:
        phdrs.append(struct.pack("<IIQQQQQQ", PT_NOTE, 0, note_off, 0, 0, len(note_bytes),
                                 len(note_bytes), 0))
    else:
        phdrs.append(struct.pack("<IIIIIIII", PT_NOTE, note_off, 0, 0, len(note_bytes),
                                 len(note_bytes), 0, 0))
    body = bytearray()
    for paddr, buf, vaddr, memsz in mem.pieces:
        off = data_off + len(body)
        if is64:
            phdrs.append(struct.pack("<IIQQQQQQ", PT_LOAD, 7, off, vaddr, paddr, len(buf),
                                     memsz, 0))
        else:
            phdrs.append(struct.pack("<IIIIIIII", PT_LOAD, off, vaddr, paddr, len(buf),
                                     memsz, 7, 0))
        body += buf
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1]) + bytes(9)
    if is64:
        ehdr = ident + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, 0, ehsize, 0, 0,
                                   ehsize, phentsize, phnum, 0, 0, 0)
    else:
        ehdr = ident + struct.pack("<HHIIIIIHHHHHH", e_type, machine, 1, 0, ehsize, 0, 0,
                                   ehsize, phentsize, phnum, 0, 0, 0)
    head = ehdr + b"".join(phdrs) + note_bytes
    return head + bytes(data_off - len(head)) + bytes(body)
