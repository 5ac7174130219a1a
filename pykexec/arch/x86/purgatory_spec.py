"""How the x86 purgatories are built: sources and compiler flags, each flag with its
reason. pykexec.purgatory.build finds this file by its name (purgatory_spec.py under
pykexec/arch/) and loads it by path when the package is built, so it imports nothing but
the standard library and pykexec.purgatory.build."""

from __future__ import annotations

from typing import Tuple

from pykexec.purgatory.build import PurgatorySpec

# Compiler flags both x86 purgatories take, and why.  The code runs with no OS, no
# libc, an identity map at an arbitrary physical address (possibly above 4 GiB) and
# a small stack of its own.
FREESTANDING_CFLAGS: Tuple[str, ...] = (
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    # No hosted environment: no libc, no assumptions about library functions.
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    # Absolute code: no GOT/PLT; Debian's gcc would otherwise build PIE code with
    # GOTPCREL relocations the loader does not (and should not) implement.
    "-fno-PIC",
    "-fno-PIE",
    # The canary lives at %fs:0x28 (%gs:0x14 on i386), which does not exist here.
    "-fno-stack-protector",
    "-mtune=generic",
    # Only general-purpose registers: the FPU/SIMD state belongs to nobody here
    # (and CR0/CR4 may not even allow it).
    "-mno-mmx",
    "-mno-sse",
    "-mno-sse2",
    "-mgeneral-regs-only",
    "-Os",
    # No .eh_frame (and its relocations): nothing unwinds.
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    # Zero-initialised globals go to .data so the loader can preset them; a
    # variable in .bss (SHT_NOBITS) is zero-filled by the kernel instead.
    "-fno-zero-initialized-in-bss",
    # No SHN_COMMON symbols (the loader refuses them).
    "-fno-common",
    # Strings in plain .rodata, not SHF_MERGE sections a linker may shrink, so the
    # loaded image is exactly the object's bytes.
    "-fno-merge-constants",
    # Do not turn the copy/fill loops of string.c back into calls to themselves.
    "-fno-tree-loop-distribute-patterns",
    # Physical address 0 is valid memory (the backup source starts there).
    "-fno-delete-null-pointer-checks",
    # No CET notes or endbr64 (Ubuntu's gcc enables -fcf-protection by default).
    "-fcf-protection=none",
    "-fno-ident",
)

X86_64_CFLAGS: Tuple[str, ...] = FREESTANDING_CFLAGS + (
    # Symbol addresses may be anywhere in 64-bit space: no R_X86_64_32/32S.
    "-mcmodel=large",
    # A target for the baseline ISA, never the build host's.
    "-march=x86-64",
    # No red zone below rsp: nothing may rely on memory under the stack pointer.
    "-mno-red-zone",
    "-mno-avx",
)

# The i386 purgatory: the same freestanding rules for 32-bit code.  It runs in flat
# protected mode with paging off, below 4 GiB, so plain absolute addressing is right.
I386_CFLAGS: Tuple[str, ...] = ("-m32",) + FREESTANDING_CFLAGS + (
    # Debian's 32-bit kernels need a 686 anyway; no later ISA.
    "-march=i686",
)


# The C core both x86 purgatories share (checks, backup copy, UART, SHA-256), compiled
# per architecture; each architecture adds its entry code and an "arch.h".
X86_SHARED_SOURCES = ("../../x86/purgatory/purgatory.c", "../../common/purgatory/sha256.c",
                      "../../x86/purgatory/serial.c", "../../common/purgatory/string.c")


X86_64 = PurgatorySpec(
    arch="x86_64",
    sources=("entry64.S", *X86_SHARED_SOURCES),
    cflags=X86_64_CFLAGS,
    ld_emulation="elf_x86_64",
)

I386 = PurgatorySpec(
    arch="i386",
    sources=("entry32.S", *X86_SHARED_SOURCES),
    cflags=I386_CFLAGS,
    ld_emulation="elf_i386",
)

# Built when the package is built (setup.py), in this order.
SPECS = (X86_64, I386)
