"""Placing the arm64 purgatory and setting the symbols it reads.

The purgatory (arch/arm64/purgatory) is placed before it is patched (so the segments
after it know its size), filled with its relocated but unpatched image, and patched last:
its SHA-256 table covers every other segment, so it can only be written once they are
final. The kernel's relocate_kernel enters it at `entry_address(loaded)` with the MMU
off; it checks the digest and enters the next kernel at `kernel_entry` with x0 = the
device tree's address and x1..x3 = 0 (the arm64 boot protocol).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Optional, Tuple

from pykexec.arch.arm64 import purgatory_spec
from pykexec.arch.arm64.relocations import ARM64_RELOCATIONS
from pykexec.core.digest import hashed_segments, sha256_regions
from pykexec.core.layout import Layout
from pykexec.core.plan import Segment
from pykexec.purgatory.build import purgatory_object, purgatory_record
from pykexec.purgatory.elfrel import LoadedObject, RelocatableObject

SPEC = purgatory_spec.ARM64
SOURCE = "arch/arm64/purgatory (pykexec's own, gcc-built)"
ENTRY_SYMBOL = "purgatory_start"


def purgatory_relocatable() -> RelocatableObject:
    """The parsed purgatory object (from the build's record when it is of this object).
    Raises PurgatoryBuildError, one line, when it is not installed and cannot be built
    here (no arm64 compiler)."""
    data = purgatory_object(SPEC)
    record = purgatory_record(SPEC)
    obj = None
    if isinstance(record, dict):
        obj = RelocatableObject.from_record(data, record, relocations=(ARM64_RELOCATIONS,))
    if obj is None:     # no record, or one of another object: parse it here
        obj = RelocatableObject.from_bytes(data, relocations=(ARM64_RELOCATIONS,))
    return obj


def place_purgatory(layout: Layout, low: int, high: int) -> LoadedObject:
    """Reserve the purgatory's segment in [low, high], lowest address first (kexec-tools
    puts it right after the device tree), and fill it with the relocated image."""
    obj = purgatory_relocatable()
    # (the layout rounds every placement to whole pages)
    base = layout.place(obj.memsz, "purgatory", SOURCE, align=obj.required_alignment,
                        low=low, high=high, top_down=False)
    loaded = obj.layout(base)
    layout.fill(base, loaded.data)
    return loaded


def entry_address(loaded: LoadedObject) -> int:
    """Where the kernel enters the purgatory: the plan's entry."""
    return loaded.symbol_address(ENTRY_SYMBOL)


def finish_purgatory(segments: Tuple[Segment, ...], loaded: LoadedObject, *, kernel_entry: int,
                     dtb_addr: int, uart_base: Optional[int], skip_checks: bool = False,
                     unhashed_kinds: Tuple[str, ...] = ()
                     ) -> Tuple[Tuple[Segment, ...], Dict[str, object]]:
    """Patch the purgatory's symbols, with the digest of all other (final) segments.
    `uart_base` is a PL011's MMIO base for its messages, None for silence."""
    others = hashed_segments(segments, loaded.base, unhashed_kinds)
    if skip_checks:
        table, digest, regions = bytes(256), bytes(32), []
    else:
        table, digest, regions = sha256_regions(others)
    values = {
        "sha256_regions": table,
        "sha256_digest": digest,
        "skip_checks": int(skip_checks),
        "kernel_entry": kernel_entry,
        "dtb_addr": dtb_addr,
        "uart_base": uart_base or 0,
    }
    patched = loaded.set_symbols(values)
    out = tuple(replace(s, data=patched.data) if s.mem == loaded.base else s for s in segments)
    shown: Dict[str, object] = {name: v for name, v in values.items() if isinstance(v, int)}
    shown.update(sha256_digest=digest.hex(), sha256_regions=[[mem, size] for mem, size in regions],
                 entry=entry_address(patched),
                 symbol_addresses={name: patched.symbol_address(name) for name in values})
    return out, shown
