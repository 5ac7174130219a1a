"""The new kernel's command line: what the user asked for, plus what a crash load adds.

One encoding rule: a command line is bytes, as the kernel takes them. Inside pykexec it
travels as a `str` that holds those bytes losslessly (os.fsdecode's surrogateescape, the
form argv and /proc/cmdline arrive in), so a byte that is not UTF-8 passes through
unchanged, as kexec-tools passes it; `as_bytes` is the only way back to bytes, and every
length is counted in bytes (`byte_length`).
"""

from __future__ import annotations

import os
from typing import Optional

from pykexec.errors import FatalLoadError, LoadError

COMMAND_LINE_MAX = 2047  # kexec-tools' hard limit (2048 with the NUL)


def as_bytes(line: str) -> bytes:
    """The command line's bytes (surrogate escapes back to the bytes they stand for)."""
    return os.fsencode(line)


def from_bytes(data: bytes) -> str:
    """A command line read as bytes (/proc/cmdline), held losslessly."""
    return os.fsdecode(data)


def byte_length(line: str) -> int:
    return len(as_bytes(line))


def printable(line: str) -> str:
    """The command line for a terminal or a JSON file: bytes that are not UTF-8 as \\xNN."""
    return as_bytes(line).decode("utf-8", "backslashreplace")


def check_user_part(line: str, cmdline_size: int, path: str) -> None:
    """kexec-tools' first check, on the user's part: longer than the kernel's cmdline_size
    makes the loader return -1 (exit 255)."""
    if byte_length(line) > cmdline_size:
        raise LoadError(f"{path}: command line of {byte_length(line)} bytes is longer than the "
                        f"{cmdline_size} this kernel accepts (setup header cmdline_size)")


def check_final(line: str, cmdline_size: int, path: str, user_line: str) -> None:
    """The line the kernel will read, after elfcorehdr=/acpi_rsdp= are added: within
    kexec-tools' buffer (else its die "Command line overflow", exit 1) and within the
    kernel's cmdline_size, which would otherwise cut off the added parameters (exit 255,
    the loader's refusal; kexec-tools checks only the user's part)."""
    length = byte_length(line)
    added = length - byte_length(user_line)
    if length > COMMAND_LINE_MAX:
        raise FatalLoadError(f"Command line overflow: the capture command line would be {length} "
                             f"bytes ({added} added by pykexec), at most {COMMAND_LINE_MAX}")
    if length > cmdline_size:
        raise LoadError(f"{path}: the final command line is {length} bytes ({added} of them "
                        f"elfcorehdr=/acpi_rsdp= added by pykexec), more than the {cmdline_size} "
                        "this kernel keeps (setup header cmdline_size): it would cut them off")


def remove_parameter(line: str, name: str) -> str:
    """Drop every `name` / `name=...` word from `line`.

    Only whole words count: `foo_crashkernel=` is left alone, and so is a match that is not
    at the start of a word.
    """
    words = line.split(" ")
    kept = [w for w in words if not (w == name or w.startswith(name + "="))]
    return " ".join(w for w in kept if w)


def reused_cmdline(running: str, crash: bool) -> str:
    """The running kernel's /proc/cmdline as kexec --reuse-cmdline passes it on.

    BOOT_IMAGE= is the boot loader's note to the old kernel; a capture kernel must not reserve
    crash memory itself, so `crashkernel=` goes too for -p.
    """
    line = running.split("\n", 1)[0].split("\r", 1)[0]
    line = remove_parameter(line, "BOOT_IMAGE")
    if crash:
        line = remove_parameter(line, "crashkernel")
    return line


def compose(reuse: Optional[str], append: Optional[str]) -> str:
    """kexec's rule: reused line, then the --append text, whatever their order on argv."""
    parts = [p for p in (reuse, append) if p]
    return " ".join(parts)


def with_crash_parameters(line: str, elfcorehdr: int, acpi_rsdp: Optional[int]) -> str:
    """Append the parameters a capture kernel needs to find the old kernel's memory."""
    if acpi_rsdp:
        line += f" acpi_rsdp={acpi_rsdp:#x}"
    line += f" elfcorehdr={elfcorehdr // 1024}K"
    return line


def user_cmdline(request, machine) -> str:
    """The user's part of the new command line: --reuse-cmdline's text, then --append's
    (kexec-tools composes it so on every architecture it has)."""
    reuse = reused_cmdline(machine.cmdline, request.crash) if request.reuse_cmdline else None
    return compose(reuse, request.append)
