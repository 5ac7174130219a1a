"""Firmware facts: the EFI runtime map and system table, the running boot_params bytes, the
flattened device tree the kernel booted with."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional, Tuple

from pykexec.machine.reader import MachineError, parse_hex

@dataclass(frozen=True)
class EfiRuntimeMapEntry:
    """One sys/firmware/efi/runtime-map/N entry (an EFI memory descriptor)."""

    index: int
    type: int
    phys_addr: int
    virt_addr: int
    num_pages: int
    attribute: int


@dataclass(frozen=True)
class EfiFacts:
    """What sys/firmware/efi says. `present` is False on BIOS machines.

    `runtime_map_dir` is kexec-tools' test for leaving out `acpi_rsdp=` (the directory
    opens); `runtime_map` lists its entries in numeric order (kexec-tools uses readdir
    order, which on sysfs is not guaranteed to be numeric).
    """

    present: bool
    systab: Tuple[Tuple[str, int], ...] = ()
    fw_vendor: Optional[int] = None
    runtime: Optional[int] = None
    config_table: Optional[int] = None
    runtime_map_dir: bool = False
    runtime_map: Tuple[EfiRuntimeMapEntry, ...] = ()

    @property
    def has_runtime_map(self) -> bool:
        """runtime-map lists entries (what passing EFI data to the capture kernel needs)."""
        return bool(self.runtime_map)

    def systab_value(self, key: str) -> Optional[int]:
        for k, v in self.systab:
            if k == key:
                return v
        return None



class FirmwareFacts:
    """Machine facts from sys/firmware and sys/kernel/boot_params."""

    @cached_property
    def boot_params(self) -> Optional[bytes]:
        """The running kernel's boot_params (4096 bytes), or None when not exported."""
        return self.file_bytes("sys/kernel/boot_params/data")

    @cached_property
    def flattened_device_tree(self) -> Optional[bytes]:
        """The device tree the running kernel booted with (sys/firmware/fdt: the DTB as the
        boot loader or firmware passed it, with the kernel's own later changes such as a
        wiped seed), or None on a machine booted without one. Bytes as read: the
        architecture that uses it parses it."""
        return self.file_bytes("sys/firmware/fdt")

    @cached_property
    def efi(self) -> EfiFacts:
        base = "sys/firmware/efi"
        if not self.is_dir(base):
            return EfiFacts(present=False)
        systab = []
        for line in (self.file_text(f"{base}/systab") or "").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                try:
                    systab.append((key.strip(), parse_hex(value)))
                except ValueError:
                    pass
        hexval = lambda name: self.file_value(f"{base}/{name}", parse_hex, "a hex number")
        entries = []
        for name in self.list_dir(f"{base}/runtime-map"):
            rel = f"{base}/runtime-map/{name}"
            if not name.isdigit():
                continue
            fields = {}
            for field in ("type", "phys_addr", "virt_addr", "num_pages", "attribute"):
                value = self.file_value(f"{rel}/{field}", parse_hex, "a hex number")
                if value is None:
                    raise MachineError(f"Cannot read {self.path(rel + '/' + field)}: No such "
                                       f"file or directory", self.path(rel))
                fields[field] = value
            entries.append(EfiRuntimeMapEntry(index=int(name), **fields))
        return EfiFacts(present=True, systab=tuple(systab), fw_vendor=hexval("fw_vendor"),
                        runtime=hexval("runtime"), config_table=hexval("config_table"),
                        runtime_map_dir=self.is_dir(f"{base}/runtime-map"),
                        runtime_map=tuple(sorted(entries, key=lambda e: e.index)))
