"""x86 firmware facts a new kernel is given in boot_params: the BIOS EDD disk table
(sys/firmware/edd) and the ACPI RSDP (the running boot_params, else the EFI systab).

Functions of a `Machine`, which reads the files; each result is kept in its cache.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from pykexec.abi.fields import field_offset
from pykexec.arch.x86 import bootparams as bp
from pykexec.machine import Machine, MachineError


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


def edd(machine: Machine) -> Optional[EddFacts]:
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
    return machine.cached("x86 edd", lambda: _read_edd(machine))


def _read_edd(machine: Machine) -> Optional[EddFacts]:
    base = "sys/firmware/edd"
    if not machine.is_dir(base):
        return None
    names = [n for n in machine.list_dir(base) if n.startswith("int13_dev")]
    try:
        devices = [(_scan_unsigned(n, "int13_dev", 16, 8), n) for n in names]
        if len(devices) > bp.EDD_MAX_ENTRIES:
            raise ValueError(f"{len(devices)} int13_dev entries, more than the "
                             f"{bp.EDD_MAX_ENTRIES} boot_params holds")
        entries, sigs = [], []
        for device, name in devices:
            entry, sig = _edd_entry(machine, f"{base}/{name}", device)
            entries.append(entry)
            if sig is not None:
                sigs.append(sig)
        if len(sigs) > bp.EDD_MBR_SIG_MAX:
            raise ValueError(f"{len(sigs)} MBR signatures, more than {bp.EDD_MBR_SIG_MAX}")
    except (ValueError, MachineError) as e:
        return EddFacts(problem=f"{machine.path(base)}: {e}; EDD data left out")
    return EddFacts(tuple(entries), tuple(sigs))


def _edd_entry(machine: Machine, rel: str, device: int):
    """(EddInfo dict, MBR signature or None) of one int13_devNN folder."""
    def scan(name, prefix, base, bits):
        text = machine.file_text(f"{rel}/{name}")
        if text is None:
            raise ValueError(f"{name} is missing")
        try:
            return _scan_unsigned(text, prefix, base, bits)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None

    sig_text = machine.file_text(f"{rel}/mbr_signature")
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
        lines = machine.file_text(f"{rel}/extensions")
        if lines is None:
            raise ValueError("extensions is missing")
        for line in lines.splitlines():
            for text, bit in _EDD_EXTENSIONS:
                if line.startswith(text):
                    entry["interface_support"] |= bit
                    break
        raw = machine.file_bytes(f"{rel}/raw_data", bp.EDD_DEVICE_PARAM_SIZE)
        if raw is None:
            raise ValueError("raw_data is missing")
        length = struct.unpack_from("<H", raw.ljust(2, b"\0"))[0]
        if len(raw) < length:
            raise ValueError(f"raw_data says {length} bytes but has {len(raw)}")
        entry["params"] = raw.ljust(bp.EDD_DEVICE_PARAM_SIZE, b"\0")
    return entry, sig


def acpi_rsdp(machine: Machine) -> Optional[int]:
    """The ACPI RSDP: boot_params acpi_rsdp_addr (0x70) else ACPI20=/ACPI= of the EFI systab.

    The systab value must be written 0x... (kexec-tools scans "0x%llx"). None if neither.
    """
    params = machine.boot_params
    offset = field_offset(bp.BootParams, "acpi_rsdp_addr")   # a u64
    if params is not None and len(params) >= offset + 8:
        value = int.from_bytes(params[offset:offset + 8], "little")
        if value:
            return value
    text = machine.file_text("sys/firmware/efi/systab")
    for line in (text or "").splitlines():
        if "ACPI20=" in line or "ACPI=" in line:
            m = re.match(r"0x([0-9A-Fa-f]+)", line.split("=", 1)[1])
            value = int(m.group(1), 16) if m else 0
            return value or None
    return None
