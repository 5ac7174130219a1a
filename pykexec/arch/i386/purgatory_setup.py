"""Placing the i386 purgatory and setting the symbols it reads.

Like x86_64's: placed before the buffers it points at, patched last (its SHA-256 table
covers every other segment). The differences are the register block (entry32_regs:
eax ebx ecx edx esi edi esp ebp eip, 4 bytes each) and 32-bit backup variables.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Dict, Tuple

from pykexec.digest import sha256_regions
from pykexec.elfrel import LoadedObject, RelocatableObject
from pykexec.layout import Layout
from pykexec.plan import Segment
from pykexec.purgatory import purgatory_object
from pykexec.ranges import ADDR_LIMIT

ENTRY32_REGS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip")
PURGATORY_MIN_ADDR = 0x3000   # below it sit the real-mode IVT and BIOS data
PURGATORY_MAX_ADDR = 0x7FFFFFFF  # kexec-tools' bound for a protected-mode bzImage


@dataclass(frozen=True)
class PurgatoryOptions:
    panic_kernel: bool
    backup_start: int = 0
    backup_src_start: int = 0
    backup_src_size: int = 0
    skip_checks: bool = False
    console_serial: bool = False
    serial_base: int = 0x3F8
    serial_baud: int = 0
    cmdline_end: int = 0


def place_purgatory(layout: Layout, low: int = PURGATORY_MIN_ADDR,
                    high: int = PURGATORY_MAX_ADDR, top_down: bool = True) -> LoadedObject:
    obj = RelocatableObject.from_bytes(purgatory_object("i386"))
    base = layout.place(obj.memsz, "purgatory", "arch/i386/purgatory (pykexec's own, gcc -m32)",
                        align=obj.required_alignment, low=low, high=min(high + 1, ADDR_LIMIT),
                        top_down=top_down)
    loaded = obj.layout(base)
    layout.fill(base, loaded.data)
    return loaded


def registers_for_kernel(loaded: LoadedObject, eip: int, esi: int) -> Dict[str, int]:
    """The 32-bit boot protocol: esi = boot_params; ebx, ebp, edi = 0; a usable stack."""
    regs = dict.fromkeys(ENTRY32_REGS, 0)
    regs.update(eip=eip, esi=esi, esp=loaded.symbol_address("stack_end"))
    return regs


def finish_purgatory(segments: Tuple[Segment, ...], loaded: LoadedObject,
                     regs: Dict[str, int], options: PurgatoryOptions
                     ) -> Tuple[Tuple[Segment, ...], Dict[str, object]]:
    """Patch purgatory's symbols, with the digest of all other (final) segments."""
    others = [s for s in segments if s.mem != loaded.base]
    if options.skip_checks:
        table, digest, regions = bytes(256), bytes(32), []
    else:
        table, digest, regions = sha256_regions(others)
    values = {
        "entry32_regs": struct.pack("<9I", *(regs[r] for r in ENTRY32_REGS)),
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
