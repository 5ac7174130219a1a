"""x86 facts read from the machine (moving to pykexec/arch/x86/): kernel text, EDD, RSDP."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, Optional, Tuple

from pykexec.abi import bootparams as bp
from pykexec.core import crashmem
from pykexec.core.crashmem import I386_PAGE_OFFSET, BackupArea
from pykexec.core.ranges import MemoryRegion, Range, align_down, align_up
from pykexec.machine.cpus import MAX_NOTE_BYTES, CpuNote
from pykexec.machine.reader import EXIT_LOAD_FAILED, MachineError

X86_64_PAGE_OFFSET = 0xFFFF888000000000  # direct map base without KASLR
X86_64_START_KERNEL_MAP = 0xFFFFFFFF80000000
X86_64_KERNEL_TEXT_SIZE = 512 << 20
KERNEL_VADDR_ALIGN = 1 << 20
PAGE_OFFSET_ALIGN = 1 << 30  # KASLR moves the direct map in PUD (1 GiB) steps

@dataclass(frozen=True)
class KernelText:
    """x86_64 kernel text mapping for the elfcorehdr's kernel-text PT_LOAD.

    `paddr` is the `Kernel code` start from /proc/iomem; `vaddr` and `size` come from the
    kcore PT_LOAD holding `_stext` (vaddr rounded down to 1 MiB, size up to a page);
    `page_offset` is the direct-map base (KASLR aware) used for the RAM PT_LOADs.
    """

    paddr: int
    vaddr: int
    size: int
    page_offset: int
    stext: Optional[int] = None  # _stext from kallsyms, None when hidden or missing


@dataclass(frozen=True)
class EddFacts:
    """BIOS Enhanced Disk Drive data from sys/firmware/edd, as boot_params carries it.

    `entries` are `structs.bootparams.EddInfo` field dicts (at most EDD_MAX_ENTRIES),
    `mbr_signatures` the disks' MBR signatures (at most EDD_MBR_SIG_MAX). `problem` says why
    everything was left out (kexec-tools zeroes all EDD data on any unreadable entry).
    """

    entries: Tuple[Dict, ...] = ()
    mbr_signatures: Tuple[int, ...] = ()
    problem: Optional[str] = None


_EDD_EXTENSIONS = (  # extensions file lines (drivers/firmware/edd.c) -> interface_support bits
    ("Fixed disk access", 1 << 0),
    ("Device locking and ejecting", 1 << 1),
    ("Enhanced Disk Drive support", 1 << 2),
    ("64-bit extensions", 1 << 3),
)


def _scan_unsigned(text: str, prefix: str, base: int, bits: int) -> int:
    """scanf "<prefix>%<h|hh><u|x>": blanks, the literal prefix, digits; kept to `bits` bits."""
    digits = "[0-9a-fA-F]+" if base == 16 else "[0-9]+"
    m = re.match(r"\s*" + re.escape(prefix) + "(" + digits + ")", text)
    if not m:
        raise ValueError(f"expected {prefix}{'hex' if base == 16 else 'decimal'} number")
    return int(m.group(1), base) & ((1 << bits) - 1)


# ---------------------------------------------------------------------------------------
# Pure helpers for the kernel text mapping


def kcore_page_offset(loads, default: int = X86_64_PAGE_OFFSET) -> int:
    """The lowest kcore PT_LOAD vaddr rounded down to 1 GiB (the KASLR direct-map base).

    Follows kexec-tools literally: a zero candidate is replaced by the next one, and
    `default` stays when the result is zero.
    """
    lowest = 0
    for load in loads:
        v = load.vaddr & ~(PAGE_OFFSET_ALIGN - 1) & ((1 << 64) - 1)
        if lowest == 0 or lowest > v:
            lowest = v
    return lowest if lowest else default


def kernel_text_mapping(loads, stext: Optional[int], page_size: int = 4096):
    """(vaddr, size) of the kernel text mapping among kcore PT_LOADs, or None.

    The PT_LOAD containing `_stext` when known (non-zero), else the first one inside
    [0xffffffff80000000, +512 MiB); vaddr rounded down to 1 MiB, size to the end of the
    PT_LOAD rounded up to a page.
    """
    def mapping(load):
        vaddr = align_down(load.vaddr, KERNEL_VADDR_ALIGN)
        return vaddr, align_up(load.vaddr + load.memsz - vaddr, page_size)

    if stext:
        for load in loads:
            if load.vaddr <= stext < load.vaddr + load.memsz:
                return mapping(load)
    for load in loads:
        if (load.vaddr >= X86_64_START_KERNEL_MAP
                and load.vaddr + load.memsz <= X86_64_START_KERNEL_MAP + X86_64_KERNEL_TEXT_SIZE):
            return mapping(load)
    return None



class X86Facts:
    """x86 machine facts."""

    def crash_memory_ranges(self, arch: str = "x86_64") -> Tuple[MemoryRegion, ...]:
        """Ranges the dump describes and passes on (crashmem.crash_memory_ranges).

        `arch` "i386" (or i486..i686) splits ranges at the 0x38000000 lowmem limit.
        """
        limit = crashmem.lowmem_limit_for(arch)
        return self.cached(("crash_memory_ranges", limit), lambda: crashmem.crash_memory_ranges(
            ((n.range, n.name) for n in self.iomem.walk()), self.crash_regions, limit))

    def backup_area(self, arch: str = "x86_64") -> BackupArea:
        """The low RAM that purgatory copies away: (start, size); default (0, 0xa0000)."""
        return crashmem.backup_area(self.crash_memory_ranges(arch))

    def cpu_notes(self, arch: str = "x86_64") -> Tuple[CpuNote, ...]:
        """The CPU PT_NOTEs kexec-tools would write for `arch`.

        x86_64: `cpus`. i386 with the legacy sys/kernel/crash_notes: every CPU number below
        nr_cpus_conf at `vaddr + cpu * 1024 - 0xc0000000`, 1024 bytes each.
        """
        legacy = self.legacy_crash_notes if crashmem.lowmem_limit_for(arch) else None
        if legacy is None:
            return self.cpus
        return tuple(CpuNote(cpu, legacy + cpu * MAX_NOTE_BYTES - I386_PAGE_OFFSET, MAX_NOTE_BYTES)
                     for cpu in range(self.nr_cpus_conf))

    @cached_property
    def kernel_code(self) -> Range:
        """The single "Kernel code" /proc/iomem range (the kernel's physical text)."""
        nodes = self.iomem.find("Kernel code")
        if len(nodes) != 1:
            raise MachineError(f"Cannot determine kernel physical load addr: "
                               f"{self.path('proc/iomem')} has {len(nodes)} 'Kernel code' "
                               f"lines, expected exactly one", self.path("proc/iomem"),
                               exit_status=EXIT_LOAD_FAILED)
        return nodes[0].range

    @cached_property
    def page_offset(self) -> int:
        """x86_64 direct-map base: from kcore (KASLR) when readable, else 0xffff888000000000."""
        return kcore_page_offset(self.kcore_loads)

    @cached_property
    def kernel_text(self) -> KernelText:
        """The x86_64 kernel text mapping (kexec-tools 3.6); MachineError when unknown."""
        paddr = self.kernel_code.start
        loads = self.kcore_loads
        try:
            stext = self.symbol("_stext")
        except MachineError:
            stext = None  # kexec-tools carries on without kallsyms (the fixed window below)
        found = kernel_text_mapping(loads, stext)
        if found is None:
            raise MachineError(f"Can't find kernel text map area from kcore "
                               f"({self.path('proc/kcore')})", self.path("proc/kcore"),
                               exit_status=EXIT_LOAD_FAILED)
        vaddr, size = found
        return KernelText(paddr=paddr, vaddr=vaddr, size=size,
                          page_offset=kcore_page_offset(loads), stext=stext or None)

    @cached_property
    def edd(self) -> Optional[EddFacts]:
        """sys/firmware/edd as kexec-tools passes it on, or None when the folder is absent.

        Each int13_devNN folder (NN the BIOS drive number, hex) gives an entry: version;
        when it is not 0 also the legacy geometry, the extensions lines as flag bits and
        raw_data (the first 74 bytes, which must hold the length its first u16 says); and
        its mbr_signature when present. Folders are taken in directory (readdir) order, as
        kexec-tools takes them, so both give the same order on the same folder (sysfs lists
        them in its own hash order, not by drive number). Any unreadable entry, or more
        entries than boot_params holds (no kernel makes that many; kexec-tools would write
        past the table), leaves all EDD data out, as kexec-tools' error path does.
        """
        base = "sys/firmware/edd"
        if not self.is_dir(base):
            return None
        names = [n for n in self.list_dir(base) if n.startswith("int13_dev")]
        try:
            devices = [(_scan_unsigned(n, "int13_dev", 16, 8), n) for n in names]
            if len(devices) > bp.EDD_MAX_ENTRIES:
                raise ValueError(f"{len(devices)} int13_dev entries, more than the "
                                 f"{bp.EDD_MAX_ENTRIES} boot_params holds")
            entries, sigs = [], []
            for device, name in devices:
                entry, sig = self._edd_entry(f"{base}/{name}", device)
                entries.append(entry)
                if sig is not None:
                    sigs.append(sig)
            if len(sigs) > bp.EDD_MBR_SIG_MAX:
                raise ValueError(f"{len(sigs)} MBR signatures, more than {bp.EDD_MBR_SIG_MAX}")
        except (ValueError, MachineError) as e:
            return EddFacts(problem=f"{self.path(base)}: {e}; EDD data left out")
        return EddFacts(tuple(entries), tuple(sigs))

    def _edd_entry(self, rel: str, device: int):
        """(EddInfo dict, MBR signature or None) of one int13_devNN folder."""
        def scan(name, prefix, base, bits):
            text = self.file_text(f"{rel}/{name}")
            if text is None:
                raise ValueError(f"{name} is missing")
            try:
                return _scan_unsigned(text, prefix, base, bits)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None

        sig_text = self.file_text(f"{rel}/mbr_signature")
        sig = None
        if sig_text is not None:
            try:
                sig = _scan_unsigned(sig_text, "0x", 16, 32)
            except ValueError:
                sig = None  # kexec-tools skips a signature it cannot scan
        entry = dict(device=device, version=scan("version", "0x", 16, 8), interface_support=0,
                     legacy_max_cylinder=0, legacy_max_head=0, legacy_sectors_per_track=0,
                     params=bytes(bp.EDD_DEVICE_PARAM_SIZE))
        if entry["version"]:
            entry["legacy_max_cylinder"] = scan("legacy_max_cylinder", "", 10, 16)
            entry["legacy_max_head"] = scan("legacy_max_head", "", 10, 8)
            entry["legacy_sectors_per_track"] = scan("legacy_sectors_per_track", "", 10, 8)
            lines = self.file_text(f"{rel}/extensions")
            if lines is None:
                raise ValueError("extensions is missing")
            for line in lines.splitlines():
                for text, bit in _EDD_EXTENSIONS:
                    if line.startswith(text):
                        entry["interface_support"] |= bit
                        break
            raw = self.file_bytes(f"{rel}/raw_data", bp.EDD_DEVICE_PARAM_SIZE)
            if raw is None:
                raise ValueError("raw_data is missing")
            length = struct.unpack_from("<H", raw.ljust(2, b"\0"))[0]
            if len(raw) < length:
                raise ValueError(f"raw_data says {length} bytes but has {len(raw)}")
            entry["params"] = raw.ljust(bp.EDD_DEVICE_PARAM_SIZE, b"\0")
        return entry, sig

    @cached_property
    def acpi_rsdp(self) -> Optional[int]:
        """The ACPI RSDP: boot_params acpi_rsdp_addr (0x70) else ACPI20=/ACPI= of the EFI systab.

        The systab value must be written 0x... (kexec-tools scans "0x%llx"). None if neither.
        """
        bp = self.boot_params
        if bp is not None and len(bp) >= 0x78:
            value = struct.unpack_from("<Q", bp, 0x70)[0]
            if value:
                return value
        text = self.file_text("sys/firmware/efi/systab")
        for line in (text or "").splitlines():
            if "ACPI20=" in line or "ACPI=" in line:
                m = re.match(r"0x([0-9A-Fa-f]+)", line.split("=", 1)[1])
                value = int(m.group(1), 16) if m else 0
                return value or None
        return None
