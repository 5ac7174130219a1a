"""pykexec.purgatory.elfrel: layout and relocation of ET_REL objects.

The reference is GNU ld: the same object is linked by ld with a linker script that
puts every allocated section at the address our layout chose, and the section bytes
must come out identical.  Small objects assembled here cover each relocation type;
the real purgatory covers a realistic mix.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pykexec.arch.x86 import purgatory_spec
from tests.unit.relocs import X86_RELOCATIONS
from pykexec.purgatory.elfrel import ElfRelError, LoadedObject, RelocatableObject, RelocationError, SymbolError
from tests.conftest import require

HAVE_BINUTILS = all(shutil.which(tool) for tool in ("as", "ld"))


def need_binutils():
    require(HAVE_BINUTILS, "needs GNU as and ld (binutils)")


def assemble(tmp_path: Path, source: str, *, bits: int = 64, name: str = "t") -> bytes:
    need_binutils()
    src = tmp_path / f"{name}.s"
    obj = tmp_path / f"{name}.o"
    src.write_text(textwrap.dedent(source))
    subprocess.run(["as", f"--{bits}", "-o", str(obj), str(src)], check=True, capture_output=True)
    return obj.read_bytes()


def ld_link(tmp_path: Path, obj_bytes: bytes, loaded: LoadedObject, *, bits: int = 64,
            entry: str = "_start", explicit: bool = True, name: str = "ld") -> ELFFile:
    """Link `obj_bytes` with GNU ld so its sections land where `loaded` put them.

    explicit=True: every allocated section gets the address from our layout.
    explicit=False: only the base is given; ld packs the sections itself, in our order
    (index order, NOBITS last), so the addresses it picks test the layout rules.
    """
    need_binutils()
    obj = tmp_path / f"{name}-in.o"
    obj.write_bytes(obj_bytes)
    sections = sorted(loaded.sections, key=lambda p: (p.nobits, p.offset))
    lines = ["SECTIONS {"]
    if not explicit:
        lines.append(f"  . = {loaded.base:#x};")
    for p in sections:
        addr = f" {loaded.base + p.offset:#x}" if explicit else ""
        lines.append(f"  {p.name}{addr} : {{ *({p.name}) }}")
    lines.append("  /DISCARD/ : { *(.note.GNU-stack) *(.comment) *(.note.gnu.property) }")
    lines.append("}")
    script = tmp_path / f"{name}.lds"
    script.write_text("\n".join(lines) + "\n")
    out = tmp_path / f"{name}.elf"
    emulation = "elf_x86_64" if bits == 64 else "elf_i386"
    subprocess.run(
        ["ld", "-m", emulation, "-static", "-nostdlib", "--no-dynamic-linker", "-no-pie",
         "--build-id=none", "-z", "norelro", "-z", "noexecstack", "--no-warn-rwx-segments",
         "-e", entry, "-T", str(script), "-o", str(out), str(obj)],
        check=True, capture_output=True, text=True,
    )
    return ELFFile(open(out, "rb"))


def assert_same_as_ld(ld_elf: ELFFile, loaded: LoadedObject) -> None:
    compared = 0
    for p in loaded.sections:
        name = p.name
        if p.size == 0:
            continue  # ld drops empty output sections (gas always emits .data/.bss)
        section = ld_elf.get_section_by_name(name)
        assert section is not None, name
        assert section["sh_addr"] == loaded.base + p.offset, name
        if p.nobits:
            assert section["sh_type"] == "SHT_NOBITS"
            assert section["sh_size"] == p.size
            continue
        ours = loaded.data[p.offset:p.offset + p.size]
        assert section.data() == ours, f"{name} differs from GNU ld"
        compared += 1
    assert compared


# --- relocation types against ld ---------------------------------------------------

X86_64_ALL = """
    .text
    .globl _start
_start:
    call    func                    # R_X86_64_PLT32 (gas >= 2.31)
    call    func@PLT                # R_X86_64_PLT32, explicit
    movabs  $data_sym, %rax         # R_X86_64_64
    movabs  $data_sym + 0x40, %rbx  # R_X86_64_64 with addend
    lea     data_sym(%rip), %rcx    # R_X86_64_PC32
    lea     bss_sym+16(%rip), %rdx  # R_X86_64_PC32 into .bss
    mov     $data_sym, %esi         # R_X86_64_32
    movq    $data_sym, %rdi         # R_X86_64_32S
    .reloc  ., R_X86_64_NONE, data_sym
    nop
    mov     local_label(%rip), %r8  # PC32 against a local symbol in another section
    ret

    .section .text.other, "ax", @progbits
    .globl func
func:
    ret

    .section .rodata, "a", @progbits
    .balign 64
local_label:
    .quad   0x1122334455667788
    .quad   _start                  # R_X86_64_64 in .rodata
    .long   func - .                # R_X86_64_PC32 in data
    .long   func                    # R_X86_64_32 in data

    .data
    .balign 16
    .globl data_sym
    .type data_sym, @object
data_sym:
    .quad   data_sym + 8
    .size data_sym, 8
    .globl counter
    .type counter, @object
counter:
    .long   7
    .size counter, 4

    .bss
    .balign 32
    .globl bss_sym
    .type bss_sym, @object
bss_sym:
    .skip   100
    .size bss_sym, 100
"""


def reloc_types(obj_bytes: bytes) -> set:
    import io
    elf = ELFFile(io.BytesIO(obj_bytes))
    found = set()
    for section in elf.iter_sections():
        if section["sh_type"] in ("SHT_RELA", "SHT_REL"):
            found.update(r["r_info_type"] for r in section.iter_relocations())
    return found


def test_x86_64_object_covers_every_type(tmp_path):
    obj = assemble(tmp_path, X86_64_ALL)
    assert reloc_types(obj) == {0, 1, 2, 4, 10, 11}


@pytest.mark.parametrize("base", [0x100000, 0x7FFF0000])
def test_x86_64_relocations_match_ld(tmp_path, base):
    obj = assemble(tmp_path, X86_64_ALL)
    loaded = RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS).layout(base)
    assert_same_as_ld(ld_link(tmp_path, obj, loaded), loaded)
    assert_same_as_ld(ld_link(tmp_path, obj, loaded, explicit=False, name="natural"), loaded)


def test_x86_64_layout_rules(tmp_path):
    ro = RelocatableObject.from_bytes(assemble(tmp_path, X86_64_ALL), relocations=X86_RELOCATIONS)
    by_name = {s.name: s for s in ro.sections}
    assert [s.name for s in ro.sections] == [".text", ".data", ".bss", ".text.other", ".rodata"]
    # PROGBITS packed in index order, each aligned; NOBITS after bufsz.
    assert by_name[".text"].offset == 0
    assert by_name[".data"].offset == by_name[".text"].size + (-by_name[".text"].size % 16)
    text_other = by_name[".text.other"]
    assert text_other.offset == by_name[".data"].offset + by_name[".data"].size
    assert by_name[".rodata"].offset % 64 == 0
    assert ro.bufsz == by_name[".rodata"].offset + by_name[".rodata"].size
    assert by_name[".bss"].offset == ro.bufsz + (-ro.bufsz % 32)
    assert ro.memsz == ro.size == by_name[".bss"].offset + 100
    assert ro.required_alignment == 64
    loaded = ro.layout(0x200000)
    assert loaded.bufsz == ro.bufsz and len(loaded.data) == ro.bufsz
    assert loaded.memsz == ro.memsz
    assert loaded.entry == 0x200000  # e_entry 0 in .text
    assert loaded.symbol_address("bss_sym") == 0x200000 + by_name[".bss"].offset


def test_x86_64_32_overflow(tmp_path):
    obj = assemble(tmp_path, """
        .text
        .globl _start
    _start:
        mov $target, %eax
        .data
        .globl target
    target: .long 0
    """)
    ro = RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS)
    ro.layout(0xFFFFF000)  # target just below 4 GiB: fits in u32
    with pytest.raises(RelocationError, match=r"overflow in R_X86_64_32 .*u32"):
        ro.layout(0x1_0000_0000)


def test_x86_64_32s_overflow_and_sign_extension(tmp_path):
    obj = assemble(tmp_path, """
        .text
        .globl _start
    _start:
        movq $target, %rax
        .data
        .globl target
    target: .quad 0
    """)
    ro = RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS)
    with pytest.raises(RelocationError, match="R_X86_64_32S"):
        ro.layout(0x80000000)  # above 2 GiB: not a sign-extended 32-bit value
    # The kernel's -2 GiB range is exactly what 32S reaches; compare with ld there.
    loaded = ro.layout(0xFFFFFFFF80000000)
    assert_same_as_ld(ld_link(tmp_path, obj, loaded), loaded)


def test_x86_64_pc32_overflow_is_checked(tmp_path):
    obj = assemble(tmp_path, """
        .text
        .globl _start
    _start:
        .set far_away, 0x123456789000
        .long far_away - .
    """)
    with pytest.raises(RelocationError, match=r"overflow in R_X86_64_PC32"):
        RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS).layout(0x100000)


def test_64_bit_relocations_anywhere(tmp_path):
    obj = assemble(tmp_path, """
        .text
        .globl _start
    _start:
        movabs $target, %rax
        lea target(%rip), %rbx
        .data
        .globl target
    target: .quad target
        .size target, 8
    """)
    loaded = RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS).layout(0x12_3456_7000)
    assert_same_as_ld(ld_link(tmp_path, obj, loaded), loaded)
    assert loaded.get_int("target") == loaded.symbol_address("target")


def test_unknown_relocation_type_is_named(tmp_path):
    obj = assemble(tmp_path, """
        .text
        .globl _start
    _start:
        movq target@GOTPCREL(%rip), %rax
        .data
    target: .quad 0
    """)
    with pytest.raises(RelocationError, match=r"R_X86_64_(REX_)?GOTPCREL(X)? \(type \d+\)"):
        RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS).layout(0x100000)


def test_undefined_symbol(tmp_path):
    obj = assemble(tmp_path, """
        .text
        .globl _start
    _start:
        call missing_function
    """)
    with pytest.raises(RelocationError, match="undefined symbol: missing_function"):
        RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS).layout(0x100000)


def test_weak_undefined_resolves_to_zero(tmp_path):
    obj = assemble(tmp_path, """
        .text
        .globl _start
    _start:
        .weak maybe
        .quad maybe + 5
    """)
    loaded = RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS).layout(0x100000)
    assert loaded.data[:8] == (5).to_bytes(8, "little")


def test_relocations_into_non_alloc_sections_are_ignored(tmp_path):
    obj = assemble(tmp_path, """
        .text
        .globl _start
    _start:
        ret
        .section .debug_stuff, "", @progbits
        .quad _start
        .long 0x12345678
    """)
    ro = RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS)
    assert [s.name for s in ro.sections if s.size] == [".text"]
    assert ro.layout(0x1000).data == b"\xc3"


# --- i386 (REL, addend in place) ---------------------------------------------------

I386_ALL = """
    .text
    .globl _start
_start:
    movl    $data_sym, %eax         # R_386_32
    movl    data_sym+4, %ebx        # R_386_32, addend 4 in place
    call    func                    # R_386_PC32
    .reloc  ., R_386_NONE, data_sym
    nop
    ret

    .section .text.other, "ax", @progbits
func:
    ret

    .data
    .balign 16
    .globl data_sym
    .type data_sym, @object
data_sym:
    .long   data_sym + 12           # R_386_32 in data
    .long   func - .                # R_386_PC32 in data
    .long   func - . + 0x100        # R_386_PC32 with an in-place addend
    .size data_sym, 12

    .bss
    .balign 8
bss_sym:
    .skip   20
"""


def test_i386_object_is_rel(tmp_path):
    obj = assemble(tmp_path, I386_ALL, bits=32)
    assert reloc_types(obj) == {0, 1, 2}
    ro = RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS)
    assert ro.machine == "EM_386"


@pytest.mark.parametrize("base", [0x100000, 0xBFFF0000])
def test_i386_relocations_match_ld(tmp_path, base):
    obj = assemble(tmp_path, I386_ALL, bits=32)
    loaded = RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS).layout(base)
    assert_same_as_ld(ld_link(tmp_path, obj, loaded, bits=32), loaded)


def test_i386_limited_to_4gib(tmp_path):
    ro = RelocatableObject.from_bytes(assemble(tmp_path, I386_ALL, bits=32), relocations=X86_RELOCATIONS)
    with pytest.raises(ElfRelError, match="address space"):
        ro.layout(0xFFFFFFF0)


# --- the purgatory against ld --------------------------------------------------------

@pytest.fixture(scope="module")
def purgatory_bytes():
    from pykexec.purgatory.build import PurgatoryBuildError, purgatory_object
    require(shutil.which("gcc") and HAVE_BINUTILS, "needs gcc and binutils to build the purgatory")
    try:
        return purgatory_object(purgatory_spec.X86_64)
    except PurgatoryBuildError as exc:  # pragma: no cover - environment problem
        pytest.fail(str(exc))


@pytest.mark.parametrize("base", [0x1000, 0x7F000000, 0x3_FFF0_0000, 0x7FFF_FFFF_F000_0000])
def test_purgatory_matches_ld(tmp_path, purgatory_bytes, base):
    ro = RelocatableObject.from_bytes(purgatory_bytes, relocations=X86_RELOCATIONS)
    loaded = ro.layout(base)
    elf = ld_link(tmp_path, purgatory_bytes, loaded, entry="purgatory_start")
    assert_same_as_ld(elf, loaded)
    assert elf["e_entry"] == loaded.entry == loaded.symbol_address("purgatory_start")
    # ld packing the sections itself (base only) agrees with our layout.
    natural = ld_link(tmp_path, purgatory_bytes, loaded, entry="purgatory_start", explicit=False, name="nat")
    assert_same_as_ld(natural, loaded)
    # Symbols resolve to the same addresses.
    symtab = elf.get_section_by_name(".symtab")
    for name in ("entry64_regs", "sha256_regions", "stack_end", "purgatory_main", "serial_base"):
        (sym,) = symtab.get_symbol_by_name(name)
        assert sym["st_value"] == loaded.symbol_address(name), name


# --- symbols -----------------------------------------------------------------------

SYMBOLS = """
    .text
    .globl _start
_start:
    ret
    .data
    .globl g8, g4, gbytes
    .type g8, @object
    .balign 8
g8:     .quad 0x1122334455667788
    .size g8, 8
    .type g4, @object
g4:     .long 0xfffffffe
    .size g4, 4
    .type gbytes, @object
gbytes: .ascii "abcdef"
    .size gbytes, 6
    .type local_one, @object
local_one: .long 1
    .size local_one, 4
    .bss
    .globl in_bss
    .type in_bss, @object
in_bss: .skip 8
    .size in_bss, 8
    .globl absolute
    .set absolute, 0x4000
"""


@pytest.fixture
def symbols_obj(tmp_path):
    return RelocatableObject.from_bytes(assemble(tmp_path, SYMBOLS), relocations=X86_RELOCATIONS).layout(0x10000)


def test_get_and_set_symbols(symbols_obj):
    loaded = symbols_obj
    assert loaded.get_int("g8") == 0x1122334455667788
    assert loaded.get_int("g4") == 0xFFFFFFFE
    assert loaded.get_int("g4", signed=True) == -2
    assert loaded.get_symbol("gbytes") == b"abcdef"
    changed = loaded.set_symbol("gbytes", b"ZYXWVU").set_symbols({"g8": 5, "g4": -1})
    assert changed.get_symbol("gbytes") == b"ZYXWVU"
    assert changed.get_int("g8") == 5 and changed.get_int("g4") == 0xFFFFFFFF
    # Immutability: the original is untouched, everything else is identical.
    assert loaded.get_symbol("gbytes") == b"abcdef"
    assert (changed.base, changed.memsz, changed.entry) == (loaded.base, loaded.memsz, loaded.entry)
    diff = [i for i, (a, b) in enumerate(zip(loaded.data, changed.data)) if a != b]
    start = loaded.symbol_address("g8") - loaded.base
    assert min(diff) >= start and max(diff) < start + 18


def test_symbol_errors(symbols_obj):
    loaded = symbols_obj
    with pytest.raises(SymbolError, match="size 8, not 4"):
        loaded.set_symbol("g8", b"1234")
    with pytest.raises(SymbolError, match="NOBITS"):
        loaded.set_symbol("in_bss", bytes(8))
    with pytest.raises(SymbolError, match="not found"):
        loaded.set_symbol("local_one", bytes(4))  # only STB_GLOBAL symbols are visible
    with pytest.raises(SymbolError, match="not found"):
        loaded.symbol_address("nope")
    with pytest.raises(SymbolError, match="does not fit"):
        loaded.set_symbols({"g4": 1 << 32})
    with pytest.raises(SymbolError, match="allocated"):
        loaded.symbol_address("absolute")
    assert loaded.symbol_address("in_bss") >= loaded.base + loaded.bufsz


def test_entry_symbol(tmp_path):
    obj = assemble(tmp_path, """
        .text
        nop
        nop
        .globl second
    second:
        ret
    """)
    assert RelocatableObject.from_bytes(obj, relocations=X86_RELOCATIONS).layout(0x1000).entry == 0x1000
    assert RelocatableObject.from_bytes(obj, entry_symbol="second", relocations=X86_RELOCATIONS).layout(0x1000).entry == 0x1002
    with pytest.raises(SymbolError):
        RelocatableObject.from_bytes(obj, entry_symbol="absent", relocations=X86_RELOCATIONS)


# --- input validation ----------------------------------------------------------------

def test_rejects_non_elf():
    with pytest.raises(ElfRelError):
        RelocatableObject.from_bytes(b"\x7fELF" + bytes(60), relocations=X86_RELOCATIONS)
    with pytest.raises(ElfRelError):
        RelocatableObject.from_bytes(random.Random(1).randbytes(256), relocations=X86_RELOCATIONS)


def test_rejects_executables(tmp_path, symbols_obj):
    obj = assemble(tmp_path, SYMBOLS)
    elf = ld_link(tmp_path, obj, symbols_obj)
    with pytest.raises(ElfRelError, match="ET_EXEC"):
        RelocatableObject.from_bytes(Path(elf.stream.name).read_bytes(), relocations=X86_RELOCATIONS)


def test_misaligned_base(tmp_path):
    ro = RelocatableObject.from_bytes(assemble(tmp_path, X86_64_ALL), relocations=X86_RELOCATIONS)
    with pytest.raises(ElfRelError, match="not aligned"):
        ro.layout(0x100020)


def test_a_section_offset_past_any_file_is_an_elfrel_error():
    """Fuzz finding F1 (findings/images.md): a compressed section whose sh_offset is 2**63
    made pyelftools raise OverflowError through from_bytes."""
    import struct as _struct
    from pykexec.purgatory.elfrel import ElfRelError, RelocatableObject
    from pykexec.purgatory.build import purgatory_object
    good = purgatory_object(purgatory_spec.X86_64)
    shoff, = _struct.unpack_from("<Q", good, 0x28)
    shentsize, shnum = _struct.unpack_from("<HH", good, 0x3A)
    for index in range(1, shnum):
        data = bytearray(good)
        sh = shoff + index * shentsize
        flags, = _struct.unpack_from("<Q", data, sh + 8)
        _struct.pack_into("<Q", data, sh + 8, flags | 0x800)        # SHF_COMPRESSED
        _struct.pack_into("<Q", data, sh + 0x18, 1 << 63)          # sh_offset
        with pytest.raises(ElfRelError, match="not a loadable relocatable ELF object"):
            RelocatableObject.from_bytes(bytes(data), relocations=X86_RELOCATIONS)
