"""Which machine this is: its command line, a snapshot's snapshot.json, its architecture."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Dict, Optional

from pykexec.abi.machines import ELF_MACHINE_NAMES
from pykexec.machine.reader import MachineError


class Identity:
    """Machine facts: the running kernel's command line and architecture."""

    @cached_property
    def cmdline(self) -> str:
        """The running kernel's command line (without the trailing newline)."""
        # Bytes as the kernel has them (pykexec.core.cmdline's one encoding rule), not U+FFFD.
        self.required_text("proc/cmdline")   # the one-line error when it is missing
        return os.fsdecode(self.file_bytes("proc/cmdline")).rstrip("\n")

    @cached_property
    def snapshot_info(self) -> Optional[Dict]:
        """snapshot.json of a snapshot folder, or None."""
        text = self.file_text("snapshot.json")
        if text is None:
            return None
        import json  # only snapshot folders have one: a live load does not import json
        try:
            info = json.loads(text)
        except ValueError as e:
            raise MachineError(f"{self.path('snapshot.json')}: not JSON: {e}",
                               self.path("snapshot.json")) from None
        if not isinstance(info, dict):
            raise MachineError(f"{self.path('snapshot.json')}: not a JSON object",
                               self.path("snapshot.json"))
        return info

    @cached_property
    def machine_arch(self) -> Optional[str]:
        """`uname -m` of the machine: snapshot.json's "machine", os.uname() for root "/",
        else None (a folder that does not say).

        A recorded name that is not a machine of the kernel in proc/kcore (by its ELF
        e_machine, where abi.machines knows it) is refused: a plan for the wrong
        architecture would not boot.
        """
        info = self.snapshot_info
        if info and info.get("machine"):
            recorded = str(info["machine"])
            kernel = ELF_MACHINE_NAMES.get(self.kcore_elf_machine())
            if kernel is not None and recorded not in kernel.names:
                raise MachineError(
                    f"{self.path('snapshot.json')}: machine {recorded!r} but "
                    f"{self.path('proc/kcore')} is an {kernel.family} kernel's (a snapshot taken "
                    f"with the host's architecture?)", self.path("snapshot.json"))
            return recorded
        if self.root == os.path.abspath(os.sep):
            return os.uname().machine
        return None
