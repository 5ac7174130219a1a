"""Placing an x86 purgatory and setting the symbols it reads (x86_64 and i386).

Purgatory is placed before the buffers it points at (so its size is known), filled with
its relocated but unpatched image, and patched last: its SHA-256 table covers every other
segment, so it can only be written once they are final. The two architectures differ
only in which object is loaded and in the register block its entry code loads.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, NamedTuple, Tuple

from construct import Struct

from pykexec.abi.fields import field_names
from pykexec.arch.x86 import purgatory_spec
from pykexec.arch.x86.abi import Entry32Regs, Entry64Regs
from pykexec.arch.x86.relocations import I386_RELOCATIONS, X86_64_RELOCATIONS
from pykexec.core.digest import hashed_segments, sha256_regions
from pykexec.core.layout import Layout
from pykexec.core.plan import Segment
from pykexec.core.ranges import ADDR_LIMIT
from pykexec.purgatory.build import PurgatorySpec, purgatory_object, purgatory_record
from pykexec.purgatory.elfrel import LoadedObject, RelocatableObject, RelocationSet

PURGATORY_MIN_ADDR = 0x3000  # below it sit the real-mode IVT and BIOS data


class RegisterBlock(NamedTuple):     # not a dataclass: ~1 ms less on every load's import
    """The registers purgatory's entry code loads before jumping to the kernel."""

    symbol: str
    layout: Struct     # x86/abi.py's Entry64Regs or Entry32Regs
    entry: str         # the instruction pointer
    boot_params: str   # where the boot protocol wants the zero page's address
    stack: str

    @property
    def names(self) -> Tuple[str, ...]:
        return field_names(self.layout)

    def pack(self, regs: Dict[str, int]) -> bytes:
        return self.layout.build({name: regs[name] for name in self.names})


class PurgatoryKind(NamedTuple):
    spec: PurgatorySpec               # which object pykexec.purgatory.build builds
    relocations: RelocationSet        # what its relocation types mean
    source: str                       # provenance shown for the segment
    registers: RegisterBlock


X86_64 = PurgatoryKind(
    purgatory_spec.X86_64, X86_64_RELOCATIONS, "arch/x86_64/purgatory (pykexec's own, gcc-built)",
    RegisterBlock("entry64_regs", Entry64Regs, "rip", "rsi", "rsp"))
I386 = PurgatoryKind(
    purgatory_spec.I386, I386_RELOCATIONS, "arch/i386/purgatory (pykexec's own, gcc -m32)",
    RegisterBlock("entry32_regs", Entry32Regs, "eip", "esi", "esp"))


class PurgatoryOptions(NamedTuple):
    panic_kernel: bool
    backup_start: int = 0
    backup_src_start: int = 0
    backup_src_size: int = 0
    skip_checks: bool = False
    console_serial: bool = False
    serial_base: int = 0x3F8
    serial_baud: int = 0
    cmdline_end: int = 0
    unhashed_kinds: Tuple[str, ...] = ()   # segments the kernel may rewrite after the load


def place_purgatory(layout: Layout, kind: PurgatoryKind, low: int = PURGATORY_MIN_ADDR,
                    high: int = ADDR_LIMIT, top_down: bool = True) -> LoadedObject:
    data = purgatory_object(kind.spec)
    record = purgatory_record(kind.spec)
    obj = None
    if isinstance(record, dict):
        obj = RelocatableObject.from_record(data, record, relocations=(kind.relocations,))
    if obj is None:     # no record, or one of another object: parse it here
        obj = RelocatableObject.from_bytes(data, relocations=(kind.relocations,))
    base = layout.place(obj.memsz, "purgatory", kind.source, align=obj.required_alignment,
                        low=low, high=high, top_down=top_down)
    loaded = obj.layout(base)
    layout.fill(base, loaded.data)
    return loaded


def registers_for_kernel(loaded: LoadedObject, kind: PurgatoryKind, entry: int,
                         boot_params: int) -> Dict[str, int]:
    """The boot protocol's registers: the zero page's address, a usable stack, the rest 0
    (the boot CPU's rbx/ebx, and ebp/edi on i386, must be zero)."""
    block = kind.registers
    regs = dict.fromkeys(block.names, 0)
    regs.update({block.entry: entry, block.boot_params: boot_params,
                 block.stack: loaded.symbol_address("stack_end")})
    return regs


def finish_purgatory(segments: Tuple[Segment, ...], loaded: LoadedObject, kind: PurgatoryKind,
                     regs: Dict[str, int], options: PurgatoryOptions
                     ) -> Tuple[Tuple[Segment, ...], Dict[str, object]]:
    """Patch purgatory's symbols, with the digest of all other (final) segments."""
    others = hashed_segments(segments, loaded.base, options.unhashed_kinds)
    if options.skip_checks:
        table, digest, regions = bytes(256), bytes(32), []
    else:
        table, digest, regions = sha256_regions(others)
    values = {
        kind.registers.symbol: kind.registers.pack(regs),
        "sha256_regions": table,
        "sha256_digest": digest,
        "skip_checks": int(options.skip_checks),
        "panic_kernel": int(options.panic_kernel),
        "backup_start": options.backup_start,
        "backup_src_start": options.backup_src_start,
        "backup_src_size": options.backup_src_size,
        "console_serial": int(options.console_serial),
        "serial_base": options.serial_base,
        "serial_baud": options.serial_baud,
        "cmdline_end": options.cmdline_end,
    }
    patched = loaded.set_symbols(values)
    out = tuple(replace(s, data=patched.data) if s.mem == loaded.base else s for s in segments)
    shown: Dict[str, object] = {name: v for name, v in values.items() if isinstance(v, int)}
    shown.update(sha256_digest=digest.hex(), sha256_regions=[[mem, size] for mem, size in regions],
                 registers=dict(regs),
                 symbol_addresses={name: patched.symbol_address(name) for name in values})
    return out, shown
