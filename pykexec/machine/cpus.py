"""CPUs and the kernel's note buffers: CPU lists, per-CPU crash_notes, vmcoreinfo."""

from __future__ import annotations

import re
from functools import cached_property
from typing import NamedTuple, Optional, Tuple

from pykexec.core.ranges import Range
from pykexec.machine.reader import MachineError, parse_decimal, parse_hex

MAX_NOTE_BYTES = 1024  # crash_notes size assumed when crash_notes_size is missing
MAX_NOTE_SIZE = 1 << 20  # no crash_notes or vmcoreinfo buffer comes near 1 MiB

class CpuNote(NamedTuple):
    """A CPU's crash-notes buffer: physical address and size (one PT_NOTE)."""

    cpu: int
    paddr: int
    size: int


class VmcoreInfo(NamedTuple):
    """The vmcoreinfo note: physical address and size (one PT_NOTE)."""

    paddr: int
    size: int


MAX_CPUS = 8192  # the largest NR_CPUS a kernel is built with (MAXSMP): no CPU number reaches it
_CPU_LIST = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")


def parse_cpu_list(text: str, limit: int = MAX_CPUS) -> Tuple[int, ...]:
    """A sysfs CPU list such as "0-3,5" as sorted CPU numbers; "" is no CPU.

    Strict, as the kernel prints it (bitmap_print_to_pagebuf): decimal numbers and
    ascending ranges joined by commas. Every number must be below `limit` (checked before
    a range is expanded, so a damaged "0-4294967295" costs nothing).
    """
    body = text.strip()
    if not body:
        return ()
    if not _CPU_LIST.fullmatch(body):
        raise ValueError("not a CPU list such as 0-3,5")
    cpus = set()
    for part in body.split(","):
        lo, _, hi = part.partition("-")
        lo_i, hi_i = int(lo), int(hi or lo)
        if hi_i < lo_i:
            raise ValueError(f"range {part} runs backwards")
        if hi_i >= limit:
            raise ValueError(f"CPU {hi_i} is beyond the kernel's limit (CPUs 0-{limit - 1})")
        cpus.update(range(lo_i, hi_i + 1))
    return tuple(sorted(cpus))



class CpuFacts:
    """Machine facts: configured CPUs, their crash notes and the vmcoreinfo note."""

    @cached_property
    def nr_cpus_conf(self) -> int:
        """Configured CPUs, as glibc's sysconf(_SC_NPROCESSORS_CONF) counts them.

        The number of CPUs in sys/devices/system/cpu/possible, else the number of cpuN
        directories. kexec-tools tries CPU numbers 0 .. nr_cpus_conf-1.
        """
        possible = self.possible_cpus
        if possible:
            return len(possible)
        return sum(1 for n in self.list_dir("sys/devices/system/cpu")
                   if re.fullmatch(r"cpu[0-9]+", n))

    @cached_property
    def possible_cpus(self) -> Tuple[int, ...]:
        return self._cpu_list("sys/devices/system/cpu/possible")

    @cached_property
    def present_cpus(self) -> Tuple[int, ...]:
        return self._cpu_list("sys/devices/system/cpu/present")

    @cached_property
    def online_cpus(self) -> Tuple[int, ...]:
        return self._cpu_list("sys/devices/system/cpu/online")

    def _cpu_list(self, rel: str) -> Tuple[int, ...]:
        """A sysfs CPU list file (parse_cpu_list); () when absent, MachineError when bad."""
        line = self.first_line(rel)
        if line is None:
            return ()
        try:
            return parse_cpu_list(line)
        except ValueError as e:
            raise MachineError(f"{self.path(rel)}:1: {line.strip()!r}: {e}", self.path(rel),
                               1) from None

    @cached_property
    def cpus(self) -> Tuple[CpuNote, ...]:
        """Per-CPU crash notes for CPU numbers 0 .. nr_cpus_conf-1 that have crash_notes.

        crash_notes is hex (the physical address of the CPU's note buffer), crash_notes_size
        decimal (1024 when the file is missing). A CPU without crash_notes is skipped; when
        sys/devices itself is missing that is an error (sysfs not mounted), as in kexec-tools.
        """
        if not self.is_dir("sys/devices"):
            raise MachineError(f"{self.path('sys/devices')} does not exist; is sysfs mounted?",
                               self.path("sys/devices"))
        out = []
        nr_cpus = self.nr_cpus_conf
        # Only CPU folders that exist are read (kexec-tools tries every number below
        # nr_cpus and skips the missing ones): linear in the folders, not in nr_cpus.
        numbers = sorted(int(n[3:]) for n in self.list_dir("sys/devices/system/cpu")
                         if re.fullmatch(r"cpu(0|[1-9][0-9]*)", n))
        for cpu in numbers:
            if cpu >= nr_cpus:
                break
            base = f"sys/devices/system/cpu/cpu{cpu}"
            paddr = self.file_value(f"{base}/crash_notes", parse_hex, "a hex address")
            if paddr is None:
                continue
            size = self.file_value(f"{base}/crash_notes_size", parse_decimal, "a decimal size")
            note = CpuNote(cpu, paddr, MAX_NOTE_BYTES if size is None else size)
            self._check_note(f"{base}/crash_notes", note.paddr, note.size)
            out.append(note)
        return tuple(out)

    def _check_note(self, rel: str, paddr: int, size: int) -> None:
        """A note buffer the kernel wrote must be non-empty, bounded and inside System RAM."""
        if not 0 < size <= MAX_NOTE_SIZE:
            raise MachineError(f"{self.path(rel)}: note size {size} is not between 1 and "
                               f"{MAX_NOTE_SIZE}", self.path(rel))
        if paddr + size > 1 << 64 or not self.ram_index.holds(Range.from_size(paddr, size)):
            raise MachineError(f"{self.path(rel)}: note at {paddr:#x}+{size:#x} is not inside "
                               f"System RAM of {self.path('proc/iomem')}", self.path(rel))

    @cached_property
    def legacy_crash_notes(self) -> Optional[int]:
        """sys/kernel/crash_notes (very old kernels): a kernel *virtual* address, or None."""
        return self.file_value("sys/kernel/crash_notes", parse_hex, "a hex address")

    @cached_property
    def vmcoreinfo(self) -> Optional[VmcoreInfo]:
        """(paddr, size) from sys/kernel/vmcoreinfo, both hex ("%llx %llx"), or None."""
        def parse(line):
            fields = line.split()
            if len(fields) < 2:
                raise ValueError(line)
            return VmcoreInfo(parse_hex(fields[0]), parse_hex(fields[1]))
        info = self.file_value("sys/kernel/vmcoreinfo", parse, "'<hex paddr> <hex size>'")
        if info is not None:
            self._check_note("sys/kernel/vmcoreinfo", info.paddr, info.size)
        return info
