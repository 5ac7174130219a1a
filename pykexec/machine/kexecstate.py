"""The kernel's kexec state: loaded images, crash reservation sizes, lockdown, kexec_load_disabled."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Optional

from pykexec.machine.reader import MachineError, parse_decimal, parse_flag


class KexecState:
    """Machine facts: sys/kernel/kexec* flags and sizes, the lockdown mode."""

    @cached_property
    def kexec_loaded(self) -> Optional[bool]:
        return self.kexec_value("kexec_loaded", parse_flag, "0 or 1")

    @cached_property
    def kexec_crash_loaded(self) -> Optional[bool]:
        return self.kexec_value("kexec_crash_loaded", parse_flag, "0 or 1")

    @cached_property
    def kexec_crash_size(self) -> Optional[int]:
        """Bytes reserved for crash kernels (high + low), or None."""
        return self.kexec_value("kexec_crash_size", parse_decimal, "a decimal size")

    @cached_property
    def crash_elfcorehdr_size(self) -> Optional[int]:
        """CONFIG_CRASH_HOTPLUG: the elfcorehdr memsz to reserve, or None."""
        return self.kexec_value("crash_elfcorehdr_size", parse_decimal, "a decimal size")

    @cached_property
    def kexec_load_disabled(self) -> Optional[bool]:
        return self.file_value("proc/sys/kernel/kexec_load_disabled", parse_flag, "0 or 1")

    @cached_property
    def lockdown(self) -> Optional[str]:
        """The active lockdown mode ("none", "integrity", "confidentiality"), or None."""
        line = self.first_line("sys/kernel/security/lockdown")
        if line is None:
            return None
        m = re.search(r"\[([^\]]+)\]", line)
        if not m:
            raise MachineError(f"{self.path('sys/kernel/security/lockdown')}:1: no [mode] in "
                               f"{line.strip()!r}", self.path("sys/kernel/security/lockdown"), 1)
        return m.group(1)
