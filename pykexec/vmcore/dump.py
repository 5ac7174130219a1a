"""An ELF vmcore (ELF32 or ELF64) opened for reading: /proc/vmcore or a saved file.

    with Vmcore.open(path) as dump:
        dump.loads                      # [Load(index, paddr, vaddr, offset, filesz, memsz)]
        dump.notes                      # [Note(name, type, desc, offset)]
        dump.cpus                       # [CpuRegisters(pid, regs, pc, sp)] one per NT_PRSTATUS
        dump.vmcoreinfo                 # VmcoreInfo or None (SYMBOL/OFFSET/SIZE/NUMBER/LENGTH)
        dump.read_phys(paddr, size)     # bytes-like (a memoryview into the mmap when it can)
        dump.iter_phys(paddr, size)     # the same in bounded chunks
        dump.kvtop(vaddr)               # kernel virtual -> physical (or None)
        dump.read_virt(vaddr, size)     # kernel virtual read, page by page
        dump.read_ulong(vaddr) / read_u32 / read_u64 / read_u16
        dump.missing()                  # [(Load, bytes absent)]: PT_LOADs cut by the file's end

Headers are parsed with pykexec.abi.elf (the declarations pykexec also writes core
headers with). Every problem raises VmcoreError whose message names the file: not ELF,
a foreign class or byte order, not ET_CORE, program headers or notes past the end of the
file, a note that lies about its size, a physical address no PT_LOAD holds, or bytes a
PT_LOAD promises that the file (truncated) does not have. Opening never reads memory; a
regular file is mmapped (zero copy), anything else (/proc/vmcore without mmap, a 4 GiB
file on a 32-bit Python) is read with pread.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from typing import Iterator, List, NamedTuple, Optional, Tuple

from pykexec.abi.elf import (ELF_MAGIC, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ET_CORE,
                                 NT_PRSTATUS, PT_LOAD, PT_NOTE, elf_structs)
from pykexec.vmcore.arch import CpuRegisters, DumpReader, arch_for
from pykexec.vmcore.error import VmcoreError
from pykexec.vmcore.notes import Note, iter_segment_notes
from pykexec.vmcore.vmcoreinfo import VmcoreInfo

DEFAULT_VMCORE = "/proc/vmcore"
CHUNK = 4 << 20                      # iter_phys's piece size: memory stays bounded
MAX_NOTE_BYTES = 64 << 20            # notes are KiB; more is a corrupt header
ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}


class Load(NamedTuple):
    index: int                       # position among the program headers
    paddr: int
    vaddr: int
    offset: int
    filesz: int
    memsz: int

    @property
    def end(self) -> int:
        return self.paddr + self.memsz


class Vmcore:
    """One opened vmcore. Use `Vmcore.open(path)`; close it (or use `with`)."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self._fd = fd
        self._map: Optional[mmap.mmap] = None
        self.file_size = os.fstat(fd).st_size
        if self.file_size == 0 and path.startswith("/proc/"):
            self.file_size = os.lseek(fd, 0, os.SEEK_END)
        try:
            if self.file_size:
                self._map = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
                self.file_size = len(self._map)
        except (OSError, ValueError, OverflowError):
            self._map = None
        self._parse_headers()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str = DEFAULT_VMCORE) -> "Vmcore":
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise VmcoreError(f"{path}: {e.strerror or e}") from None
        try:
            return cls(path, fd)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:     # a caller still holds a memoryview; the GC closes it
                pass
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Vmcore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def error(self, problem: str) -> VmcoreError:
        return VmcoreError(f"{self.path}: {problem}")

    def _file(self, offset: int, size: int) -> bytes:
        """File bytes [offset, offset+size): all of them, or VmcoreError."""
        if offset < 0 or size < 0 or offset + size > self.file_size:
            raise self.error(f"needs file bytes {offset:#x}-{offset + size:#x}, past the end "
                             f"of the file ({self.file_size:#x} bytes): truncated")
        if self._map is not None:
            return memoryview(self._map)[offset:offset + size]
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise self.error(f"short read at file offset {offset:#x}: truncated")
        return data

    def _parse_headers(self) -> None:
        ident = bytes(self._file(0, min(16, self.file_size)))
        if not ident:
            raise self.error("empty file: not a vmcore")
        if len(ident) < 16 or ident[:4] != ELF_MAGIC:
            raise self.error("not an ELF file (no \\x7fELF magic): not a vmcore"
                             if ident[:4] != ELF_MAGIC else "truncated ELF header")
        if ident[4] not in (ELFCLASS32, ELFCLASS64):
            raise self.error(f"unknown ELF class {ident[4]} (1 is ELF32, 2 is ELF64)")
        if ident[5] != ELFDATA2LSB:
            raise self.error(f"ELF byte order {ident[5]} is not little endian: not supported")
        s = elf_structs(ident[4])
        self.elfclass = 64 if ident[4] == ELFCLASS64 else 32
        if self.file_size < s.ehdr_size:
            raise self.error(f"truncated ELF{self.elfclass} header ({self.file_size} bytes)")
        ehdr = s.Ehdr.parse(bytes(self._file(0, s.ehdr_size)))
        self.ehdr = ehdr
        self.machine = ehdr.e_machine
        if ehdr.e_type != ET_CORE:
            raise self.error(f"ELF type {ET_NAMES.get(ehdr.e_type, ehdr.e_type)}, not a core "
                             f"file (ET_CORE): not a vmcore")
        if ehdr.e_phnum == 0:
            raise self.error("core file without program headers")
        if ehdr.e_phentsize != s.phdr_size:
            raise self.error(f"program header size {ehdr.e_phentsize}, ELF{self.elfclass} "
                             f"needs {s.phdr_size}")
        table = ehdr.e_phnum * s.phdr_size
        if ehdr.e_phoff + table > self.file_size:
            raise self.error(f"program headers end at {ehdr.e_phoff + table:#x}, past the "
                             f"end of the file ({self.file_size:#x} bytes): truncated")
        raw = bytes(self._file(ehdr.e_phoff, table))
        self.phdrs = [s.Phdr.parse(raw[i * s.phdr_size:(i + 1) * s.phdr_size])
                      for i in range(ehdr.e_phnum)]
        loads = [Load(i, p.p_paddr, p.p_vaddr, p.p_offset, p.p_filesz, p.p_memsz)
                 for i, p in enumerate(self.phdrs) if p.p_type == PT_LOAD]
        for load in loads:
            if load.filesz > load.memsz:
                raise self.error(f"PT_LOAD {load.index} has p_filesz {load.filesz:#x} larger "
                                 f"than p_memsz {load.memsz:#x}")
        self.loads: List[Load] = sorted(loads, key=lambda ld: ld.paddr)
        self._starts = [ld.paddr for ld in self.loads]
        self.notes: List[Note] = []
        for i, p in enumerate(self.phdrs):
            if p.p_type != PT_NOTE:
                continue
            if p.p_filesz > MAX_NOTE_BYTES:
                raise self.error(f"PT_NOTE {i} claims {p.p_filesz} bytes of notes: corrupt")
            if p.p_offset + p.p_filesz > self.file_size:
                raise self.error(f"PT_NOTE {i} ends at {p.p_offset + p.p_filesz:#x}, past the "
                                 f"end of the file ({self.file_size:#x} bytes): truncated")
            try:
                self.notes.extend(iter_segment_notes(bytes(self._file(p.p_offset, p.p_filesz)),
                                                     p.p_offset))
            except ValueError as e:
                raise self.error(f"PT_NOTE {i}: {e}") from None
        infos = [n for n in self.notes if n.name == "VMCOREINFO"]
        self.vmcoreinfo: Optional[VmcoreInfo] = VmcoreInfo(infos[-1].desc) if infos else None
        self.arch: DumpReader = arch_for(self.machine)(self)
        self.cpus: List[CpuRegisters] = []
        for note in self.notes:
            if note.name == "CORE" and note.type == NT_PRSTATUS:
                try:
                    regs = self.arch.prstatus(note.desc)
                except ValueError as e:
                    raise self.error(f"NT_PRSTATUS at {note.offset:#x}: {e}") from None
                self.cpus.append(regs if regs is not None else CpuRegisters(0, {}, None, None))

    # -- physical memory -----------------------------------------------------------------

    @property
    def pointer_size(self) -> int:
        return self.arch.pointer_size

    def find_load(self, paddr: int) -> Optional[Load]:
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i >= 0 and paddr < self.loads[i].end:
            return self.loads[i]
        for load in self.loads[:max(i, 0)]:   # overlapping PT_LOADs (kernel text inside RAM)
            if load.paddr <= paddr < load.end:
                return load
        return None

    def read_phys(self, paddr: int, size: int):
        """`size` bytes of the old kernel's memory at `paddr` (zeros past a PT_LOAD's
        p_filesz, as ELF says); a memoryview into the file when one PT_LOAD holds them."""
        parts = []
        at, left = paddr, size
        while left > 0:
            load = self.find_load(at)
            if load is None:
                raise self.error(f"physical address {at:#x} is not in the dump (no PT_LOAD "
                                 f"holds it)")
            take = min(left, load.end - at)
            rel = at - load.paddr
            in_file = max(0, min(take, load.filesz - rel))
            if in_file:
                if load.offset + rel + in_file > self.file_size:
                    raise self.error(f"PT_LOAD {load.index} ({load.paddr:#x}-{load.end:#x}) "
                                     f"ends at file offset {load.offset + load.filesz:#x}, past "
                                     f"the end of the file ({self.file_size:#x} bytes): "
                                     f"truncated dump")
                parts.append(self._file(load.offset + rel, in_file))
            if take > in_file:
                parts.append(bytes(take - in_file))
            at += take
            left -= take
        if len(parts) == 1:
            return parts[0]
        return b"".join(bytes(p) for p in parts)

    def iter_phys(self, paddr: int, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
        """read_phys in pieces of at most `chunk` bytes."""
        end = paddr + size
        while paddr < end:
            n = min(chunk, end - paddr)
            yield self.read_phys(paddr, n)
            paddr += n

    def missing(self) -> List[Tuple[Load, int]]:
        """PT_LOADs whose file bytes are not all in the file, with how many bytes are absent."""
        out = []
        for load in self.loads:
            short = load.offset + load.filesz - self.file_size
            if load.filesz and short > 0:
                out.append((load, min(short, load.filesz)))
        return out

    # -- kernel virtual memory -----------------------------------------------------------

    def load_vaddr_to_paddr(self, vaddr: int) -> Optional[int]:
        """Through the PT_LOADs' p_vaddr (the only translation kexec-tools makes)."""
        for load in self.loads:
            if load.vaddr <= vaddr < load.vaddr + load.memsz:
                return load.paddr + vaddr - load.vaddr
        return None

    def kvtop(self, vaddr: int) -> Optional[int]:
        return self.arch.kvtop(vaddr)

    def read_virt(self, vaddr: int, size: int) -> bytes:
        """`size` bytes at kernel virtual `vaddr`, translated page by page."""
        page = 4096
        if self.vmcoreinfo and self.vmcoreinfo.page_size:
            page = self.vmcoreinfo.page_size
        parts = []
        at, left = vaddr, size
        while left > 0:
            take = min(left, page - (at % page))
            paddr = self.kvtop(at)
            if paddr is None:
                raise self.error(f"kernel address {at:#x} is not mapped in the dump")
            parts.append(self.read_phys(paddr, take))
            at += take
            left -= take
        if len(parts) == 1:
            return parts[0]
        return b"".join(bytes(p) for p in parts)

    def _unpack(self, fmt: str, vaddr: int) -> int:
        return struct.unpack(fmt, self.read_virt(vaddr, struct.calcsize(fmt)))[0]

    def read_u16(self, vaddr: int) -> int:
        return self._unpack("<H", vaddr)

    def read_u32(self, vaddr: int) -> int:
        return self._unpack("<I", vaddr)

    def read_u64(self, vaddr: int) -> int:
        return self._unpack("<Q", vaddr)

    def read_ulong(self, vaddr: int) -> int:
        return self._unpack("<Q" if self.pointer_size == 8 else "<I", vaddr)

    # -- VMCOREINFO shortcuts that raise ------------------------------------------------

    def need_info(self) -> VmcoreInfo:
        if self.vmcoreinfo is None:
            raise self.error("no VMCOREINFO note (the kernel's description of its layout)")
        return self.vmcoreinfo

    def need(self, kind: str, name: str) -> int:
        """VMCOREINFO value `kind(name)` (kind: symbol, size, length, number; for offset
        pass "struct.member"), or VmcoreError naming the missing key."""
        info = self.need_info()
        if kind == "offset":
            struct_name, _, member = name.partition(".")
            value = info.offset(struct_name, member)
        else:
            value = getattr(info, kind)(name)
        if value is None:
            raise self.error(f"VMCOREINFO has no {kind.upper()}({name})")
        return value
