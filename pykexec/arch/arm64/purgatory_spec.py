"""How the arm64 purgatory is built: sources and compiler flags, each flag with its
reason. pykexec.purgatory.build finds this file by its name (purgatory_spec.py under
pykexec/arch/) and loads it by path when the package is built, so it imports nothing but
the standard library and pykexec.purgatory.build."""

from __future__ import annotations

from typing import Tuple

from pykexec.purgatory.build import FREESTANDING_CFLAGS, PurgatorySpec

# The generic freestanding flags, plus what arm64 needs: the code runs with the MMU off,
# so every data access is to Device memory.
ARM64_CFLAGS: Tuple[str, ...] = FREESTANDING_CFLAGS + (
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
