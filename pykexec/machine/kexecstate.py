"""The kernel's kexec state: loaded images, crash reservation sizes, lockdown, kexec_load_disabled."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Optional

from pykexec.machine.reader import MachineError, parse_decimal, parse_flag


class KexecState:
    """Machine facts: sys/kernel/kexec* flags and sizes, the lockdown mode."""

    def kexec_file(self, name: str) -> str:
        """sys/kernel/<name>, or the newer sys/kernel/kexec/<name without kexec_> (2025+
        kernels) when only that one exists: where a kexec flag or size is read from."""
        old = f"sys/kernel/{name}"
        short = name[len("kexec_"):] if name.startswith("kexec_") else name
        new = f"sys/kernel/kexec/{short}"
        return new if not self.exists(old) and self.exists(new) else old

    def kexec_value(self, name: str, parse, what: str):
        """The first line of `kexec_file(name)` parsed; None when neither file exists."""
        return self.file_value(self.kexec_file(name), parse, what)

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
    def crash_hotplug(self) -> dict:
        """Whether the kernel updates the loaded crash kernel's elfcorehdr itself on CPU and
        on memory hotplug (sys/devices/system/{cpu,memory}/crash_hotplug): {"cpu": bool or
        None, "memory": bool or None}, None where the kernel has no such file."""
        return {kind: self.file_value(f"sys/devices/system/{kind}/crash_hotplug", parse_flag,
                                      "0 or 1") for kind in ("cpu", "memory")}

    def kexec_flag_head(self, name: str, size: int) -> Optional[bytes]:
        """At most `size` bytes of the first line of `kexec_file(name)` (what `-S` reads);
        None when it is absent, MachineError when it cannot be read."""
        data = self.file_bytes(self.kexec_file(name), size)
        return None if data is None else data.split(b"\n", 1)[0] + b"\n" * (b"\n" in data)

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
