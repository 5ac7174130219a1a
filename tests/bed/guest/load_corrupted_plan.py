"""Load a saved plan after flipping one byte of its kernel segment (a test of purgatory).

Usage: load_corrupted_plan.py PLAN_DIR. The digest in purgatory was computed over the
intact bytes, so purgatory must refuse to jump when the panic comes.
"""

import sys
from dataclasses import replace

from pykexec.core.plan import load_plan
from pykexec.host.syscall import load_plan as kexec_load_plan


def main(folder: str) -> None:
    plan = load_plan(folder)
    segments = list(plan.segments)
    victim = next(i for i, s in enumerate(segments) if s.kind in ("kernel", "elf_load"))
    data = bytearray(segments[victim].data)
    data[len(data) // 2] ^= 0xFF
    segments[victim] = replace(segments[victim], data=bytes(data))
    kexec_load_plan(plan.with_segments(segments))


if __name__ == "__main__":
    main(sys.argv[1])
