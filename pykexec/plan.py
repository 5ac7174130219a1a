"""The plan: an immutable description of one kexec load, and its folder format.

See docs/plan-format.md. A plan is what a load would hand to the kernel; it is built
without root and without a syscall, so it can be shown, saved, compared and tested.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Optional, Tuple

PLAN_FORMAT = 1
PAGE_SIZE = 4096

SEGMENT_KINDS = (
    "kernel", "initrd", "boot_params", "purgatory", "elfcorehdr", "backup",
    "setup_data", "elf_load", "param_block", "unknown",
)
SYSCALLS = ("kexec_load", "kexec_file_load")


@dataclass(frozen=True)
class Segment:
    """One kexec segment: `data` copied to physical `mem`, zero-filled up to `memsz`."""

    mem: Optional[int]
    memsz: int
    data: bytes
    kind: str = "unknown"
    source: str = ""

    def __post_init__(self):
        if self.kind not in SEGMENT_KINDS:
            raise ValueError(f"unknown segment kind {self.kind!r}")
        if self.mem is not None and len(self.data) > self.memsz:
            raise ValueError(f"segment at {self.mem:#x}: bufsz {len(self.data):#x} > memsz {self.memsz:#x}")

    @property
    def bufsz(self) -> int:
        return len(self.data)

    @property
    def end(self) -> int:
        """First address after the segment (half-open)."""
        return self.mem + self.memsz

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def contains(self, addr: int) -> bool:
        return self.mem is not None and self.mem <= addr < self.mem + self.memsz

    def read(self, addr: int, size: int) -> bytes:
        """Bytes at physical `addr` as the kernel would leave them (zero past bufsz)."""
        off = addr - self.mem
        if off < 0 or off + size > self.memsz:
            raise ValueError(f"{addr:#x}+{size:#x} outside segment {self.mem:#x}+{self.memsz:#x}")
        chunk = self.data[off:off + size]
        return chunk + bytes(size - len(chunk))


@dataclass(frozen=True)
class Plan:
    arch: str
    syscall: str
    flags: int
    entry: Optional[int]
    cmdline: Optional[str]
    segments: Tuple[Segment, ...]
    notes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.syscall not in SYSCALLS:
            raise ValueError(f"unknown syscall {self.syscall!r}")
        object.__setattr__(self, "segments", tuple(self.segments))
        object.__setattr__(self, "notes", MappingProxyType(dict(self.notes)))

    def segment_at(self, addr: int) -> Optional[Segment]:
        for seg in self.segments:
            if seg.contains(addr):
                return seg
        return None

    def read_phys(self, addr: int, size: int) -> bytes:
        seg = self.segment_at(addr)
        if seg is None:
            raise ValueError(f"no segment holds physical address {addr:#x}")
        return seg.read(addr, size)

    def segments_of(self, kind: str) -> Tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.kind == kind)

    def with_segments(self, segments: Iterable[Segment]) -> "Plan":
        return replace(self, segments=tuple(segments))


def save_plan(plan: Plan, folder: str) -> None:
    """Write `plan` as plan.json + segment-NN.bin into `folder` (created if needed)."""
    import json  # plan folders only: a load imports this module but writes none
    os.makedirs(folder, exist_ok=True)
    segs = []
    for i, seg in enumerate(plan.segments):
        name = f"segment-{i:02d}.bin"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(seg.data)
        segs.append({
            "index": i, "kind": seg.kind, "mem": seg.mem, "memsz": seg.memsz,
            "bufsz": seg.bufsz, "sha256": seg.sha256, "file": name, "source": seg.source,
        })
    doc = {
        "format": PLAN_FORMAT, "arch": plan.arch, "syscall": plan.syscall,
        "flags": plan.flags, "entry": plan.entry, "cmdline": plan.cmdline,
        "segments": segs, "notes": dict(plan.notes),
    }
    with open(os.path.join(folder, "plan.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")


class PlanFormatError(ValueError):
    pass


def load_plan(folder: str) -> Plan:
    """Read a plan folder; checks sizes and digests against plan.json."""
    import json
    path = os.path.join(folder, "plan.json")
    with open(path) as f:
        doc = json.load(f)
    if doc.get("format") != PLAN_FORMAT:
        raise PlanFormatError(f"{path}: unsupported plan format {doc.get('format')!r}")
    segs = []
    for s in doc["segments"]:
        with open(os.path.join(folder, s["file"]), "rb") as f:
            data = f.read()
        if len(data) != s["bufsz"]:
            raise PlanFormatError(f"{path}: {s['file']} has {len(data)} bytes, plan says {s['bufsz']}")
        if hashlib.sha256(data).hexdigest() != s["sha256"]:
            raise PlanFormatError(f"{path}: {s['file']} does not match its sha256")
        segs.append(Segment(mem=s["mem"], memsz=s["memsz"], data=data,
                            kind=s.get("kind", "unknown"), source=s.get("source", "")))
    return Plan(arch=doc["arch"], syscall=doc["syscall"], flags=doc["flags"], entry=doc["entry"],
                cmdline=doc["cmdline"], segments=tuple(segs), notes=doc.get("notes", {}))
