"""Load a relocatable ELF object (ET_REL) into one segment, as a linker would.

This is how the purgatory becomes a kexec segment: the allocated sections of the
object are laid out in section-index order, relocated for a chosen base address and
returned as one buffer plus a zero-filled tail (``memsz``).  pyelftools only reads the
file; the layout and the relocation arithmetic are ours.

Layout (the same rules as kexec-tools' purgatory loader, so addresses agree with it):

* SHF_ALLOC sections other than SHT_NOBITS are packed in index order, each at the
  next multiple of its ``sh_addralign`` (0 counts as 1): this is ``data``/``bufsz``.
* SHT_NOBITS sections follow after ``bufsz`` rounded up to the largest NOBITS
  alignment, packed the same way; they only count in ``memsz``.
* The base must be a multiple of ``required_alignment`` (the largest alignment of
  any allocated section), so offsets, sizes and alignment do not depend on the base:
  a placement allocator can ask ``size``/``required_alignment`` first and call
  :meth:`RelocatableObject.layout` with the address it chose.

Two stages, both immutable:

* :class:`RelocatableObject` -- the parsed object (``from_bytes``).
* :class:`LoadedObject` -- the object relocated at one base.  Symbols are written with
  :meth:`LoadedObject.set_symbol`/``set_symbols``, which return a *new* LoadedObject;
  nothing is mutated, so a loaded purgatory can be shared, compared and kept in a
  plan while variants (different registers, digests) are derived from it.  Copying
  the buffer (a few KiB) per call is cheap next to building a load.

(Longer than 400 lines: parsing, layout, relocation and symbol access are the one linker
pass a purgatory object goes through; split, each part would need the others' private
state.)
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from pykexec.errors import PykexecError

# The small value types are NamedTuples: a dataclass costs about a millisecond to create at
# import, and every load imports this module.
# pyelftools is imported where an object is parsed: elftools.elf.elffile pulls in the whole
# DWARF reader, which a load that uses the build's record (from_record) never needs.

__all__ = [
    "ElfRelError",
    "RelocationError",
    "SymbolError",
    "SectionPlacement",
    "Symbol",
    "RelocatableObject",
    "LoadedObject",
    "RelocKind",
    "RelocationSet",
    "relocation_set",
]

RECORD_FORMAT = 1  # of RelocatableObject.to_record

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4

SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2


class ElfRelError(PykexecError, ValueError):
    """The object cannot be loaded (bad ELF, wrong type or machine, bad layout)."""


class RelocationError(ElfRelError):
    """A relocation cannot be applied (unknown type, overflow, bad symbol)."""


class SymbolError(ElfRelError, KeyError):
    """A symbol is missing or cannot be read/written as asked."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# --- relocation types --------------------------------------------------------------
#
# Each supported type: (width in bytes, pc-relative, range rule) and, for a type that
# patches fields of an instruction word, how.  The value is S + A (absolute) or
# S + A - P (pc-relative), where S is the symbol's address, A the addend (r_addend for
# RELA, the bytes in place for REL) and P the address of the location; a "page" type
# takes Page(S + A) - Page(P) instead, Page() rounding down to the page size.  Range
# rules: "wrap" truncates; "unsigned"/"signed" raise RelocationError unless the value
# fits as that kind of integer of `range_bits` (default: the width); "bitfield" accepts
# either.  A value that is not a multiple of `align` is an error too.  Without `fields`
# the value is stored little-endian in the width; with them, each (lowest bit of the
# value, bit count, lowest bit in the word) copies those bits of the value into the
# little-endian word in place, the instruction's other bits kept.

class RelocKind(NamedTuple):
    name: str
    width: int  # bytes written; 0 for a no-op
    pc_relative: bool
    rule: str  # "wrap", "unsigned", "signed", "bitfield"
    fields: Tuple[Tuple[int, int, int], ...] = ()  # (value's bit, count, word's bit); () = whole
    range_bits: int = 0  # bits the range rule checks; 0 = width * 8
    align: int = 1  # the value must be a multiple of it (branch targets, scaled offsets)
    page: int = 0  # non-zero: Page(S + A) - Page(P) with pages of this size


@dataclass(frozen=True)
class RelocationSet:
    """What one machine's relocation types mean: declared by its architecture
    (pykexec/arch/<name>/), applied here."""

    machines: Tuple[str, ...]  # pyelftools' e_machine names this set applies to
    elfclass: int
    enum: str  # pyelftools' relocation enum of these machines (in elftools.elf.enums)
    table: Mapping[str, tuple]  # type name -> RelocKind's fields after the name
    max_address: int

    @property
    def name(self) -> str:
        return self.machines[0]

    @functools.cached_property
    def type_names(self) -> Mapping[int, str]:
        """Every type pyelftools knows, by number (parsing and messages; a load from the
        build's record has the names already and never imports the enums)."""
        from elftools.elf import enums
        return {value: name for name, value in getattr(enums, self.enum, {}).items()
                if not name.startswith("_")}

    def kind(self, type_name: str) -> Optional[RelocKind]:
        spec = self.table.get(type_name)
        return RelocKind(type_name, *spec) if spec is not None else None


def relocation_set(machines: Sequence[str], elfclass: int, enum: str,
                   table: Mapping[str, tuple]) -> RelocationSet:
    """A RelocationSet from the name of pyelftools' relocation enum and a table name ->
    (width in bytes, pc-relative, range rule[, fields, range_bits, align, page]): the
    fields of RelocKind after its name."""
    return RelocationSet(tuple(machines), elfclass, enum, MappingProxyType(dict(table)),
                         (1 << elfclass) - 1)


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


# --- parsed object -----------------------------------------------------------------

class SectionPlacement(NamedTuple):
    """Where an allocated section goes, relative to the segment base."""

    index: int
    name: str
    offset: int  # from the base; for PROGBITS also the offset in `data`
    size: int
    align: int
    nobits: bool
    flags: int


class Symbol(NamedTuple):
    index: int
    name: str
    value: int  # st_value: offset in its section (ET_REL)
    size: int
    bind: str  # "STB_GLOBAL", "STB_LOCAL", "STB_WEAK", ...
    type: str  # "STT_OBJECT", "STT_FUNC", "STT_SECTION", ...
    shndx: int  # numeric; SHN_UNDEF/SHN_ABS/SHN_COMMON or a section index


class _Reloc(NamedTuple):
    section: int  # index of the SHT_REL/SHT_RELA section (for messages)
    target: int  # index of the section being patched
    offset: int  # r_offset within the target
    type: int
    symtab: int  # index of the symbol table section
    symbol: int
    addend: Optional[int]  # None for REL: the addend is read from the location
    type_name: str  # pyelftools' name of `type`, "unknown" if it has none


def _shndx(value) -> int:
    if isinstance(value, int):
        return value
    return {"SHN_UNDEF": SHN_UNDEF, "SHN_ABS": SHN_ABS, "SHN_COMMON": SHN_COMMON}.get(value, SHN_LORESERVE)


class RelocatableObject:
    """A parsed ET_REL object, ready to be laid out at any suitably aligned base.

    Use :meth:`from_bytes`.  `entry_symbol`, if given, names the symbol whose address
    becomes ``entry``; otherwise ``e_entry`` is used the way kexec-tools does: as an
    offset into the first allocated executable section whose size covers it.
    """

    def __init__(self, *, machine: RelocationSet, sections: Tuple[SectionPlacement, ...],
                 contents: Mapping[int, bytes], section_names: Mapping[int, str],
                 symtabs: Mapping[int, Tuple[Symbol, ...]], relocs: Tuple[_Reloc, ...],
                 bufsz: int, memsz: int, required_alignment: int,
                 entry_section: int, entry_offset: int, shnum: int,
                 file_offsets: Mapping[int, int]):
        self._machine = machine
        self.sections = sections
        self._placement = {s.index: s for s in sections}
        self._contents = MappingProxyType(dict(contents))
        self._section_names = MappingProxyType(dict(section_names))
        self._symtabs = MappingProxyType(dict(symtabs))
        self._relocs = relocs
        self.bufsz = bufsz
        self.memsz = memsz
        self.required_alignment = required_alignment
        self._entry_section = entry_section
        self._entry_offset = entry_offset
        self._shnum = shnum
        self._file_offsets = MappingProxyType(dict(file_offsets))  # PROGBITS: sh_offset

    # -- construction --------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes, *, relocations: Sequence[RelocationSet],
                   entry_symbol: Optional[str] = None) -> "RelocatableObject":
        from construct import ConstructError
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile
        data = bytes(data)
        try:
            elf = ELFFile(io.BytesIO(data))
            return cls._parse(elf, relocations, entry_symbol)
        except ElfRelError:
            raise
        except (ELFError, ConstructError, OverflowError, ValueError, struct.error, EOFError,
                IndexError, KeyError) as exc:
            # pyelftools parses headers lazily and raises whatever its decoding meets on
            # damaged input (an sh_offset past 2**63 is an OverflowError): one error type here
            raise ElfRelError(f"not a loadable relocatable ELF object: {type(exc).__name__}: "
                              f"{exc}") from None

    @classmethod
    def _parse(cls, elf, relocations: Sequence[RelocationSet],
               entry_symbol: Optional[str]) -> "RelocatableObject":
        from elftools.elf.relocation import RelocationSection
        from elftools.elf.sections import SymbolTableSection
        if elf["e_type"] != "ET_REL":
            raise ElfRelError(f"not a relocatable object: e_type is {elf['e_type']}")
        machine = next((r for r in relocations if elf["e_machine"] in r.machines), None)
        if machine is None:
            known = ", ".join(m for r in relocations for m in r.machines) or "none"
            raise ElfRelError(f"unsupported machine {elf['e_machine']} (supported: {known})")
        machine = replace(machine, machines=(elf["e_machine"],))  # named as the object says
        if not elf.little_endian:
            raise ElfRelError("big-endian objects are not supported")
        if elf.elfclass != machine.elfclass:
            raise ElfRelError(f"{machine.name} object must be ELFCLASS{machine.elfclass}, got ELFCLASS{elf.elfclass}")
        shnum = elf.num_sections()
        if shnum == 0:
            raise ElfRelError("object has no section headers")

        names: Dict[int, str] = {}
        headers = []
        for index in range(shnum):
            section = elf.get_section(index)
            names[index] = section.name
            headers.append(section)

        # Layout: PROGBITS-like sections packed in index order, NOBITS after them.
        placements: List[SectionPlacement] = []
        contents: Dict[int, bytes] = {}
        file_offsets: Dict[int, int] = {}
        bufsz = 0
        bss_size = 0
        max_align = 1
        max_bss_align = 1
        nobits_pending = []
        for index, section in enumerate(headers):
            flags = section["sh_flags"]
            if not flags & SHF_ALLOC or index == 0:
                continue
            align = section["sh_addralign"] or 1
            if align & (align - 1):
                raise ElfRelError(f"section {section.name} has alignment {align}, not a power of two")
            max_align = max(max_align, align)
            size = section["sh_size"]
            if section["sh_type"] == "SHT_NOBITS":
                max_bss_align = max(max_bss_align, align)
                bss_size = _align_up(bss_size, align)
                nobits_pending.append((index, section.name, bss_size, size, align, flags))
                bss_size += size
                continue
            bufsz = _align_up(bufsz, align)
            raw = section.data()
            if len(raw) != size:
                raise ElfRelError(f"section {section.name}: {len(raw)} bytes of data for sh_size {size}")
            placements.append(SectionPlacement(index, section.name, bufsz, size, align, False, flags))
            contents[index] = raw
            file_offsets[index] = section["sh_offset"]
            bufsz += size
        bss_start = _align_up(bufsz, max_bss_align) if nobits_pending else bufsz
        for index, name, offset, size, align, flags in nobits_pending:
            placements.append(SectionPlacement(index, name, bss_start + offset, size, align, True, flags))
        memsz = bss_start + bss_size
        placements.sort(key=lambda p: p.index)

        # Symbols (every SHT_SYMTAB; in practice there is one).
        symtabs: Dict[int, Tuple[Symbol, ...]] = {}
        for index, section in enumerate(headers):
            if not isinstance(section, SymbolTableSection) or section["sh_type"] != "SHT_SYMTAB":
                continue
            syms = []
            for number, sym in enumerate(section.iter_symbols()):
                syms.append(Symbol(
                    index=number, name=sym.name, value=sym["st_value"], size=sym["st_size"],
                    bind=sym["st_info"]["bind"], type=sym["st_info"]["type"],
                    shndx=_shndx(sym["st_shndx"]),
                ))
            symtabs[index] = tuple(syms)

        # Relocations aimed at allocated sections.
        by_index = {p.index: p for p in placements}
        relocs: List[_Reloc] = []
        for index, section in enumerate(headers):
            if not isinstance(section, RelocationSection):
                continue
            target = section["sh_info"]
            if target not in by_index:
                continue  # debug info and other non-allocated targets
            if by_index[target].nobits:
                raise ElfRelError(f"{section.name} relocates NOBITS section {names[target]}")
            link = section["sh_link"]
            if link not in symtabs:
                raise ElfRelError(f"{section.name}: sh_link {link} is not a symbol table")
            is_rela = section.is_RELA()
            for rel in section.iter_relocations():
                relocs.append(_Reloc(
                    section=index, target=target, offset=rel["r_offset"],
                    type=rel["r_info_type"], symtab=link, symbol=rel["r_info_sym"],
                    addend=rel["r_addend"] if is_rela else None,
                    type_name=machine.type_names.get(rel["r_info_type"], "unknown"),
                ))

        entry_section, entry_offset = cls._find_entry(elf, placements, symtabs, entry_symbol)
        return cls(
            machine=machine, sections=tuple(placements), contents=contents,
            section_names=names, symtabs=symtabs, relocs=tuple(relocs), bufsz=bufsz,
            memsz=memsz, required_alignment=max_align, entry_section=entry_section,
            entry_offset=entry_offset, shnum=shnum, file_offsets=file_offsets,
        )

    # -- the build's record ----------------------------------------------------------
    # (RECORD_FORMAT changes with what a record holds: an older record is then not used)
    #
    # What _parse reads from an object, as plain JSON values, so a load need not parse the
    # object again: the purgatory build writes it next to the object (pykexec.purgatory.build),
    # keyed by the object's SHA-256. Section contents are not copied: the record says where
    # in the object each allocated section's bytes are.

    def to_record(self, data: bytes) -> dict:
        """The parsed object as JSON values, for the object `data` it was parsed from."""
        import hashlib
        return {
            "format": RECORD_FORMAT, "sha256": hashlib.sha256(data).hexdigest(),
            "machine": self._machine.name, "elfclass": self._machine.elfclass, "shnum": self._shnum, "bufsz": self.bufsz,
            "memsz": self.memsz, "required_alignment": self.required_alignment,
            "entry": [self._entry_section, self._entry_offset],
            "sections": [[p.index, p.name, p.offset, p.size, p.align, p.nobits, p.flags,
                          self._file_offsets.get(p.index)] for p in self.sections],
            "section_names": [[index, name] for index, name in self._section_names.items()],
            "symtabs": [[index, [[s.index, s.name, s.value, s.size, s.bind, s.type, s.shndx]
                                 for s in syms]] for index, syms in self._symtabs.items()],
            "relocs": [[r.section, r.target, r.offset, r.type, r.symtab, r.symbol, r.addend,
                        r.type_name] for r in self._relocs],
        }

    @classmethod
    def from_record(cls, data: bytes, record: Mapping, *,
                    relocations: Sequence[RelocationSet]) -> Optional["RelocatableObject"]:
        """The object `data` as its build record describes it; None when the record is of
        another object (a rebuilt or replaced one) or for a machine not in `relocations`:
        then parse the object with from_bytes."""
        import hashlib
        if record.get("format") != RECORD_FORMAT or record.get("sha256") != hashlib.sha256(data).hexdigest():
            return None
        machine = next((r for r in relocations if record["machine"] in r.machines), None)
        if machine is None or machine.elfclass != record["elfclass"]:
            return None
        try:
            sections, contents, offsets = [], {}, {}
            for index, name, offset, size, align, nobits, flags, at in record["sections"]:
                sections.append(SectionPlacement(index, name, offset, size, align, nobits, flags))
                if not nobits:
                    contents[index], offsets[index] = data[at:at + size], at
            entry_section, entry_offset = record["entry"]
            return cls(
                machine=replace(machine, machines=(record["machine"],)), sections=tuple(sections),
                contents=contents, section_names={i: n for i, n in record["section_names"]},
                symtabs={i: tuple(Symbol(*s) for s in syms) for i, syms in record["symtabs"]},
                relocs=tuple(_Reloc(*r) for r in record["relocs"]), bufsz=record["bufsz"],
                memsz=record["memsz"], required_alignment=record["required_alignment"],
                entry_section=entry_section, entry_offset=entry_offset, shnum=record["shnum"],
                file_offsets=offsets,
            )
        except (KeyError, TypeError, ValueError):
            return None     # not a record this version writes: parse the object instead

    @staticmethod
    def _find_entry(elf, placements, symtabs, entry_symbol) -> Tuple[int, int]:
        """(section index, offset in it) of the entry point; (-1, 0) when there is none."""
        if entry_symbol is not None:
            sym = _find_global(symtabs, entry_symbol)
            if sym is None:
                raise SymbolError(f"entry symbol {entry_symbol!r} not found (must be STB_GLOBAL)")
            if sym.shndx not in {p.index for p in placements}:
                raise SymbolError(f"entry symbol {entry_symbol!r} is not in an allocated section")
            return sym.shndx, sym.value
        e_entry = elf["e_entry"]
        for p in placements:
            if p.flags & SHF_EXECINSTR and not p.nobits and e_entry < p.size:
                return p.index, e_entry  # every sh_addr is 0 in a .o
        return -1, 0

    # -- queries -------------------------------------------------------------------

    @property
    def machine(self) -> str:
        """The object's e_machine as pyelftools names it (``EM_...``)."""
        return self._machine.name

    @property
    def size(self) -> int:
        """Bytes of memory the loaded object occupies (``memsz``)."""
        return self.memsz

    def symbols(self) -> Iterable[Symbol]:
        for syms in self._symtabs.values():
            yield from syms

    def find_symbol(self, name: str) -> Optional[Symbol]:
        """The STB_GLOBAL symbol `name`, or None."""
        return _find_global(self._symtabs, name)

    # -- layout and relocation -----------------------------------------------------

    def layout(self, base: int) -> "LoadedObject":
        """Relocate the object for physical address `base` and return the segment."""
        if base < 0 or base % self.required_alignment:
            raise ElfRelError(f"base {base:#x} is not aligned to {self.required_alignment:#x}")
        if base + self.memsz - 1 > self._machine.max_address:
            raise ElfRelError(f"object of {self.memsz:#x} bytes at {base:#x} exceeds the address space")
        addresses = {p.index: base + p.offset for p in self.sections}
        buf = bytearray(self.bufsz)
        for p in self.sections:
            if not p.nobits:
                buf[p.offset:p.offset + p.size] = self._contents[p.index]
        for rel in self._relocs:
            self._apply(buf, rel, addresses)
        entry = addresses[self._entry_section] + self._entry_offset if self._entry_section >= 0 else None
        return LoadedObject(
            base=base, data=bytes(buf), memsz=self.memsz, entry=entry,
            _sections=MappingProxyType({p.name: p for p in self.sections}),
            _placement=MappingProxyType(dict(self._placement)),
            _symtabs=self._symtabs,
        )

    def _symbol_value(self, rel: _Reloc, addresses: Mapping[int, int]) -> int:
        if rel.symbol == 0:
            return 0
        syms = self._symtabs[rel.symtab]
        if rel.symbol >= len(syms):
            raise RelocationError(f"relocation refers to symbol #{rel.symbol}, past the symbol table")
        sym = syms[rel.symbol]
        label = sym.name or f"#{sym.index}"
        if sym.shndx == SHN_UNDEF:
            if sym.bind == "STB_WEAK":
                return 0
            raise RelocationError(f"undefined symbol: {label}")
        if sym.shndx == SHN_ABS:
            return sym.value
        if sym.shndx == SHN_COMMON:
            raise RelocationError(f"common symbol {label} is not supported (build with -fno-common)")
        if sym.shndx >= self._shnum or sym.shndx >= SHN_LORESERVE:
            raise RelocationError(f"symbol {label} has bad section index {sym.shndx:#x}")
        if sym.shndx not in addresses:
            name = self._section_names.get(sym.shndx, sym.shndx)
            raise RelocationError(f"symbol {label} is in non-allocated section {name}")
        return addresses[sym.shndx] + sym.value

    def _apply(self, buf: bytearray, rel: _Reloc, addresses: Mapping[int, int]) -> None:
        machine = self._machine
        kind = machine.kind(rel.type_name)
        where = f"{self._section_names[rel.section]} at offset {rel.offset:#x}"
        if kind is None:
            raise RelocationError(f"unsupported {machine.name} relocation {rel.type_name} "
                                  f"(type {rel.type}) in {where}")
        if kind.width == 0:
            return
        target = self._placement[rel.target]
        if rel.offset + kind.width > target.size:
            raise RelocationError(f"{kind.name} in {where} runs past the end of {target.name}")
        loc = target.offset + rel.offset
        if rel.addend is not None:
            addend = rel.addend
        elif kind.fields:   # REL keeps the addend in the instruction's own encoding
            raise RelocationError(f"{kind.name} in {where}: REL (addend in place) is not "
                                  "supported for instruction fields")
        else:  # REL: the addend is stored in the location
            addend = struct.unpack_from({2: "<h", 4: "<i", 8: "<q"}[kind.width], buf, loc)[0]
        value = self._symbol_value(rel, addresses) + addend
        place = addresses[rel.target] + rel.offset
        if kind.page:
            value = (value & -kind.page) - (place & -kind.page)
        elif kind.pc_relative:
            value -= place
        # Address arithmetic is modulo the machine's address width; the range checks
        # then read that value as unsigned ("unsigned") or two's complement ("signed").
        value %= 1 << machine.elfclass
        if kind.rule in ("signed", "bitfield") and value >= 1 << (machine.elfclass - 1):
            value -= 1 << machine.elfclass
        bits = kind.range_bits or kind.width * 8
        fits = {"wrap": True,
                "unsigned": 0 <= value < (1 << bits),
                "signed": -(1 << (bits - 1)) <= value < (1 << (bits - 1)),
                "bitfield": -(1 << (bits - 1)) <= value < (1 << bits)}[kind.rule]
        if not fits:
            shown = {"unsigned": f"u{bits}", "signed": f"s{bits}"}.get(kind.rule, f"{bits} bits")
            raise RelocationError(f"overflow in {kind.name} in {where}: {value:#x} does not fit in {shown}")
        if value % kind.align:
            raise RelocationError(f"{kind.name} in {where}: {value:#x} is not a multiple of {kind.align}")
        if not kind.fields:
            width_bits = kind.width * 8
            struct.pack_into("<Q" if width_bits == 64 else "<I" if width_bits == 32 else "<H", buf,
                             loc, value & ((1 << width_bits) - 1))
            return
        word = int.from_bytes(buf[loc:loc + kind.width], "little")
        for value_bit, count, word_bit in kind.fields:
            mask = (1 << count) - 1
            word = word & ~(mask << word_bit) | ((value >> value_bit) & mask) << word_bit
        buf[loc:loc + kind.width] = word.to_bytes(kind.width, "little")


def object_record(data: bytes) -> dict:
    """RelocatableObject.to_record of the object `data`, whatever its machine (the build
    writes it; the load checks the machine against its RelocationSet in from_record)."""
    from elftools.elf.descriptions import describe_reloc_type
    from elftools.elf.elffile import ELFFile
    elf = ELFFile(io.BytesIO(bytes(data)))
    as_declared = relocation_set((elf["e_machine"],), elf.elfclass, "", {})
    record = RelocatableObject.from_bytes(data, relocations=(as_declared,)).to_record(data)
    for rel in record["relocs"]:    # pyelftools' own name for each type of this machine
        rel[7] = describe_reloc_type(rel[3], elf)
    return record


def _find_global(symtabs: Mapping[int, Tuple[Symbol, ...]], name: str) -> Optional[Symbol]:
    for syms in symtabs.values():
        for sym in syms:
            if sym.name == name and sym.bind == "STB_GLOBAL" and sym.shndx != SHN_UNDEF:
                return sym
    return None


# --- loaded object -----------------------------------------------------------------

@dataclass(frozen=True)
class LoadedObject:
    """The object relocated at `base`: one segment of `data` zero-filled to `memsz`.

    Immutable: :meth:`set_symbol` returns a new LoadedObject.
    """

    base: int
    data: bytes
    memsz: int
    entry: Optional[int]
    _sections: Mapping[str, SectionPlacement] = field(repr=False, compare=False)
    _placement: Mapping[int, SectionPlacement] = field(repr=False, compare=False)
    _symtabs: Mapping[int, Tuple[Symbol, ...]] = field(repr=False, compare=False)

    @property
    def bufsz(self) -> int:
        return len(self.data)

    @property
    def sections(self) -> Tuple[SectionPlacement, ...]:
        """The allocated sections, by offset from `base` (PROGBITS first, then NOBITS)."""
        return tuple(sorted(self._sections.values(), key=lambda p: (p.offset, p.index)))

    @property
    def end(self) -> int:
        return self.base + self.memsz

    def section_address(self, name: str) -> int:
        try:
            return self.base + self._sections[name].offset
        except KeyError:
            raise SymbolError(f"no allocated section {name!r}") from None

    def section_addresses(self) -> Mapping[str, int]:
        return {name: self.base + p.offset for name, p in self._sections.items()}

    def _symbol(self, name: str) -> Tuple[Symbol, SectionPlacement]:
        sym = _find_global(self._symtabs, name)
        if sym is None:
            raise SymbolError(f"symbol {name!r} not found (must be STB_GLOBAL and defined)")
        placement = self._placement.get(sym.shndx)
        if placement is None:
            raise SymbolError(f"symbol {name!r} is not in an allocated section")
        return sym, placement

    def symbol_address(self, name: str) -> int:
        """Physical address of the global symbol `name` (like elf_rel_get_addr)."""
        sym, placement = self._symbol(name)
        return self.base + placement.offset + sym.value

    def symbol_size(self, name: str) -> int:
        return self._symbol(name)[0].size

    def _writable(self, name: str, size: int) -> int:
        sym, placement = self._symbol(name)
        if sym.size != size:
            raise SymbolError(f"symbol {name!r} has size {sym.size}, not {size}")
        if placement.nobits:
            raise SymbolError(f"symbol {name!r} is in NOBITS section {placement.name}; its bytes are not in the image")
        offset = placement.offset + sym.value
        if sym.value + size > placement.size:
            raise SymbolError(f"symbol {name!r} runs past the end of {placement.name}")
        return offset

    def get_symbol(self, name: str) -> bytes:
        """The current bytes of the global data symbol `name` (``st_size`` of them)."""
        sym, _ = self._symbol(name)
        offset = self._writable(name, sym.size)
        return self.data[offset:offset + sym.size]

    def get_int(self, name: str, *, signed: bool = False) -> int:
        return int.from_bytes(self.get_symbol(name), "little", signed=signed)

    def set_symbol(self, name: str, value: bytes) -> "LoadedObject":
        """A copy with the bytes of `name` replaced; ``len(value)`` must equal its size."""
        return self.set_symbols({name: value})

    def set_symbols(self, values: Mapping[str, Union[bytes, int]]) -> "LoadedObject":
        """A copy with several symbols replaced at once.

        A value may be bytes (exactly the symbol's size) or an int, stored
        little-endian in the symbol's size (unsigned, or negative two's complement).
        """
        buf = bytearray(self.data)
        for name, value in values.items():
            if isinstance(value, int):
                size = self.symbol_size(name)
                if not -(1 << (8 * size - 1)) <= value < (1 << (8 * size)):
                    raise SymbolError(f"value {value:#x} does not fit symbol {name!r} of {size} bytes")
                value = (value % (1 << (8 * size))).to_bytes(size, "little")
            value = bytes(value)
            offset = self._writable(name, len(value))
            buf[offset:offset + len(value)] = value
        return replace(self, data=bytes(buf))
