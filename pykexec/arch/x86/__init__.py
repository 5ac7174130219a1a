"""What x86_64 and i386 share: the boot protocol (setup header, zero page, e820,
setup_data), the crash rules, the load steps and the Arch class (family.py)."""

from __future__ import annotations


def with_entry_override(plan, request, machine, address_bits: int):
    """--entry replaces the plan's entry just before the syscall (as in kexec-tools); a
    crash load's entry must lie in the crash region (else the kernel's EADDRNOTAVAIL) and
    every entry within the architecture's addresses."""
    from dataclasses import replace

    from pykexec.errors import LoadError
    entry = request.entry
    if not entry:
        return plan
    if entry >> address_bits:
        raise LoadError(f"--entry={entry:#x} is not a {address_bits}-bit address")
    region = machine.crash_region if request.crash else None
    if region is not None and not region.start <= entry < region.end:
        raise LoadError(f"--entry={entry:#x} is outside the crash region {region}: the kernel "
                        "refuses a capture kernel's entry there (EADDRNOTAVAIL)")
    if not any(seg.mem <= entry < seg.mem + seg.memsz for seg in plan.segments):
        # the new kernel would start in memory nothing was loaded into: a plan that cannot
        # boot (kexec-tools loads it; docs/differences.md)
        raise LoadError(f"--entry={entry:#x} is in none of the segments loaded "
                        f"({len(plan.segments)}): nothing would run there")
    return replace(plan, entry=entry)
