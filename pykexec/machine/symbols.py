"""The running kernel's symbols: /proc/kallsyms lookups and /proc/kcore's program headers."""

from __future__ import annotations

import re
from functools import cached_property
from typing import NamedTuple, Optional, Tuple

from pykexec.abi.elf import ELF_MAGIC, ET_CORE, PT_LOAD, ElfHead, elf_structs
from pykexec.machine.reader import EXIT_LOAD_FAILED, MachineError, _Missing

KCORE_HEADERS_SIZE = 64 * 1024  # kexec-tools parses only this much of /proc/kcore

class KcoreLoad(NamedTuple):
    """A PT_LOAD of /proc/kcore: kernel virtual address and memory size."""

    vaddr: int
    memsz: int


def parse_kcore_loads(data: bytes, path: str = "/proc/kcore") -> Tuple[KcoreLoad, ...]:
    """PT_LOADs of a kcore ELF header (only the headers need to be in `data`)."""
    def fail(why):
        return MachineError(f"ELF core (kcore) parse failed: {path}: {why}", path,
                            exit_status=EXIT_LOAD_FAILED)

    if len(data) < 16 or data[:4] != ELF_MAGIC:
        raise fail("no ELF magic")
    if data[4] not in (1, 2) or data[5] != 1:
        raise fail(f"unsupported ELF class {data[4]} / data encoding {data[5]}")
    s = elf_structs(data[4])
    if len(data) < s.ehdr_size:
        raise fail("truncated ELF header")
    ehdr = s.Ehdr.parse(data)
    if ehdr.e_ident.version != 1 or ehdr.e_version != 1:
        raise fail("unknown ELF version")
    if ehdr.e_type != ET_CORE:
        raise fail(f"e_type is {ehdr.e_type}, not ET_CORE")
    if ehdr.e_phoff == 0 or ehdr.e_phnum == 0:
        raise fail("no program headers")
    end = ehdr.e_phoff + ehdr.e_phnum * s.phdr_size
    if end > len(data):
        raise fail(f"program headers end at {end:#x}, past the {len(data):#x} bytes read")
    loads = []
    for i in range(ehdr.e_phnum):
        at = ehdr.e_phoff + i * s.phdr_size
        ph = s.Phdr.parse(data[at:at + s.phdr_size])
        if ph.p_type == PT_LOAD:
            loads.append(KcoreLoad(ph.p_vaddr, ph.p_memsz))
    return tuple(loads)



class SymbolFacts:
    """Machine facts from /proc/kcore and /proc/kallsyms."""

    @cached_property
    def kcore_loads(self) -> Tuple[KcoreLoad, ...]:
        """PT_LOADs from the first 64 KiB of /proc/kcore."""
        rel = "proc/kcore"
        data = self._read(rel, KCORE_HEADERS_SIZE)
        if isinstance(data, _Missing):
            raise MachineError(f"Cannot read {self.path(rel)}: {data.error.strerror}",
                               self.path(rel), exit_status=EXIT_LOAD_FAILED)
        return parse_kcore_loads(data, self.path(rel))

    def symbol(self, name: str) -> Optional[int]:
        """Address of the first /proc/kallsyms line naming `name` exactly, or None.

        Zero when kptr_restrict hides addresses. Missing kallsyms gives None.
        """
        data = self.file_bytes("proc/kallsyms")
        if data is None:
            return None
        pattern = re.compile(rb"^([0-9A-Fa-f]+) \S " + re.escape(name.encode()) + rb"(?=[\t ]|$)",
                             re.MULTILINE)
        m = pattern.search(data)
        return int(m.group(1), 16) if m else None

    def kcore_elf_machine(self) -> Optional[int]:
        """e_machine of the kcore ELF header (which kernel runs), None if unreadable."""
        try:
            head = self.file_bytes("proc/kcore", 20)
        except MachineError:
            return None
        if not head or len(head) < 20 or head[:4] != ELF_MAGIC:
            return None
        return ElfHead.parse(head).e_machine
