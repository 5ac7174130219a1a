"""Take a machine snapshot: the files a kexec loader reads, copied from a live machine.

`take_snapshot(dest, root="/")` writes the layout of docs/snapshot-format.md into `dest`:
the listed /proc and /sys files byte-exact, /proc/kallsyms filtered to the symbols a
loader needs, /proc/kcore cut after its program headers and notes, the firmware memory map, the
per-CPU crash notes, EFI and EDD data and the device tree when present, and snapshot.json.

`root` is the machine's root folder ("/" for the running machine; any folder with the same
layout otherwise, which is how the unit tests run). A file that is absent is left out,
as the format asks (a loader then behaves as on a machine without it), except for
/proc/iomem and /proc/cmdline, without which the folder is not a machine at all. A file
that exists but cannot be read raises `SnapshotError` with one line naming it.

Reading /proc/kcore, /proc/iomem's real addresses, kallsyms' real addresses and the
crash_notes needs root on a live machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from typing import Iterable, List, Optional

from pykexec.abi.elf import ELFCLASS32, ELFCLASS64, PT_NOTE, ElfHead, elf_structs
from pykexec.abi.machines import ELF_MACHINE_NAMES, family_of, uname_by_address_digits
from pykexec.errors import PykexecError
from pykexec.machine import read_machine_file

SNAPSHOT_FORMAT = 1
KCORE_READ = 64 * 1024
PAGE = 4096

REQUIRED = ("proc/iomem", "proc/cmdline")

PLAIN_FILES = (
    "proc/iomem",
    "proc/cmdline",
    "proc/mounts",
    "sys/kernel/vmcoreinfo",
    "sys/kernel/kexec_crash_size",
    "sys/kernel/kexec_crash_loaded",
    "sys/kernel/kexec_loaded",
    "sys/kernel/crash_elfcorehdr_size",
    "sys/devices/system/cpu/crash_hotplug",
    "sys/devices/system/memory/crash_hotplug",
    "sys/kernel/boot_params/data",
    "sys/kernel/boot_params/version",
    "sys/firmware/fdt",
    "sys/devices/system/cpu/possible",
    "sys/devices/system/cpu/present",
    "sys/devices/system/cpu/online",
    "sys/kernel/security/lockdown",
    "proc/sys/kernel/arch",
    "proc/sys/kernel/kexec_load_disabled",
    "proc/sys/kernel/kexec_load_limit_panic",
    "proc/sys/kernel/kexec_load_limit_reboot",
)

KALLSYMS_KEEP = frozenset((
    "_text", "_stext", "_etext", "_end", "_edata", "__bss_start", "startup_64", "phys_base",
    "page_offset_base", "vmemmap_base", "vmalloc_base", "init_top_pgt", "swapper_pg_dir",
    "crash_notes", "vmcoreinfo_note", "log_buf", "prb",
))

MEMMAP_FILES = ("start", "end", "type")
CPU_FILES = ("crash_notes", "crash_notes_size")
EFI_FILES = ("systab", "fw_vendor", "runtime", "config_table")
EFI_RUNTIME_MAP_FILES = ("type", "phys_addr", "virt_addr", "num_pages", "attribute")


class SnapshotError(PykexecError, RuntimeError):
    """A snapshot cannot be taken; the message is one line naming the file."""


def _read(root: str, rel: str, required: bool = False, limit: Optional[int] = None) -> Optional[bytes]:
    """Bytes of root/rel (None if absent and not required), at most `limit`.

    Regular files only, at most 64 MiB (pykexec.machine's reader): a FIFO or device in a
    source folder is refused, never waited on or read forever.
    """
    path = os.path.join(root, rel)
    try:
        return read_machine_file(path, limit)
    except FileNotFoundError:
        if required:
            raise SnapshotError(f"cannot read /{rel}: missing (under root {root})") from None
        return None
    except IsADirectoryError:
        raise SnapshotError(f"cannot read /{rel}: is a directory (under root {root})") from None
    except OSError as e:
        raise SnapshotError(f"cannot read /{rel}: {e.strerror or e} (under root {root})") from None


def _write(dest: str, rel: str, data: bytes) -> None:
    path = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _copy(root: str, dest: str, rel: str, required: bool = False) -> bool:
    data = _read(root, rel, required=required)
    if data is None:
        return False
    _write(dest, rel, data)
    return True


def _listdir(root: str, rel: str) -> List[str]:
    try:
        return os.listdir(os.path.join(root, rel))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise SnapshotError(f"cannot list /{rel}: {e.strerror or e} (under root {root})") from None


def _numeric(names: Iterable[str], prefix: str = "") -> List[str]:
    pat = re.compile(re.escape(prefix) + r"(\d+)$")
    found = [(int(m.group(1)), n) for n in names for m in [pat.match(n)] if m]
    return [n for _, n in sorted(found)]


def filter_kallsyms(text: bytes, keep: Iterable[str] = KALLSYMS_KEEP) -> bytes:
    """The lines of /proc/kallsyms naming a kept symbol of the kernel itself (no modules)."""
    names = b"|".join(re.escape(k.encode()) for k in sorted(keep))
    pat = re.compile(rb"^[0-9a-fA-F]+[ \t]+\S[ \t]+(?:" + names + rb")[ \t]*$\n?", re.M)
    return b"".join(m.group(0) for m in pat.finditer(text))


def kcore_header_length(data: bytes) -> int:
    """Bytes of a /proc/kcore start a loader needs: headers and notes, rounded up to 4 KiB.

    That is the end of the program header table or of the last PT_NOTE's data, whichever
    is later (kexec-tools parses the kcore's notes too and refuses a file whose notes are
    cut: "ELF Note corrupted"), rounded up to a page. PT_LOAD data is never needed.
    """
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    if len(data) < 5:
        raise ValueError("the ELF header ends after its magic")
    if data[4] not in (ELFCLASS32, ELFCLASS64):
        raise ValueError(f"unknown ELF class {data[4]}")
    elf = elf_structs(data[4])
    if len(data) < elf.ehdr_size:
        raise ValueError(f"the ELF header is cut at {len(data):#x} bytes")
    ehdr = elf.Ehdr.parse(data)
    end = max(ehdr.e_phoff + ehdr.e_phentsize * ehdr.e_phnum, 64)
    if end > len(data):
        raise ValueError(f"program headers end at {end:#x}, past the {len(data):#x} bytes read")
    for i in range(ehdr.e_phnum):
        start = ehdr.e_phoff + i * ehdr.e_phentsize
        if start + elf.phdr_size > len(data):
            raise ValueError(f"program header {i} is cut at {len(data):#x} bytes")
        phdr = elf.Phdr.parse(data[start:start + elf.phdr_size])
        if phdr.p_type == PT_NOTE:
            end = max(end, phdr.p_offset + phdr.p_filesz)
    return (end + PAGE - 1) // PAGE * PAGE


def _kcore(root: str, dest: str) -> bool:
    data = _read(root, "proc/kcore", limit=KCORE_READ)
    if data is None:
        return False
    try:
        n = kcore_header_length(data)
    except ValueError as e:
        raise SnapshotError(f"cannot use /proc/kcore: {e} (under root {root})") from None
    if n > len(data):
        raise SnapshotError(f"cannot use /proc/kcore: headers and notes end at {n:#x}, "
                            f"past the {len(data):#x} bytes a loader reads")
    _write(dest, "proc/kcore", data[:n])
    return True


def _tree(root: str, dest: str, rel: str) -> int:
    """Copy the regular files under root/rel (not following symlinks); number copied."""
    top = os.path.join(root, rel)
    if not os.path.isdir(top):
        return 0
    count = 0
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            sub = os.path.relpath(path, root)
            st = os.stat(path)
            if not st.st_mode & 0o444:
                continue  # write-only attribute
            if _copy(root, dest, sub):
                count += 1
    return count


def _release(root: str) -> str:
    data = _read(root, "proc/sys/kernel/osrelease")
    if data is not None:
        return data.decode("ascii", "replace").strip()
    return os.uname().release if os.path.realpath(root) == "/" else ""


def source_machine(root: str) -> str:
    """`uname -m` of the machine under `root`, from the machine itself, never the host's.

    The rule: the running kernel when `root` is this machine's "/". Otherwise the evidence
    in the source, in this order: proc/sys/kernel/arch (the kernel's own `uname -m`), the
    e_machine of the proc/kcore ELF header, "machine" of a snapshot.json (a snapshot of a
    snapshot), and only when none of these exists the width of kallsyms addresses (both
    through pykexec.abi.machines). The first answers, but sources that name different
    architectures (families) are refused, as is a source with no evidence: a guess would
    plan the wrong architecture.
    """
    if os.path.realpath(root) == os.path.realpath(os.sep):
        return os.uname().machine
    found = []  # (what said it, uname -m)
    arch = _read(root, "proc/sys/kernel/arch")
    if arch is not None and arch.strip():
        found.append(("proc/sys/kernel/arch", arch.decode("ascii", "replace").strip()))
    kcore = _read(root, "proc/kcore", limit=20)
    if kcore is not None and len(kcore) >= 20 and kcore[:4] == b"\x7fELF":
        e_machine = ElfHead.parse(kcore).e_machine
        if e_machine in ELF_MACHINE_NAMES:
            found.append(("proc/kcore's ELF header", ELF_MACHINE_NAMES[e_machine].uname))
    meta = _read(root, "snapshot.json")
    if meta is not None:
        try:
            value = json.loads(meta).get("machine")
        except (ValueError, AttributeError):
            value = None
        if isinstance(value, str) and value:
            found.append(("snapshot.json", value))
    if not found:
        syms = _read(root, "proc/kallsyms", limit=4096)
        widths = {len(m.group(1)) for m in re.finditer(rb"^([0-9a-fA-F]+) ", syms or b"", re.M)}
        uname = uname_by_address_digits(widths.pop()) if len(widths) == 1 else None
        if uname is not None:
            found.append(("proc/kallsyms", uname))
    if not found:
        raise SnapshotError(f"cannot tell the architecture of the machine under {root}: no "
                            f"proc/sys/kernel/arch, no proc/kcore ELF header, no kallsyms "
                            f"addresses; refusing to guess")
    families = {family_of(m) for _, m in found}
    if len(families) > 1:
        said = ", ".join(f"{where} says {m}" for where, m in found)
        raise SnapshotError(f"cannot tell the architecture of the machine under {root}: {said}")
    return found[0][1]


def _check_dest(dest: str) -> str:
    """The absolute destination; refuse an empty path, a file, a non-empty folder."""
    if not dest:
        raise SnapshotError("cannot write the snapshot: the destination path is empty")
    dest = os.path.abspath(dest)
    if os.path.isdir(dest):
        if os.listdir(dest):
            raise SnapshotError(f"cannot write the snapshot: {dest} exists and is not empty")
    elif os.path.lexists(dest):
        raise SnapshotError(f"cannot write the snapshot: {dest} exists and is not a folder")
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise SnapshotError(f"cannot write the snapshot: {parent} is not a folder")
    return dest


def take_snapshot(dest: str, root: str = "/", source: str = "live", notes: str = "",
                  machine: Optional[str] = None, kernel_release: Optional[str] = None) -> dict:
    """Write a machine snapshot of `root` into `dest` (created; must be empty if it exists).

    Returns the snapshot.json document. `machine` defaults to the source's `uname -m`
    (`source_machine`), `kernel_release` to the root's /proc/sys/kernel/osrelease. The
    folder is built in a hidden sibling and renamed into place at the end, so a failed
    snapshot leaves nothing behind and a retry starts clean.
    """
    if source not in ("live", "qemu", "synthetic"):
        raise ValueError(f"source must be live, qemu or synthetic, not {source!r}")
    if not root:
        raise SnapshotError("--sysroot: the path is empty (give a machine folder, or / for "
                            "this machine)")
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        why = "does not exist" if not os.path.lexists(root) else "is not a folder"
        raise SnapshotError(f"--sysroot {root}: {why}")
    dest = _check_dest(dest)
    machine = machine or source_machine(root)
    try:
        work = tempfile.mkdtemp(dir=os.path.dirname(dest),
                                prefix=f".{os.path.basename(dest)}.partial-")
    except OSError as e:
        raise SnapshotError(f"cannot write the snapshot {dest}: {e.strerror or e}") from None
    try:
        os.chmod(work, 0o755)  # mkdtemp's 0700 would hide the snapshot from its readers
        doc = _fill(work, root, source, notes, machine, kernel_release)
        if os.path.isdir(dest):
            os.rmdir(dest)  # empty (checked above): replaced by the finished folder
        os.rename(work, dest)
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        raise SnapshotError(f"cannot write the snapshot {dest}: "
                            f"{e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return doc


def _fill(dest: str, root: str, source: str, notes: str, machine: str,
          kernel_release: Optional[str]) -> dict:
    """Copy the machine files of `root` into the (new, empty) folder `dest`."""
    copied = []
    for rel in PLAIN_FILES:
        if _copy(root, dest, rel, required=rel in REQUIRED):
            copied.append(rel)

    syms = _read(root, "proc/kallsyms")
    if syms is not None:
        _write(dest, "proc/kallsyms", filter_kallsyms(syms))
    _kcore(root, dest)

    memmap = "sys/firmware/memmap"
    for n in _numeric(_listdir(root, memmap)):
        for name in MEMMAP_FILES:
            _copy(root, dest, f"{memmap}/{n}/{name}")

    cpus = "sys/devices/system/cpu"
    for cpu in _numeric(_listdir(root, cpus), prefix="cpu"):
        for name in CPU_FILES:
            _copy(root, dest, f"{cpus}/{cpu}/{name}")

    efi = "sys/firmware/efi"
    if os.path.isdir(os.path.join(root, efi)):
        for name in EFI_FILES:
            _copy(root, dest, f"{efi}/{name}")
        rmap = f"{efi}/runtime-map"
        for n in _numeric(_listdir(root, rmap)):
            for name in EFI_RUNTIME_MAP_FILES:
                _copy(root, dest, f"{rmap}/{n}/{name}")

    _tree(root, dest, "sys/firmware/edd")

    doc = {
        "format": SNAPSHOT_FORMAT,
        "source": source,
        "machine": machine,
        "kernel_release": kernel_release if kernel_release is not None else _release(root),
        "taken": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notes": notes,
    }
    with open(os.path.join(dest, "snapshot.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return doc
