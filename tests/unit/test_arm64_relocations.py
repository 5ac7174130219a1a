"""AArch64 relocations (pykexec/arch/arm64/relocations.py, applied by elfrel) against GNU
ld: an object assembled here uses every declared type, the real purgatory a realistic
mix; ld links each with its sections where our layout put them, at bases below and above
4 GiB, and the bytes must be identical. Out-of-range values are refused as ld refuses them.
"""

from __future__ import annotations

import io

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykexec.arch.arm64.purgatory_spec import ARM64
from pykexec.arch.arm64.relocations import ARM64_RELOCATIONS
from pykexec.purgatory.build import PurgatoryBuildError, purgatory_object
from pykexec.purgatory.elfrel import RelocatableObject, RelocationError
from tests.unit.arm64_tools import assemble, assert_same_as_ld, ld_link, need

SETS = (ARM64_RELOCATIONS,)

# Every declared type but the 16/32-bit absolute ones (those only fit low bases: below).
ALL_TYPES = """
    .text
    .globl _start
_start:
    bl      func                        // CALL26
    b       func                        // JUMP26
    b.ne    func                        // CONDBR19
    cbz     x0, func                    // CONDBR19
    tbz     x1, #3, func                // TSTBR14
    ldr     x2, lit                     // LD_PREL_LO19 (into .rodata)
    adr     x3, data_sym + 5            // ADR_PREL_LO21, odd target
    adrp    x4, data_sym                // ADR_PREL_PG_HI21
    add     x4, x4, :lo12:data_sym      // ADD_ABS_LO12_NC
    adrp    x5, :pg_hi21_nc:bss_sym     // ADR_PREL_PG_HI21_NC
    ldrb    w6, [x4, :lo12:byte_sym]    // LDST8_ABS_LO12_NC
    ldrh    w6, [x4, :lo12:half_sym]    // LDST16_ABS_LO12_NC
    ldr     w6, [x4, :lo12:word_sym]    // LDST32_ABS_LO12_NC
    ldr     x6, [x4, :lo12:data_sym+8]  // LDST64_ABS_LO12_NC with addend
    adrp    x7, far_rodata + 0x1234     // page of a target with an addend
    ret

    .section .text.other, "ax", %progbits
    .globl func
func:                                   // backwards: negative immediates (sign bits)
    adrp    x0, _start
    add     x0, x0, :lo12:_start
    adr     x1, _start + 3
    b.eq    _start
    tbnz    x2, #63, _start
    bl      _start
    ret

    .section .rodata, "a", %progbits
    .balign 16
    .quad   _start                      // ABS64
    .quad   data_sym + 0x40             // ABS64 with addend
    .quad   func - .                    // PREL64
    .word   func - .                    // PREL32
    .hword  func - .                    // PREL16
    .balign 8
lit:
    .quad   0x1122334455667788
    .skip   0x3000                      // push far_rodata pages away from .text
far_rodata:
    .quad   0

    .data
    .balign 16
    .globl data_sym
data_sym:
    .quad   1, 2
byte_sym:
    .byte   3
    .balign 2
half_sym:
    .hword  4
    .balign 4
word_sym:
    .word   5

    .bss
    .balign 32
bss_sym:
    .skip   64
"""

# The narrow absolute types, at bases where the addresses fit them.
NARROW_ABS = """
    .text
    .globl _start
_start:
    ret
    .data
    .balign 8
data_sym:
    .word   data_sym                    // ABS32
    .word   _start + 0x10               // ABS32 with addend
    .hword  _start                      // ABS16
"""


def reloc_type_names(obj_bytes: bytes) -> set:
    from elftools.elf.descriptions import describe_reloc_type
    elf = ELFFile(io.BytesIO(obj_bytes))
    return {describe_reloc_type(r["r_info_type"], elf)
            for section in elf.iter_sections() if section["sh_type"] == "SHT_RELA"
            for r in section.iter_relocations()}


@pytest.fixture(scope="module")
def all_types(tmp_path_factory):
    return assemble(tmp_path_factory.mktemp("asm"), ALL_TYPES)


def test_the_object_uses_every_declared_type(all_types, tmp_path):
    narrow = assemble(tmp_path, NARROW_ABS)
    assert reloc_type_names(all_types) | reloc_type_names(narrow) == set(ARM64_RELOCATIONS.table)


@pytest.mark.parametrize("base", [0x1000, 0x4020_0000, 0xFFFF_0000, 0x1_0000_0FE0,
                                  0x8_FFFF_F000, 0x7FFF_FFFF_0000_0000])
def test_every_type_matches_ld(tmp_path, all_types, base):
    loaded = RelocatableObject.from_bytes(all_types, relocations=SETS).layout(base)
    assert_same_as_ld(ld_link(tmp_path, all_types, loaded).elf, loaded)


@pytest.mark.parametrize("base", [0x1000, 0x8000])
def test_narrow_absolute_types_match_ld(tmp_path, base):
    obj = assemble(tmp_path, NARROW_ABS)
    loaded = RelocatableObject.from_bytes(obj, relocations=SETS).layout(base)
    assert_same_as_ld(ld_link(tmp_path, obj, loaded).elf, loaded)


@pytest.mark.parametrize("base, refused", [(0x10000, "R_AARCH64_ABS16"),
                                           (0x1_0000_0000, "R_AARCH64_ABS32")])
def test_narrow_absolute_overflow_is_refused_like_ld(tmp_path, base, refused):
    obj = assemble(tmp_path, NARROW_ABS)
    ro = RelocatableObject.from_bytes(obj, relocations=SETS)
    with pytest.raises(RelocationError, match=refused):
        ro.layout(base)
    proc = ld_link(tmp_path, obj, (ro, base), check=False)
    assert proc.returncode != 0 and "truncated" in proc.stderr


FAR = """
    .text
    .globl _start
_start:
    INSN
    ret
    .globl far
    .set far, FAR_ADDR
"""


@pytest.mark.parametrize("insn, far, refused", [
    ("adrp x0, far", 0x1000 + (1 << 32), "R_AARCH64_ADR_PREL_PG_HI21"),
    ("adr x0, far", 0x1000 + 0x10_0000, "R_AARCH64_ADR_PREL_LO21"),
    ("b.eq far", 0x1000 + 0x10_0000, "R_AARCH64_CONDBR19"),
    ("tbz x0, #1, far", 0x1000 + 0x8000, "R_AARCH64_TSTBR14"),
    ("ldr x0, far", 0x1000 + 0x10_0000, "R_AARCH64_LD_PREL_LO19"),
])
def test_out_of_range_is_refused_like_ld(tmp_path, insn, far, refused):
    """A target one step past the instruction's reach: ld says "relocation truncated to
    fit", we raise a RelocationError naming the type; one step less links in both."""
    def build(addr, name):
        source = FAR.replace("INSN", insn).replace("FAR_ADDR", hex(addr))
        return assemble(tmp_path, source, name=name)
    base = 0x1000
    too_far = build(far, "far")
    ro = RelocatableObject.from_bytes(too_far, relocations=SETS)
    with pytest.raises(RelocationError, match=refused):
        ro.layout(base)
    proc = ld_link(tmp_path, too_far, (ro, base), check=False)
    assert proc.returncode != 0 and "truncated" in proc.stderr
    step = 1 if "adrp" in insn else 4   # adrp: any byte of the page before
    in_reach = build(far - step, "near")
    loaded = RelocatableObject.from_bytes(in_reach, relocations=SETS).layout(base)
    assert_same_as_ld(ld_link(tmp_path, in_reach, loaded, name="near").elf, loaded)


def test_a_far_branch_is_refused(tmp_path):
    """ld would reach a b/bl target past +-128 MiB through a veneer it adds; one segment
    has no room for that, so the load is refused."""
    source = FAR.replace("INSN", "bl far").replace("FAR_ADDR", hex(0x1000 + (1 << 27)))
    ro = RelocatableObject.from_bytes(assemble(tmp_path, source), relocations=SETS)
    with pytest.raises(RelocationError, match="R_AARCH64_CALL26"):
        ro.layout(0x1000)


def test_a_misaligned_scaled_offset_is_refused(tmp_path):
    source = """
        .text
        .globl _start
    _start:
        adrp x0, odd
        ldr  x1, [x0, :lo12:odd]
        ret
        .data
        .byte 1
    odd:
        .quad 2
    """
    ro = RelocatableObject.from_bytes(assemble(tmp_path, source), relocations=SETS)
    with pytest.raises(RelocationError, match="LDST64_ABS_LO12_NC.*not a multiple of 8"):
        ro.layout(0x1000)


def test_rel_instruction_fields_are_refused():
    """AArch64 objects are RELA; an addend hidden in an instruction is not decoded."""
    from pykexec.purgatory.elfrel import _Reloc, SectionPlacement, Symbol
    ro = RelocatableObject(
        machine=ARM64_RELOCATIONS, sections=(SectionPlacement(1, ".text", 0, 4, 4, False, 6),),
        contents={1: bytes(4)}, section_names={0: "", 1: ".text", 2: ".rel.text"},
        symtabs={3: (Symbol(0, "", 0, 0, "STB_LOCAL", "STT_NOTYPE", 0),)},
        relocs=(_Reloc(2, 1, 0, 283, 3, 0, None, "R_AARCH64_CALL26"),), bufsz=4, memsz=4,
        required_alignment=4, entry_section=1, entry_offset=0, shnum=4, file_offsets={1: 64})
    with pytest.raises(RelocationError, match="REL"):
        ro.layout(0x1000)


# --- the purgatory itself -----------------------------------------------------------------

@pytest.fixture(scope="module")
def purgatory_bytes():
    need("gcc", "ld", "nm")
    try:
        return purgatory_object(ARM64)
    except PurgatoryBuildError as exc:  # pragma: no cover - environment problem
        pytest.fail(str(exc))


@pytest.mark.parametrize("base", [0x4000_0000, 0xA9A0_3010, 0xFFFF_F000, 0x1_4000_0000,
                                  0x8000_0000_0000, 0x7FFF_FFFF_F000_0000])
def test_purgatory_matches_ld(tmp_path, purgatory_bytes, base):
    ro = RelocatableObject.from_bytes(purgatory_bytes, relocations=SETS)
    base -= base % ro.required_alignment
    loaded = ro.layout(base)
    linked = ld_link(tmp_path, purgatory_bytes, loaded, entry="purgatory_start").elf
    assert_same_as_ld(linked, loaded)
    assert linked["e_entry"] == loaded.symbol_address("purgatory_start")
    symtab = linked.get_section_by_name(".symtab")
    for name in ("sha256_regions", "kernel_entry", "dtb_addr", "uart_base", "purgatory_main"):
        (sym,) = symtab.get_symbol_by_name(name)
        assert sym["st_value"] == loaded.symbol_address(name), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.integers(min_value=1, max_value=(1 << 52) - 4), offset=st.integers(0, 4095))
def test_purgatory_matches_ld_at_any_aligned_base(tmp_path, purgatory_bytes, page, offset):
    """Any base aligned to the object's requirement, whatever its offset in a 4 KiB page
    (adrp works in pages, so the in-page offset is what changes its immediates)."""
    ro = RelocatableObject.from_bytes(purgatory_bytes, relocations=SETS)
    base = page * 4096 + offset - offset % ro.required_alignment
    loaded = ro.layout(base)
    assert_same_as_ld(ld_link(tmp_path, purgatory_bytes, loaded, entry="purgatory_start").elf,
                      loaded)
