"""Placing the x86_64 purgatory and setting the symbols it reads.

Purgatory is placed before the buffers it points at (so its size is known), filled with
its relocated but unpatched image, and patched last: its SHA-256 table covers every other
segment, so it can only be written once they are final.
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

ENTRY64_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")
PURGATORY_MIN_ADDR = 0x3000  # below it sit the real-mode IVT and BIOS data


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


def place_purgatory(layout: Layout) -> LoadedObject:
    obj = RelocatableObject.from_bytes(purgatory_object("x86_64"))
    base = layout.place(obj.memsz, "purgatory", "arch/x86_64/purgatory (pykexec's own, gcc-built)",
                        align=obj.required_alignment, low=PURGATORY_MIN_ADDR)
    loaded = obj.layout(base)
    layout.fill(base, loaded.data)
    return loaded


def registers_for_kernel(loaded: LoadedObject, rip: int, rsi: int) -> Dict[str, int]:
    """The 64-bit boot protocol: rsi = boot_params, rbx = 0 (boot CPU), a usable stack."""
    regs = dict.fromkeys(ENTRY64_REGS, 0)
    regs.update(rip=rip, rsi=rsi, rsp=loaded.symbol_address("stack_end"))
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
        "entry64_regs": struct.pack("<17Q", *(regs[r] for r in ENTRY64_REGS)),
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
