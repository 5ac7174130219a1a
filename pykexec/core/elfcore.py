"""The ELF core header ("elfcorehdr") a crash load passes to the capture kernel.

The capture kernel's /proc/vmcore is this header: PT_NOTEs for each CPU's crash notes
and vmcoreinfo, and PT_LOADs for the old kernel's memory. `p_offset` of a PT_LOAD is the
*physical address where the bytes are now* (fs/proc/vmcore.c reads them from there),
which is why the low RAM that purgatory copies away points at its copy.

Two layers, one declaration for both ELF classes (`pykexec.abi.elf.elf_structs`):

* `build_core_header(elfclass, machine, notes, loads, phdr_slots)`: lays out an Ehdr and
  the given program headers in a zero-filled buffer of `phdr_slots` reserved headers,
  rounded up to 1 KiB; refuses values the class cannot hold.
* `crash_core_header(...)`: kexec-tools' x86 rules on top (crashdump-elf.c): which
  headers, in which order, with which addresses, and how big the buffer is.

Both return an `ElfCoreHeader`: the bytes plus a description of every program header
(what it stands for), for inspection views. `machine_core_header(machine, arch, ...)`
feeds `crash_core_header` from a `Machine`; a crash loader uses it like this:

    ranges = crash_memory_ranges(machine, arch)        # pykexec.arch.x86.crashfacts
    backup = backup_area(machine, arch)                # place backup_segment_size(backup)
    hdr = machine_core_header(machine, arch, backup_start)  # place elfcorehdr_memsz(hdr.size)
    cmap = crashmem.capture_memory_map(backup, machine.crash_regions, ranges, backup_start,
                                       Range.from_size(hdr_addr, elfcorehdr_memsz(hdr.size)))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, NamedTuple, Optional, Sequence, Tuple

from pykexec.errors import PykexecError
from pykexec.core.crashmem import I386_PAGE_OFFSET, BackupArea, lowmem_limit_for
from pykexec.core.ranges import MemoryRegion, MemType, align_up
from pykexec.abi.elf import (
    ELFCLASS32, ELFCLASS64, ELFDATA2LSB, EM_386, EM_X86_64, ET_CORE, EV_CURRENT, PF_R, PF_W,
    PF_X, PT_LOAD, PT_NOTE, elf_structs,
)

if TYPE_CHECKING:
    from pykexec.machine import Machine

ELF_CORE_HEADER_ALIGN = 1024  # the header is passed as elfcorehdr=<KiB>K
PF_RWX = PF_R | PF_W | PF_X


class ElfCoreError(PykexecError, ValueError):
    """The header cannot be built as asked (e.g. an ELF32 header above 4 GiB)."""


class ElfNote(NamedTuple):
    """A PT_NOTE: a note buffer at physical `paddr`, `size` bytes; `what` describes it."""

    paddr: int
    size: int
    what: str


class ElfLoad(NamedTuple):
    """A PT_LOAD: `size` bytes of physical memory at `paddr`, mapped at `vaddr`.

    `offset` is where the bytes are at dump time (defaults to `paddr`). `vaddr` None
    means "no virtual address": all ones (i386 highmem).
    """

    paddr: int
    size: int
    vaddr: Optional[int]
    what: str
    offset: Optional[int] = None


class PhdrInfo(NamedTuple):
    """One written program header, decoded, with what it stands for."""

    index: int
    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int
    what: str


@dataclass(frozen=True)
class ElfCoreHeader:
    """The elfcorehdr bytes and what each program header in it describes."""

    data: bytes
    elfclass: int
    machine: int
    phdrs: Tuple[PhdrInfo, ...]
    phdr_slots: int

    @property
    def size(self) -> int:
        return len(self.data)

    def describe(self) -> str:
        """A table of the program headers, one line each, for humans."""
        kind = {PT_NOTE: "NOTE", PT_LOAD: "LOAD"}
        lines = [f"ELF{32 if self.elfclass == ELFCLASS32 else 64} core header, "
                 f"{len(self.phdrs)} program headers in {self.size:#x} bytes"]
        for p in self.phdrs:
            lines.append(f"{p.index:3} {kind.get(p.p_type, p.p_type):4} off={p.p_offset:#x} "
                         f"vaddr={p.p_vaddr:#x} paddr={p.p_paddr:#x} size={p.p_memsz:#x}  "
                         f"{p.what}")
        return "\n".join(lines)


def build_core_header(elfclass: int, machine: int, notes: Sequence[ElfNote],
                      loads: Sequence[ElfLoad], phdr_slots: Optional[int] = None,
                      align: int = ELF_CORE_HEADER_ALIGN) -> ElfCoreHeader:
    """Ehdr, then PT_NOTEs, then PT_LOADs, in a zeroed buffer rounded up to `align`.

    The buffer reserves `phdr_slots` program headers (at least the number written);
    kexec-tools reserves more than it writes and leaves the slack zero.
    """
    s = elf_structs(elfclass)
    bits = 32 if elfclass == ELFCLASS32 else 64
    count = len(notes) + len(loads)
    slots = count if phdr_slots is None else phdr_slots
    if slots < count:
        raise ElfCoreError(f"{count} program headers do not fit {slots} slots")
    if count > 0xFFFF:
        raise ElfCoreError(f"{count} program headers: more than e_phnum can count")
    size = align_up(s.ehdr_size + slots * s.phdr_size, align)
    buf = bytearray(size)
    ehdr = dict(
        e_ident=dict(data=ELFDATA2LSB, version=EV_CURRENT, osabi=0, abiversion=0),
        e_type=ET_CORE, e_machine=machine, e_version=EV_CURRENT, e_entry=0,
        e_phoff=s.ehdr_size, e_shoff=0, e_flags=0, e_ehsize=s.ehdr_size,
        e_phentsize=s.phdr_size, e_phnum=count, e_shentsize=0, e_shnum=0, e_shstrndx=0)
    buf[:s.ehdr_size] = s.Ehdr.build(ehdr)

    phdrs = []
    entries = [(PT_NOTE, 0, n.paddr, 0, n.paddr, n.size, n.what) for n in notes]
    entries += [(PT_LOAD, PF_RWX, l.paddr if l.offset is None else l.offset,
                 s.addr_max if l.vaddr is None else l.vaddr, l.paddr, l.size, l.what)
                for l in loads]
    for index, (p_type, flags, offset, vaddr, paddr, length, what) in enumerate(entries):
        for field, value in (("p_offset", offset), ("p_vaddr", vaddr), ("p_paddr", paddr),
                             ("p_filesz", length)):
            if not 0 <= value <= s.addr_max:
                hint = " (use ELF64 headers)" if bits == 32 else ""
                raise ElfCoreError(
                    f"{what}: {field} {value:#x} does not fit an ELF{bits} core header{hint}")
        at = s.ehdr_size + index * s.phdr_size
        buf[at:at + s.phdr_size] = s.Phdr.build(dict(
            p_type=p_type, p_flags=flags, p_offset=offset, p_vaddr=vaddr, p_paddr=paddr,
            p_filesz=length, p_memsz=length, p_align=0))
        phdrs.append(PhdrInfo(index, p_type, flags, offset, vaddr, paddr, length, length, what))
    return ElfCoreHeader(bytes(buf), elfclass, machine, tuple(phdrs), slots)


class KernelTextLoad(NamedTuple):
    """The kernel-text PT_LOAD (x86_64): physical start, virtual start, size."""

    paddr: int
    vaddr: int
    size: int


def crash_core_header(elfclass: int, machine: int, nr_cpus: int,
                      cpu_notes: Iterable[Tuple[int, int, int]],
                      vmcoreinfo: Optional[Tuple[int, int]],
                      kernel_text: Optional[Tuple[int, int, int]],
                      crash_ranges: Sequence[MemoryRegion], page_offset: int,
                      backup_src: Optional[BackupArea] = None,
                      backup_start: Optional[int] = None,
                      lowmem_limit: Optional[int] = None) -> ElfCoreHeader:
    """The elfcorehdr kexec-tools writes for an x86 crash load.

    * `nr_cpus`: configured CPUs (Machine.nr_cpus_conf); one header slot each.
    * `cpu_notes`: `(cpu, paddr, size)` of the CPUs that have notes, increasing CPU
      number (Machine.cpu_notes()); one PT_NOTE each.
    * `vmcoreinfo`: `(paddr, size)` or None; a PT_NOTE after the CPUs.
    * `kernel_text`: `KernelTextLoad(paddr, vaddr, size)` (or a plain tuple), or None
      (i386, or size 0); a PT_LOAD.
    * `crash_ranges`: Machine.crash_memory_ranges(); every one reserves a header slot,
      the RAM ones get a PT_LOAD in order with `p_vaddr = paddr + page_offset`, or all
      ones when `lowmem_limit` is set and the range ends above it (i386 highmem).
    * `backup_src` / `backup_start`: the RAM range equal to the backup area gets
      `p_offset = backup_start`, the copy purgatory makes (None: no backup segment).

    The buffer holds the Ehdr plus `nr_cpus + has_vmcoreinfo + len(crash_ranges)
    (+1 for kernel text)` headers, rounded up to 1 KiB and zero-filled.
    """
    notes = [ElfNote(paddr, size, f"CPU {cpu} notes") for cpu, paddr, size in cpu_notes]
    if vmcoreinfo is not None:
        notes.append(ElfNote(vmcoreinfo[0], vmcoreinfo[1], "vmcoreinfo"))
    loads = []
    if kernel_text is not None and kernel_text[2]:
        paddr, vaddr, size = kernel_text
        loads.append(ElfLoad(paddr, size, vaddr, "kernel text"))
    for region in crash_ranges:
        if region.type is not MemType.RAM or (region.start == 0 and region.end == 1):
            continue  # kexec-tools' "start == end == 0" marks an unused entry
        start, end = region.start, region.end
        what = f"RAM {start:#x}-{end:#x}"
        offset = None
        if (backup_src is not None and backup_start is not None
                and start == backup_src.start and region.size == backup_src.size):
            offset = backup_start
            what += f" (backup copy at {backup_start:#x})"
        highmem = lowmem_limit is not None and region.range.last > lowmem_limit - 1
        vaddr = None if highmem else start + page_offset
        if highmem:
            what += " (highmem, no vaddr)"
        loads.append(ElfLoad(start, region.size, vaddr, what, offset))
    slots = (nr_cpus + (vmcoreinfo is not None) + len(crash_ranges)
             + (kernel_text is not None and bool(kernel_text[2])))
    if len(notes) + len(loads) > slots:
        raise ElfCoreError(f"{len(notes)} notes + {len(loads)} loads exceed the {slots} headers "
                           f"kexec-tools reserves (more CPUs with notes than nr_cpus?)")
    return build_core_header(elfclass, machine, notes, loads, slots)


def core_class_for(arch: str, crash_ranges: Sequence[MemoryRegion],
                   forced: Optional[int] = None) -> int:
    """The ELF class kexec-tools picks: x86_64 always ELF64; i386 the forced class, else
    ELF64 when there are no ranges or the last one ends above 4 GiB, else ELF32."""
    if arch == "x86_64":
        return ELFCLASS64
    if forced is not None:
        return forced
    if not crash_ranges or crash_ranges[-1].range.last > 0xFFFFFFFF:
        return ELFCLASS64
    return ELFCLASS32


def machine_core_header(machine: "Machine", arch: str, backup_start: Optional[int],
                        elfclass: Optional[int] = None) -> ElfCoreHeader:
    """The elfcorehdr kexec-tools would write for a crash load on `machine`.

    `arch` "x86_64" (ELF64, EM_X86_64, kernel text from kcore, KASLR page offset) or
    "i386" (EM_386, no kernel text, page offset 0xc0000000, lowmem split, ELF32 unless
    `elfclass` or a crash range above 4 GiB says ELF64). `backup_start` is where the
    backup segment was placed (None: no backup segment). Raises MachineError when the
    machine cannot give a needed fact (for example an unreadable /proc/kcore).
    """
    if arch != "x86_64" and lowmem_limit_for(arch) is None:
        raise ElfCoreError(f"unsupported crashdump architecture: {arch}")
    # x86's crash facts of the machine (until the core header takes a CrashElfInfo)
    from pykexec.arch.x86.crashfacts import backup_area, cpu_notes, crash_memory_ranges
    from pykexec.arch.x86.kerneltext import kernel_text
    ranges = crash_memory_ranges(machine, arch)
    cls = core_class_for(arch, ranges, elfclass)
    if arch == "x86_64":
        kt = kernel_text(machine)
        e_machine, page_offset = EM_X86_64, kt.page_offset
        kernel_text = KernelTextLoad(kt.paddr, kt.vaddr, kt.size)
    else:
        e_machine, kernel_text, page_offset = EM_386, None, I386_PAGE_OFFSET
    return crash_core_header(cls, e_machine, machine.nr_cpus_conf, cpu_notes(machine, arch),
                             machine.vmcoreinfo, kernel_text, ranges, page_offset,
                             backup_area(machine, arch), backup_start, lowmem_limit_for(arch))
