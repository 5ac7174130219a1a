"""The machine a loader runs on, as /proc and /sys describe it, read under one root path.

`Machine.read("/")` reads the live machine; `Machine.read(DIR)` reads a snapshot folder
(docs/snapshot-format.md) through the same code. Loaders get every /proc and /sys fact
from here; nothing else in pykexec parses those files (pykexec.machine.snapshot only copies them).

Every fact is an attribute that is read and parsed on first access and then kept: each
file is read at most once, and each value is immutable (tuples, frozen dataclasses,
named tuples). A fact the machine cannot give raises `MachineError`, whose message
names the file as seen under the root (for a snapshot, `DIR/proc/iomem`) and the
problem; parse errors in line-oriented files also give the line number.

`Machine` is one facade over focused parts, each a module of this package:

=================  =================================================================
`reader`           the root, bounded cached reads, number formats, `MachineError`
`iomem`            proc/iomem as a tree (indentation = nesting), crash regions, RAM index
`memmap`           sys/firmware/memmap (else proc/iomem), fixed up, IVT skipped
`cpus`             CPU lists, per-CPU crash_notes, sys/kernel/vmcoreinfo
`symbols`          proc/kallsyms lookups, proc/kcore program headers
`firmware`         EFI runtime map and systab, boot_params bytes, the device tree bytes
`kexecstate`       kexec_loaded, kexec_crash_loaded, sizes, kexec_load_disabled, lockdown
`identity`         proc/cmdline, snapshot.json, the machine's architecture
=================  =================================================================
"""

from __future__ import annotations

from pykexec.machine.cpus import CpuFacts, CpuNote, VmcoreInfo, parse_cpu_list
from pykexec.machine.firmware import EfiFacts, EfiRuntimeMapEntry, FirmwareFacts
from pykexec.machine.identity import Identity
from pykexec.machine.iomem import Iomem, IomemFacts, IomemNode, RamIndex, parse_iomem
from pykexec.machine.kexecstate import KexecState
from pykexec.machine.memmap import MemoryMapFacts, fixup_memory_map
from pykexec.machine.reader import (EXIT_CANNOT_PARSE, EXIT_LOAD_FAILED, MAX_MACHINE_FILE,
                                    MachineError, MachineReader, read_machine_file)
from pykexec.machine.symbols import KcoreLoad, SymbolFacts, parse_kcore_loads

__all__ = ["Machine", "MachineError", "EXIT_CANNOT_PARSE", "EXIT_LOAD_FAILED",
           "MAX_MACHINE_FILE", "read_machine_file", "CpuNote", "VmcoreInfo", "parse_cpu_list",
           "EfiFacts", "EfiRuntimeMapEntry", "Iomem", "IomemNode", "RamIndex", "parse_iomem",
           "fixup_memory_map", "KcoreLoad", "parse_kcore_loads"]


class Machine(IomemFacts, MemoryMapFacts, CpuFacts, SymbolFacts, FirmwareFacts, KexecState,
              Identity, MachineReader):
    """Everything a loader needs from /proc and /sys under `root`, read lazily, once.

    Create with `Machine.read(root)`; the parts' docstrings say what each fact follows.
    Architecture rules over these facts (kernel text, crash ranges...) live with each
    architecture under pykexec/arch/, as functions of a Machine.
    """
