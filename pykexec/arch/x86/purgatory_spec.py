"""How the x86 purgatories are built: sources and compiler flags, each flag with its
reason. pykexec.purgatory.build finds this file by its name (purgatory_spec.py under
pykexec/arch/) and loads it by path when the package is built, so it imports nothing but
the standard library and pykexec.purgatory.build."""

from __future__ import annotations

from typing import Tuple

from pykexec.purgatory.build import FREESTANDING_CFLAGS, PurgatorySpec

# The generic freestanding flags, plus what x86 needs.
X86_CFLAGS: Tuple[str, ...] = FREESTANDING_CFLAGS + (
    "-mtune=generic",
    # Only general-purpose registers: the FPU/SIMD state belongs to nobody here
    # (and CR0/CR4 may not even allow it).
    "-mno-mmx",
    "-mno-sse",
    "-mno-sse2",
    "-mgeneral-regs-only",
    # No CET notes or endbr64 (Ubuntu's gcc enables -fcf-protection by default).
    "-fcf-protection=none",
)

X86_64_CFLAGS: Tuple[str, ...] = X86_CFLAGS + (
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
I386_CFLAGS: Tuple[str, ...] = ("-m32",) + X86_CFLAGS + (
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
