"""VMCOREINFO: the kernel's KEY=VALUE note that tells a reader where things are.

The kernel writes SYMBOL(name)=hex address, OFFSET(struct.member)=decimal,
SIZE(name)=decimal, LENGTH(name)=decimal, NUMBER(name)=decimal (may be negative),
KERNELOFFSET=hex, CRASHTIME=decimal seconds, OSRELEASE, PAGESIZE, BUILD-ID. A key written
twice keeps its last value (as kexec-tools' scan does); the last line may lack its newline.
"""

from __future__ import annotations

from typing import Dict, Iterator, Mapping, Optional


class VmcoreInfo(Mapping):
    """The keys of one VMCOREINFO note, with typed look-ups that return None when absent."""

    def __init__(self, raw: bytes):
        self.raw = bytes(raw)
        self._values: Dict[str, str] = {}
        for line in self.raw.split(b"\n"):
            line = line.rstrip(b"\0")
            key, eq, value = line.partition(b"=")
            if eq and key:
                self._values[key.decode("latin-1")] = value.decode("latin-1")

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def _int(self, key: str, base: int) -> Optional[int]:
        value = self._values.get(key)
        if value is None:
            return None
        try:
            return int(value.strip(), base)
        except ValueError:
            return None

    def symbol(self, name: str) -> Optional[int]:
        """SYMBOL(name): a kernel virtual address."""
        return self._int(f"SYMBOL({name})", 16)

    def offset(self, struct: str, member: str) -> Optional[int]:
        """OFFSET(struct.member) in bytes."""
        return self._int(f"OFFSET({struct}.{member})", 10)

    def size(self, name: str) -> Optional[int]:
        """SIZE(name): sizeof a structure or type."""
        return self._int(f"SIZE({name})", 10)

    def length(self, name: str) -> Optional[int]:
        """LENGTH(name): elements of an array."""
        return self._int(f"LENGTH({name})", 10)

    def number(self, name: str) -> Optional[int]:
        """NUMBER(name): a constant (decimal, may be negative; hex accepted as written)."""
        value = self._int(f"NUMBER({name})", 10)
        return value if value is not None else self._int(f"NUMBER({name})", 16)

    @property
    def osrelease(self) -> Optional[str]:
        return self._values.get("OSRELEASE")

    @property
    def page_size(self) -> Optional[int]:
        return self._int("PAGESIZE", 10)

    @property
    def crash_time(self) -> Optional[int]:
        """Seconds since the epoch when the kernel crashed (CRASHTIME), if recorded."""
        return self._int("CRASHTIME", 10)

    @property
    def kernel_offset(self) -> Optional[int]:
        """KASLR's shift of the kernel image (KERNELOFFSET, hex)."""
        return self._int("KERNELOFFSET", 16)

    def config(self, name: str) -> bool:
        """CONFIG_name=y was written (an architecture reader asks for its page-table mode)."""
        return self._values.get(f"CONFIG_{name}") == "y"
