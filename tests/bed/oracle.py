"""Debian's kexec as an oracle: run it on a machine snapshot and record what it would load.

`run_oracle` binds a snapshot's proc/ and sys/ over /proc and /sys in a private mount (and
network) namespace and runs kexec with tests/bed/shim/kexec_shim.c preloaded. The shim
records the kexec_load / kexec_file_load calls instead of making them, fixes getrandom()
so runs are byte-identical, and refuses reboot(). Nothing reaches the host kernel.

`parse_kexec_debug` reads the segment table `kexec -d` prints, so a run inside a QEMU guest
can be compared with the oracle's run on that guest's snapshot.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from pykexec.views import planfacts
from pykexec.core.plan import Plan, Segment, save_plan

SHIM_SOURCE = Path(__file__).with_name("shim") / "kexec_shim.c"
DEFAULT_KEXEC = "/usr/sbin/kexec"
TIMEOUT_S = 120

# Long options of kexec 2.0.25 (x86_64 build): generic, arch and every loader's, because
# getopt_long accepts any unique prefix of any of them.
LONG_OPTIONS = (
    "help", "version", "force", "no-checks", "no-ifdown", "no-sync", "load", "load-panic",
    "unload", "exec", "exec-live-update", "type", "mem-min", "mem-max", "reuseinitrd",
    "print-ckr-size", "load-preserve-context", "load-jump-back-helper", "load-live-update",
    "entry", "kexec-file-syscall", "kexec-syscall", "kexec-syscall-auto", "debug", "status",
    "reset-vga", "serial", "serial-baud", "console-vga", "console-serial", "elf32-core-headers",
    "elf64-core-headers", "pass-memmap-cmdline", "noefi", "reuse-video-type",
    "command-line", "append", "reuse-cmdline", "initrd", "ramdisk", "real-mode", "entry-32bit",
    "args-linux", "args-elf", "args-none", "module",
)
LONG_WITH_ARGUMENT = {"type", "mem-min", "mem-max", "entry", "command-line", "append", "initrd",
                      "ramdisk", "serial", "serial-baud", "module"}
# Options that would reboot, take network interfaces down, or touch a running Xen.
LONG_REFUSED = {"exec", "force", "exec-live-update", "load-jump-back-helper", "load-live-update"}
SHORT_REFUSED = {"e", "f"}
# Options after which kexec does not fall through to "load, then shutdown(8)".
LONG_ACTIONS = {"load", "load-panic", "unload", "status", "help", "version", "print-ckr-size",
                "load-preserve-context"}
SHORT_ACTIONS = {"l", "p", "u", "S", "h", "v"}
SHORT_WITH_ARGUMENT = {"t"}


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class RecordedSegment:
    mem: int
    memsz: int
    bufsz: int
    data: bytes


@dataclass(frozen=True)
class RecordedCall:
    """One kexec_load or kexec_file_load call as the shim saw it."""

    index: int
    name: str                       # "kexec_load" or "kexec_file_load"
    flags: int
    entry: Optional[int] = None     # kexec_load
    nr_segments: int = 0            # kexec_load; 0 for an unload
    segments: Tuple[RecordedSegment, ...] = ()
    kernel_fd: Optional[int] = None  # kexec_file_load; -1 for an unload
    initrd_fd: Optional[int] = None
    cmdline_len: int = 0
    cmdline: bytes = b""
    kernel: Optional[bytes] = None
    initrd: Optional[bytes] = None

    @property
    def is_unload(self) -> bool:
        if self.name == "kexec_load":
            return self.nr_segments == 0
        return self.kernel_fd == -1


@dataclass(frozen=True)
class OracleResult:
    exit_code: int
    stdout: str
    stderr: str
    plan: Optional[Plan]
    calls: Tuple[RecordedCall, ...]
    reboots: Tuple[int, ...] = ()          # reboot() commands kexec tried (all refused)
    getrandom_calls: int = 0


# ---------------------------------------------------------------------------------------------
# argv safety


@dataclass(frozen=True)
class _Argv:
    kernel: Optional[str]
    initrd: Optional[str]


def _resolve_long(name: str) -> Optional[str]:
    if name in LONG_OPTIONS:
        return name
    matches = [o for o in LONG_OPTIONS if o.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def check_argv(argv: Sequence[str]) -> _Argv:
    """Refuse argv that could execute, reboot or shut down; find the kernel and initrd paths.

    Follows kexec's getopt_long parsing closely enough to be safe: short option clusters,
    long options by unique prefix, arguments in the same or the next word, "--".
    """
    argv = list(argv)
    acted = False
    kernel = initrd = None
    i = 0
    positional_only = False
    while i < len(argv):
        arg = argv[i]
        i += 1
        if positional_only or arg == "-" or not arg.startswith("-"):
            if kernel is None:
                kernel = arg
            continue
        if arg == "--":
            positional_only = True
            continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            resolved = _resolve_long(name)
            if resolved in LONG_REFUSED or (
                    resolved is None and any(o.startswith(name) for o in LONG_REFUSED)):
                raise ValueError(f"refusing {arg!r}: the oracle never executes or shuts down")
            if resolved in LONG_ACTIONS:
                acted = True
            if resolved in LONG_WITH_ARGUMENT and not eq:
                value = argv[i] if i < len(argv) else ""
                i += 1
            if resolved in ("initrd", "ramdisk"):
                initrd = value
            continue
        cluster = arg[1:]
        for j, ch in enumerate(cluster):
            if ch in SHORT_REFUSED:
                raise ValueError(f"refusing {arg!r}: the oracle never executes (-{ch})")
            if ch in SHORT_ACTIONS:
                acted = True
            if ch in SHORT_WITH_ARGUMENT:
                if j == len(cluster) - 1:
                    i += 1            # the argument is the next word
                break                 # the rest of the cluster is the argument
    if not acted:
        raise ValueError("refusing argv without -p/-l/-u/-S/-h/-v/--print-ckr-size: "
                         "plain `kexec KERNEL` loads and then runs shutdown(8)")
    return _Argv(kernel=kernel, initrd=initrd)


# ---------------------------------------------------------------------------------------------
# The shim


def cache_dir() -> Path:
    """Where built shims live: the bed's cache ($PYKEXEC_BED_CACHE, else
    $XDG_CACHE_HOME/pykexec-bed, else ~/.cache/pykexec-bed), folder shim/."""
    bed = os.environ.get("PYKEXEC_BED_CACHE")
    if not bed:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        bed = os.path.join(xdg, "pykexec-bed")
    return Path(bed) / "shim"


def _m32_asm_include(m32: bool, where: Path) -> list:
    """-I for the kernel's <asm/...> headers in a -m32 build.

    Debian's gcc-multilib meta package links /usr/include/asm to the amd64 copy (x86's asm
    headers serve both widths), but it conflicts with the cross compilers the arm64 bed
    needs, and linux-libc-dev:i386 must match the amd64 version exactly, which the i386
    archive does not always carry. So the bed makes that one link itself, privately.
    """
    if not m32 or os.path.isdir("/usr/include/asm"):
        return []
    multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                               text=True).stdout.strip() or "x86_64-linux-gnu"
    include = where / "m32-include"
    include.mkdir(exist_ok=True)
    link = include / "asm"
    if not link.exists():
        try:
            os.symlink(f"/usr/include/{multiarch}/asm", link)
        except FileExistsError:
            pass                 # a concurrent builder made it
    return ["-I", str(include)]


def shim_library(m32: bool = False, cc: str = "gcc") -> Path:
    """Build (once per source version) and return the path of the LD_PRELOAD library;
    `cc` another architecture's compiler (aarch64-linux-gnu-gcc for the arm64 guests)."""
    source = SHIM_SOURCE.read_bytes()
    flags = ["-m32"] if m32 else []
    key = hashlib.sha256(source + repr(flags).encode()
                         + (cc.encode() if cc != "gcc" else b"")).hexdigest()[:16]
    out = cache_dir() / key / ("kexec_shim32.so" if m32 else "kexec_shim.so")
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        subprocess.run([cc, *flags, *_m32_asm_include(m32, out.parent), "-shared", "-fPIC", "-O2",
                        "-Wall", "-o", tmp, str(SHIM_SOURCE), "-ldl"],
                       check=True, capture_output=True, text=True)
        os.replace(tmp, out)   # atomic: concurrent builders never see a half-written library
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"building {SHIM_SOURCE} failed:\n{e.stderr}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


# Runs inside the new namespaces: $1 snapshot, $2 library, $3 record dir, $4 kexec, rest argv.
# shutdown(8) is masked too, as a second line of defence behind check_argv.
_NAMESPACE_SCRIPT = r"""
set -e
snap=$1 lib=$2 out=$3 kexec=$4
shift 4
mount --bind "$snap/proc" /proc
mount --bind "$snap/sys" /sys
for p in /sbin/shutdown /bin/shutdown /etc/shutdown; do
    if [ -e "$p" ]; then mount --bind /bin/false "$p"; fi
done
exec env LD_PRELOAD="$lib" PYKEXEC_SHIM_OUT="$out" "$kexec" "$@"
"""


# ---------------------------------------------------------------------------------------------
# Reading the shim's records


def _words(line: str) -> dict:
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def read_records(record_dir: str) -> Tuple[Tuple[RecordedCall, ...], Tuple[int, ...], int]:
    """Parse calls.txt and the .bin files the shim wrote."""
    path = os.path.join(record_dir, "calls.txt")
    if not os.path.exists(path):
        return (), (), 0
    calls: dict = {}
    reboots: List[int] = []
    getrandoms = 0

    def blob(name):
        with open(os.path.join(record_dir, name), "rb") as f:
            return f.read()

    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        w = _words(line)
        if w.get("event") == "reboot":
            reboots.append(int(w["cmd"], 16))
        elif w.get("event") == "getrandom":
            getrandoms += 1
        elif "name" in w:
            n = int(w["call"])
            if w["name"] == "kexec_load":
                calls[n] = dict(index=n, name="kexec_load", flags=int(w["flags"], 16),
                                entry=int(w["entry"], 16), nr_segments=int(w["nr_segments"]),
                                segments=[])
            else:
                calls[n] = dict(index=n, name="kexec_file_load", flags=int(w["flags"], 16),
                                kernel_fd=int(w["kernel_fd"]), initrd_fd=int(w["initrd_fd"]),
                                cmdline_len=int(w["cmdline_len"]))
        elif "segment" in w:
            data = blob(w["file"])
            calls[int(w["call"])]["segments"].append(RecordedSegment(
                mem=int(w["mem"], 16), memsz=int(w["memsz"], 16), bufsz=int(w["bufsz"], 16),
                data=data))
        elif "part" in w:
            calls[int(w["call"])][w["part"]] = blob(w["file"])
    out = []
    for n in sorted(calls):
        c = calls[n]
        c["segments"] = tuple(c.get("segments", ()))
        out.append(RecordedCall(**c))
    return tuple(out), tuple(reboots), getrandoms


def plan_from_call(call: RecordedCall, notes: dict, kernel_path: Optional[str],
                   initrd_path: Optional[str]) -> Plan:
    """The plan a recorded call describes, with segment kinds and cmdline read back."""
    if call.name == "kexec_load":
        segs = [Segment(mem=s.mem, memsz=s.memsz, data=s.data, source=f"kexec segment at {s.mem:#x}")
                for s in sorted(call.segments, key=lambda s: s.mem)]
        plan = Plan(arch="x86_64", syscall="kexec_load", flags=call.flags, entry=call.entry,
                    cmdline=None, segments=segs, notes=notes)
    else:
        segs = []
        if call.kernel is not None:
            segs.append(Segment(mem=None, memsz=len(call.kernel), data=call.kernel, source="kernel fd"))
        if call.initrd is not None:
            segs.append(Segment(mem=None, memsz=len(call.initrd), data=call.initrd, source="initrd fd"))
        cmdline = call.cmdline.split(b"\0", 1)[0].decode(errors="replace") if call.cmdline_len else None
        plan = Plan(arch="x86_64", syscall="kexec_file_load", flags=call.flags, entry=None,
                    cmdline=cmdline, segments=segs, notes=notes)
    return planfacts.annotate(plan, kernel_path=kernel_path, initrd_path=initrd_path)


# ---------------------------------------------------------------------------------------------
# Running


def run_oracle(snapshot_dir: str, argv: Sequence[str], out_dir: Optional[str] = None,
               kexec: str = DEFAULT_KEXEC) -> OracleResult:
    """Run `kexec ARGV` on the machine in `snapshot_dir`; record, never load.

    The plan is made from the last recorded call (a load, or an unload with no segments);
    it is None when kexec made no call. With `out_dir` the plan is saved there too.
    """
    parsed = check_argv(argv)
    if os.geteuid() != 0:
        raise PermissionError("run_oracle needs root: it creates a mount namespace and binds "
                              "the snapshot over /proc and /sys")
    snap = os.path.abspath(snapshot_dir)
    for sub in ("proc", "sys"):
        if not os.path.isdir(os.path.join(snap, sub)):
            raise FileNotFoundError(f"{snap} has no {sub}/ folder: not a machine snapshot")
    lib = shim_library()
    with tempfile.TemporaryDirectory(prefix="pykexec-oracle-") as records:
        proc = subprocess.run(
            ["unshare", "--mount", "--net", "--propagation", "private",
             "sh", "-c", _NAMESPACE_SCRIPT, "oracle", snap, str(lib), records, kexec, *argv],
            capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL)
        calls, reboots, getrandoms = read_records(records)
    plan = None
    if calls:
        notes = {"source": "oracle", "kexec": kexec, "argv": list(argv),
                 "exit_code": proc.returncode, "snapshot": snap}
        plan = plan_from_call(calls[-1], notes, parsed.kernel, parsed.initrd)
        if out_dir is not None:
            save_plan(plan, out_dir)
    return OracleResult(exit_code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                        plan=plan, calls=calls, reboots=reboots, getrandom_calls=getrandoms)


# ---------------------------------------------------------------------------------------------
# `kexec -d` output


@dataclass(frozen=True)
class DebugLoad:
    """The segment table `kexec -d` prints just before kexec_load."""

    entry: int
    flags: int
    segments: List[Tuple[int, int, int]] = field(default_factory=list)  # (mem, memsz, bufsz)


_ENTRY_RE = re.compile(r"entry\s*=\s*(0x[0-9a-fA-F]+|\(nil\))\s+flags\s*=\s*(0x[0-9a-fA-F]+)")
# Not anchored: a guest's console log may prefix lines (timestamps) or end them with \r.
_SEGMENT_RE = re.compile(r"segment\[(\d+)\]\.(bufsz|buf|memsz|mem)\s*=\s*(0x[0-9a-fA-F]+|\(nil\))")


def _hex(text: str) -> int:
    return 0 if text == "(nil)" else int(text, 16)


def parse_kexec_debug(stderr_text: str) -> Optional[DebugLoad]:
    """The last segment table in `kexec -d` output, or None if there is none.

    2.0.25 prints `kexec_load: entry = 0x... flags = 0x...`, `nr_segments = N`, then four
    lines per segment: `segment[i].buf`, `.bufsz`, `.mem`, `.memsz`. Fails loudly on a table
    whose segments are incomplete, so a format change is noticed.
    """
    tables: List[Tuple[int, int, dict]] = []
    for line in stderr_text.splitlines():
        m = _ENTRY_RE.search(line)
        if m:
            tables.append((_hex(m.group(1)), int(m.group(2), 16), {}))
            continue
        m = _SEGMENT_RE.search(line)
        if m and tables:
            tables[-1][2].setdefault(int(m.group(1)), {})[m.group(2)] = _hex(m.group(3))
    if not tables:
        return None
    entry, flags, fields = tables[-1]
    segments = []
    for i in sorted(fields):
        f = fields[i]
        missing = {"bufsz", "mem", "memsz"} - set(f)
        if missing:
            raise ValueError(f"kexec -d segment[{i}] lacks {sorted(missing)}")
        segments.append((f["mem"], f["memsz"], f["bufsz"]))
    return DebugLoad(entry=entry, flags=flags, segments=segments)
