"""The plan: an immutable description of one kexec load, and its folder format.

See docs/plan-format.md. A plan is what a load would hand to the kernel; it is built
without root and without a syscall, so it can be shown, saved, compared and tested.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Optional, Tuple

from pykexec.errors import PykexecError
from pykexec.core import files

PLAN_FORMAT = 1
PAGE_SIZE = 4096

SEGMENT_KINDS = (
    "kernel", "initrd", "boot_params", "purgatory", "elfcorehdr", "backup",
    "setup_data", "elf_load", "param_block", "dtb", "unknown",
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

    @cached_property
    def sha256(self) -> str:
        # cached: the dry-run listing and the plan facts both show it; one pass over the data
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


SEGMENT_FILE = re.compile(r"segment-[0-9]{2,}\.bin")
PLAN_JSON = "plan.json"
# A segment file larger than this is not one a kernel could take (kexec_file_load's limit).
SEGMENT_FILE_MAX = 4 << 30


class PlanFormatError(PykexecError, ValueError):
    """A plan folder cannot be read: one line naming the file and the problem."""


class PlanSaveError(PykexecError, OSError):
    """A plan folder cannot be written: one line naming the folder and the problem."""


def _owned(name: str) -> bool:
    """The files a plan folder consists of (what save_plan may replace)."""
    return name == PLAN_JSON or SEGMENT_FILE.fullmatch(name) is not None


def save_plan(plan: Plan, folder: str) -> None:
    """Write `plan` as plan.json + segment-NN.bin into `folder`, all or nothing.

    The files are written into a new sibling folder which then takes the place of
    `folder`, so an older plan's segment files never linger and a failed write (a full
    disk) leaves the old folder as it was and no half-written one. An existing folder
    holding anything but a plan's files is refused rather than replaced.
    """
    import shutil  # plan folders only: a load imports this module but writes none
    import tempfile
    folder = os.path.normpath(folder)
    parent = os.path.dirname(os.path.abspath(folder))
    old = None
    if os.path.lexists(folder):
        if not os.path.isdir(folder) or os.path.islink(folder):
            raise PlanSaveError(errno.EEXIST, "exists and is not a plan folder", folder)
        foreign = sorted(n for n in os.listdir(folder) if not _owned(n))
        if foreign:
            raise PlanSaveError(errno.EEXIST, "holds files that are not a plan's ("
                                + ", ".join(foreign[:3]) + "); choose a new or empty folder",
                                folder)
        old = folder
    try:
        tmp = tempfile.mkdtemp(prefix="." + os.path.basename(folder) + ".", suffix=".tmp",
                               dir=parent)
    except OSError as err:
        raise PlanSaveError(err.errno, err.strerror, parent) from None
    try:
        _write_plan_files(plan, tmp)
        if old is not None:
            trash = tmp + ".old"
            try:
                os.rename(old, trash)
            except OSError as err:
                if err.errno not in (errno.EBUSY, errno.EINVAL):
                    raise
                # the folder cannot move (a mount point, the current directory): replace
                # exactly the files an older plan left, then move the new ones in
                _replace_files(old, tmp)
                return
            os.rename(tmp, folder)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, folder)
        # mkdtemp makes 0700 folders; a plan folder is as readable as a file would be
        os.chmod(folder, 0o777 & ~_umask())
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PlanSaveError(err.errno, err.strerror, folder) from None


def _replace_files(folder: str, new: str) -> None:
    for name in os.listdir(folder):
        if _owned(name):
            os.remove(os.path.join(folder, name))
    names = sorted(os.listdir(new), key=lambda n: n == PLAN_JSON)   # plan.json last
    for name in names:
        os.rename(os.path.join(new, name), os.path.join(folder, name))
    os.rmdir(new)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_plan_files(plan: Plan, folder: str) -> None:
    import json  # plan folders only: a load imports this module but writes none
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
    with open(os.path.join(folder, PLAN_JSON), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")


def read_regular(path: str, limit: int, what: str = "a file may have") -> bytes:
    """The bytes of the regular file `path` (at most `limit`), or PlanFormatError.

    Opened without following a final symlink and without blocking (a FIFO would wait for
    a writer); anything but a regular file is refused before a byte is read (core.files).
    """
    try:
        return files.read_regular(path, files.ReadPolicy(limit, step=1 << 24,
                                                         follow_symlinks=False))
    except files.NotRegularFile as err:
        raise PlanFormatError(f"{path}: not a regular file ({err.kind})") from None
    except files.FileTooLarge as err:
        raise PlanFormatError(f"{path}: {err.size} bytes, more than {what} ({limit})") from None
    except OSError as err:
        why = "a symbolic link (refused)" if err.errno == errno.ELOOP else err.strerror
        raise PlanFormatError(f"{path}: {why}") from None


def _field(where: str, obj: Mapping, key: str, types, optional: bool = False):
    if key not in obj:
        if optional:
            return None
        raise PlanFormatError(f"{where}: no {key!r}")
    value = obj[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise PlanFormatError(f"{where}: {key!r} is {type(value).__name__} {value!r:.40}, "
                              f"not {want}")
    if isinstance(value, int) and not 0 <= value < 1 << 64:
        raise PlanFormatError(f"{where}: {key!r} = {value} is not a 64-bit address or size")
    return value


def load_plan(folder: str) -> Plan:
    """Read a plan folder; checks its shape, and sizes and digests against plan.json.

    A segment "file" must be a plain name inside the folder (never a path or a symbolic
    link out of it) and is read only up to the size plan.json gives it.
    """
    import json  # plan folders only: a load imports this module but reads none
    path = os.path.join(folder, PLAN_JSON)
    text = read_regular(path, 64 << 20, "a plan.json may have")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise PlanFormatError(f"{path}: not JSON ({' '.join(str(err).split())})") from None
    if not isinstance(doc, dict):
        raise PlanFormatError(f"{path}: a JSON {type(doc).__name__}, not an object")
    if doc.get("format") != PLAN_FORMAT:
        raise PlanFormatError(f"{path}: unsupported plan format {doc.get('format')!r:.40}")
    arch = _field(path, doc, "arch", str)
    syscall = _field(path, doc, "syscall", str)
    if syscall not in SYSCALLS:
        raise PlanFormatError(f"{path}: unknown syscall {syscall!r:.40}")
    flags = _field(path, doc, "flags", int)
    entry = _field(path, doc, "entry", int, optional=True)
    cmdline = _field(path, doc, "cmdline", str, optional=True)
    notes = _field(path, doc, "notes", dict, optional=True) or {}
    entries = _field(path, doc, "segments", list)
    segs = []
    for i, s in enumerate(entries):
        where = f"{path}: segment {i}"
        if not isinstance(s, dict):
            raise PlanFormatError(f"{where}: a JSON {type(s).__name__}, not an object")
        name = _field(where, s, "file", str)
        if os.path.basename(name) != name or name in ("", ".", "..") or "\0" in name:
            raise PlanFormatError(f"{where}: file {name!r:.60} is not a name inside the plan "
                                  "folder (refused, not read)")
        mem = _field(where, s, "mem", int, optional=syscall == "kexec_file_load")
        memsz = _field(where, s, "memsz", int)
        bufsz = _field(where, s, "bufsz", int)
        digest = _field(where, s, "sha256", str)
        kind = _field(where, s, "kind", str, optional=True) or "unknown"
        if kind not in SEGMENT_KINDS:
            raise PlanFormatError(f"{where}: unknown kind {kind!r:.40}")
        if mem is not None and bufsz > memsz:
            raise PlanFormatError(f"{where}: bufsz {bufsz:#x} > memsz {memsz:#x}")
        if mem is not None and mem + memsz > 1 << 64:
            raise PlanFormatError(f"{where}: {mem:#x} + {memsz:#x} runs past 64 bits")
        seg_path = os.path.join(folder, name)
        data = read_regular(seg_path, min(bufsz, SEGMENT_FILE_MAX),
                            "plan.json gives it (bufsz)" if bufsz <= SEGMENT_FILE_MAX
                            else "a segment may have")
        if len(data) != bufsz:
            raise PlanFormatError(f"{seg_path}: {len(data)} bytes, plan.json says {bufsz}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise PlanFormatError(f"{seg_path}: does not match its sha256 in plan.json")
        segs.append(Segment(mem=mem, memsz=memsz, data=data, kind=kind,
                            source=str(s.get("source", ""))))
    return Plan(arch=arch, syscall=syscall, flags=flags, entry=entry, cmdline=cmdline,
                segments=tuple(segs), notes=notes)
