"""Checks before `pykexec snapshot`: is what this user sees of the machine worth saving?

The kernel hides physical and kernel addresses from users without privilege: /proc/iomem
shows every range as 00000000-00000000 to anyone but root, and /proc/kallsyms prints zero
addresses when kernel.kptr_restrict says so (1: to users without CAP_SYSLOG, 2: to
everyone). A snapshot taken then would describe a machine that does not exist.

`snapshot_problems(root)` returns (fatal, warnings): `fatal` is one line saying why no
snapshot should be taken (or None), `warnings` are lines to print after taking it.
"""

from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

_IOMEM_LINE = re.compile(r"^\s*([0-9A-Fa-f]+)-([0-9A-Fa-f]+) : ")
_KALLSYMS_LINE = re.compile(rb"^([0-9A-Fa-f]+) ")


def _is_live(root: str) -> bool:
    return os.path.realpath(root) == os.path.realpath(os.sep)


def iomem_hidden(text: str) -> bool:
    """True when /proc/iomem lists ranges and every address is zero."""
    seen = False
    for line in text.splitlines():
        m = _IOMEM_LINE.match(line)
        if not m:
            continue
        seen = True
        if int(m.group(1), 16) or int(m.group(2), 16):
            return False
    return seen


def kallsyms_hidden(lines) -> bool:
    """True when /proc/kallsyms has symbols and every address is zero (kptr_restrict)."""
    seen = False
    for line in lines:
        m = _KALLSYMS_LINE.match(line)
        if not m:
            continue
        seen = True
        if int(m.group(1), 16):
            return False
    return seen


FDT_MAGIC = bytes.fromhex("d00dfeed")      # a flattened device tree's first word


def device_tree_problem(data: bytes) -> Optional[str]:
    """Why sys/firmware/fdt's bytes are not a whole device tree (magic, then the total
    size its header gives), or None. The architecture that uses the tree reads the rest."""
    if data[:4] != FDT_MAGIC:
        return "does not start with the device tree magic 0xd00dfeed"
    total = int.from_bytes(data[4:8], "big")
    if len(data) < 8 or total > len(data):
        return f"is cut short: its header says {total} bytes, the file has {len(data)}"
    return None


def snapshot_problems(root: str = "/") -> Tuple[Optional[str], List[str]]:
    warnings: List[str] = []
    live = _is_live(root)
    where = "" if live else f" (under {root})"
    try:
        with open(os.path.join(root, "proc/iomem")) as f:
            iomem = f.read()
    except OSError:
        iomem = None      # take_snapshot names the missing file itself
    if iomem is not None and iomem_hidden(iomem):
        return (f"needs root: /proc/iomem{where} shows zero addresses to others"
                + (" (run pykexec snapshot as root)" if live and os.geteuid() != 0 else ""),
                warnings)
    if live and os.geteuid() != 0:
        return ("needs root: /proc/iomem, /proc/kcore and the CPUs' crash_notes are "
                "readable only by root", warnings)
    try:
        with open(os.path.join(root, "proc/kallsyms"), "rb") as f:
            hidden = kallsyms_hidden(f)
    except OSError:
        hidden = False
    try:
        with open(os.path.join(root, "sys/firmware/fdt"), "rb") as f:
            problem = device_tree_problem(f.read(64 << 20))
    except OSError:
        problem = None    # no tree (a machine booted without one), or take_snapshot says why
    if problem:
        warnings.append(f"/sys/firmware/fdt{where} {problem}; the snapshot keeps it as it "
                        f"is, and a loader using the snapshot will refuse it")
    if hidden:
        setting = ""
        try:
            with open(os.path.join(root, "proc/sys/kernel/kptr_restrict")) as f:
                setting = f" (kernel.kptr_restrict = {f.read().strip()})"
        except OSError:
            pass
        warnings.append(f"kptr_restrict hides kernel addresses: /proc/kallsyms{where} shows "
                        f"only zeros{setting}; the snapshot keeps the zeros, so a loader "
                        f"using it cannot find _stext. For real addresses run "
                        f"`sysctl kernel.kptr_restrict=1` as root and snapshot again")
    return None, warnings
