"""What the AArch64 relocation types in the purgatory object mean (pykexec.purgatory.elfrel
applies them), from the Arm ELF ABI for the 64-bit architecture (AAELF64).

Data types are (width in bytes, pc-relative, range rule). Instruction types patch
immediate fields of a 32-bit little-endian instruction word: (4, pc-relative, range
rule, fields, range bits, alignment, page size), a field being (lowest bit of the value,
bit count, lowest bit in the instruction). "_NC" types are not range-checked.

Types are named as pyelftools names them; it has no name for R_AARCH64_NONE (0) nor for
R_AARCH64_LDST128_ABS_LO12_NC, which gcc does not emit for code built without FP/SIMD
registers (-mgeneral-regs-only): an object with either is refused, naming the type number.
"""

from __future__ import annotations

from typing import Tuple

from pykexec.purgatory.elfrel import relocation_set

Fields = Tuple[Tuple[int, int, int], ...]

# Where each instruction class keeps its immediate.
ADR_IMM: Fields = ((0, 2, 29), (2, 19, 5))        # adr: immlo 30:29, immhi 23:5
ADRP_IMM: Fields = ((12, 2, 29), (14, 19, 5))     # adrp: the same fields, in 4 KiB pages
BRANCH26: Fields = ((2, 26, 0),)                  # b/bl: imm26 25:0, in words
IMM19: Fields = ((2, 19, 5),)                     # b.cond, cbz, ldr (literal): imm19 23:5
IMM14: Fields = ((2, 14, 5),)                     # tbz/tbnz: imm14 18:5


def _lo12(scale: int) -> tuple:
    """add/ldr/str :lo12: immediate (imm12 21:10), scaled by the access size `scale`."""
    shift = scale.bit_length() - 1
    return (4, False, "wrap", ((shift, 12 - shift, 10),), 0, scale, 0)


def _pc_insn(fields: Fields, bits: int, align: int = 4) -> tuple:
    """A pc-relative immediate that must fit in `bits` signed bits."""
    return (4, True, "signed", fields, bits, align, 0)


PAGE = 4096   # adrp works in 4 KiB pages whatever the translation granule

ARM64_RELOCATIONS = relocation_set(("EM_AARCH64",), 64, "ENUM_RELOC_TYPE_AARCH64", {
    "R_AARCH64_ABS64": (8, False, "wrap"),
    # AAELF64 accepts -2**31 <= X < 2**32 for these: a signed or an unsigned word.
    "R_AARCH64_ABS32": (4, False, "bitfield"),
    "R_AARCH64_ABS16": (2, False, "bitfield"),
    "R_AARCH64_PREL64": (8, True, "wrap"),
    "R_AARCH64_PREL32": (4, True, "bitfield"),
    "R_AARCH64_PREL16": (2, True, "bitfield"),
    # adr: +-1 MiB; adrp: +-4 GiB between the pages of the place and the target.
    "R_AARCH64_ADR_PREL_LO21": _pc_insn(ADR_IMM, 21, align=1),
    "R_AARCH64_ADR_PREL_PG_HI21": (4, True, "signed", ADRP_IMM, 33, 1, PAGE),
    "R_AARCH64_ADR_PREL_PG_HI21_NC": (4, True, "wrap", ADRP_IMM, 33, 1, PAGE),
    # The low 12 bits of an absolute address, for the add/ldr/str after an adrp.
    "R_AARCH64_ADD_ABS_LO12_NC": _lo12(1),
    "R_AARCH64_LDST8_ABS_LO12_NC": _lo12(1),
    "R_AARCH64_LDST16_ABS_LO12_NC": _lo12(2),
    "R_AARCH64_LDST32_ABS_LO12_NC": _lo12(4),
    "R_AARCH64_LDST64_ABS_LO12_NC": _lo12(8),
    # Branches: +-128 MiB (b, bl), +-1 MiB (b.cond, cbz, ldr literal), +-32 KiB (tbz).
    # ld would add a veneer for a far b/bl; in one small segment none is ever needed.
    "R_AARCH64_JUMP26": _pc_insn(BRANCH26, 28),
    "R_AARCH64_CALL26": _pc_insn(BRANCH26, 28),
    "R_AARCH64_CONDBR19": _pc_insn(IMM19, 21),
    "R_AARCH64_LD_PREL_LO19": _pc_insn(IMM19, 21),
    "R_AARCH64_TSTBR14": _pc_insn(IMM14, 16),
})
