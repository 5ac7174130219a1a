"""The new kernel's command line: what the user asked for, plus what a crash load adds."""

from __future__ import annotations

from typing import Optional

COMMAND_LINE_MAX = 2047  # kexec-tools' hard limit (2048 with the NUL)


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
