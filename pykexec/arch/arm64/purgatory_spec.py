"""How the arm64 purgatory is built: sources and compiler flags, each flag with its
reason. pykexec.purgatory.build finds this file by its name (purgatory_spec.py under
pykexec/arch/) and loads it by path when the package is built, so it imports nothing but
the standard library and pykexec.purgatory.build."""

from __future__ import annotations

from typing import Tuple

from pykexec.purgatory.build import PurgatorySpec

# The code runs with no OS, no libc, the MMU off (every data access is to Device memory)
# at an arbitrary physical address, possibly above 4 GiB, on a small stack of its own.
ARM64_CFLAGS: Tuple[str, ...] = (
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    # No hosted environment: no libc, no assumptions about library functions.
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    # Absolute code: no GOT; Debian's gcc would otherwise build PIE code with
    # ADR_GOT_PAGE/LD64_GOT_LO12_NC relocations the loader does not implement.
    "-fno-PIC",
    "-fno-PIE",
    # The canary would be read through a symbol nothing defines here.
    "-fno-stack-protector",
    # adrp + :lo12: pairs (+-4 GiB, pc-relative): the object is one segment, so every
    # reference is in range wherever it is placed; no literal pools of addresses.
    "-mcmodel=small",
    # A target for the baseline ISA, never the build host's.
    "-march=armv8-a",
    # Only general-purpose registers: FP/SIMD may trap (CPACR) and its state is nobody's.
    "-mgeneral-regs-only",
    # With the MMU off all data accesses are Device memory, where an unaligned access
    # faults: gcc must not merge byte accesses into unaligned wider ones.
    "-mstrict-align",
    # No PAC/BTI instructions (a distribution's default may enable them).
    "-mbranch-protection=none",
    # No calls to libgcc's __aarch64_* atomics helpers.
    "-mno-outline-atomics",
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
    # Physical address 0 may be valid memory.
    "-fno-delete-null-pointer-checks",
    "-fno-ident",
)

# The SHA-256 and memory routines every purgatory shares (arch/common/purgatory).
COMMON_SOURCES = ("../../common/purgatory/sha256.c", "../../common/purgatory/string.c")

ARM64 = PurgatorySpec(
    arch="arm64",
    sources=("entry.S", "purgatory.c", "pl011.c", *COMMON_SOURCES),
    cflags=ARM64_CFLAGS,
    # Built by the host's own gcc on an arm64 host, by Debian's cross compiler elsewhere.
    native_machines=("aarch64", "arm64"),
    cross_prefix="aarch64-linux-gnu-",
    cross_package="gcc-aarch64-linux-gnu",
    # A host without that compiler still builds and runs pykexec for its other
    # architectures; arm64 loads are then refused with the reason.
    optional=True,
)

# Built when the package is built (setup.py), in this order.
SPECS = (ARM64,)
