"""The bad-input table's vocabulary, shared by tests/unit/badinput_*.py.

A case is a function `case_NAME(w) -> (argv, fragment)` decorated with `@bad(status)`:
`w` is the world of test_bad_input.py (a writable copy of a good synthetic machine, a good
bzImage and initrd, and a syscall recorder); `argv` breaks exactly one thing; `fragment` is
the file or value the one stderr line must name; `status` is the exit status kexec-tools
gives for the same fault (or, for pykexec's own commands, the documented one).

`sysroot`/`append` add `--sysroot <machine>` and a good `--append` unless argv has them;
`modes` says whether the case runs as a dry run, as a load (syscall recorded, must stay
empty), or once as it stands (`inspect`, `snapshot`, ...).
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from typing import Callable, Sequence, Tuple

APPEND = "console=ttyS0 irqpoll"


@dataclass(frozen=True)
class BadCase:
    build: Callable[[dict], Tuple[list, str]]
    status: int
    sysroot: bool
    append: bool
    modes: Tuple[str, ...]

    @property
    def name(self) -> str:
        return self.build.__name__[len("case_"):]


def bad(status: int, *, sysroot: bool = True, append: bool = True,
        modes: Sequence[str] = ("dry-run", "load")):
    """Mark `case_*` as a bad-input case that must exit with `status`."""
    def mark(fn):
        fn.bad_case = BadCase(fn, status, sysroot, append, tuple(modes))
        return fn
    return mark


def cases_in(module) -> list:
    return [v.bad_case for k, v in sorted(vars(module).items())
            if k.startswith("case_") and hasattr(v, "bad_case")]


def elf_kernel(machine: int = 62, elfclass: int = 2, truncate: bool = False) -> bytes:
    """A minimal ELF executable with one PT_LOAD (built by hand, not by pykexec)."""
    if elfclass == 2:
        ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, machine, 1,
                           0x1000000, 64, 0, 0, 64, 56, 1, 0, 0, 0)
        phdr = struct.pack("<IIQQQQQQ", 1, 7, 0x1000, 0xFFFFFFFF81000000, 0x1000000,
                           0x2000, 0x3000, 0x200000)
    else:
        ehdr = struct.pack("<4sBBBBB7xHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, 0, 2, machine, 1,
                           0x1000000, 52, 0, 0, 52, 32, 1, 0, 0, 0)
        phdr = struct.pack("<IIIIIIII", 1, 0x1000, 0xC1000000, 0x1000000, 0x2000, 0x3000, 7, 0x1000)
    body = ehdr + phdr
    body += bytes(0x1000 - len(body)) + b"\x90" * 0x2000
    return body[:0x1800] if truncate else body


def rewrite(w, rel, text=None, data=None):
    """Replace machine file `rel` (relative to the snapshot root) with `text` or `data`."""
    path = os.path.join(w["machine"], rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.isdir(path):
        shutil.rmtree(path)
    with open(path, "wb") as f:
        f.write(data if data is not None else text.encode())
    return path


def put(w, name, data):
    """Write a file `name` into the case's scratch folder; return its path."""
    path = w["dir"] / name
    path.write_bytes(data)
    return str(path)
