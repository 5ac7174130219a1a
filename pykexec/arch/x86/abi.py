"""x86's own ABI values, declared once: its kexec arch value, the kernel-text map base, and
the register blocks this project's purgatory loads before entering the kernel.

The register blocks are also spelled by the purgatory's C header and assembly
(arch/x86_64/purgatory/arch.h and entry64.S, arch/i386/purgatory/arch.h and entry32.S);
tests/unit/test_abi_once.py parses those files and checks their field order, offsets and
size against these declarations, so the two sides cannot drift apart.
"""

from __future__ import annotations

from construct import Int32ul, Int64ul, Struct

from pykexec.abi.elf import EM_X86_64
from pykexec.abi.kexec import kexec_arch_value

KEXEC_ARCH_X86_64 = kexec_arch_value(EM_X86_64)

# x86_64 __START_KERNEL_map: the kernel image's virtual base; the direct map of RAM lies
# below it, so a virtual address at or above it is kernel text
START_KERNEL_MAP = 0xFFFFFFFF80000000

# struct entry64_regs / entry32_regs: in the order entry64.S / entry32.S load them
Entry64Regs = Struct(*(name / Int64ul for name in (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")))
Entry32Regs = Struct(*(name / Int32ul for name in (
    "eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip")))
