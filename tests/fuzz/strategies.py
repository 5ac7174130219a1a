"""Hypothesis strategies for every input pykexec parses or builds from.

Machines start from tests/bed/synthetic.py (a valid machine for a random MachineSpec) and
are then mutated file by file, so most examples are near-valid: that is where a loader is
tempted to accept something it should refuse. Kernels start from tests/bed/fakekernel.py's
bzImage and hand-packed ELF executables with random header fields, then byte mutations.
Nothing here calls pykexec: the inputs must not depend on the code they test.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from hypothesis import strategies as st

from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.bed.fakekernel32 import I386_BZIMAGE, vmlinux32_bytes

MiB, GiB = synthetic.MiB, synthetic.GiB
U64 = (1 << 64) - 1

# Numbers a hostile or broken file likes to hold.
EDGE_INTS = [0, 1, 2, 0xFF, 0x100, 0xFFF, 0x1000, 0x1001, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
             1 << 32, (1 << 32) + 1, (1 << 52), (1 << 63) - 1, 1 << 63, U64 - 0xFFF, U64]


def edge_ints(bits: int = 64) -> st.SearchStrategy[int]:
    top = (1 << bits) - 1
    return st.one_of(st.sampled_from([v & top for v in EDGE_INTS]), st.integers(0, top))


def mutate_bytes(data: bytes, limit: int = 8) -> st.SearchStrategy[bytes]:
    """`data` with a few byte flips, a truncation, or an extension."""
    @st.composite
    def go(draw):
        out = bytearray(data)
        for _ in range(draw(st.integers(0, limit))):
            if not out:
                break
            kind = draw(st.sampled_from(["flip", "set", "cut", "grow", "word"]))
            at = draw(st.integers(0, len(out) - 1))
            if kind == "flip":
                out[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == "set":
                out[at] = draw(st.integers(0, 255))
            elif kind == "cut":
                del out[at:]
            elif kind == "grow":
                out += draw(st.binary(max_size=64))
            elif at + 4 <= len(out):
                struct.pack_into("<I", out, at, draw(edge_ints(32)))
        return bytes(out)
    return go()


# ---------------------------------------------------------------------------------------------
# /proc/iomem, memmap, CPU lists


IOMEM_NAMES = ["System RAM", "Reserved", "Crash kernel", "Kernel code", "Kernel data",
               "ACPI Tables", "ACPI Non-volatile Storage", "PCI Bus 0000:00", "Persistent Memory",
               "Video ROM", "reserved", "Unknown E820 type", "0000:00:02.0", "System  RAM"]


@dataclass(frozen=True)
class IomemLine:
    start: int
    end: int             # inclusive, as /proc/iomem prints it
    name: str
    depth: int


def _nested(draw, lo: int, hi: int, depth: int, budget: List[int]) -> List[IomemLine]:
    """Disjoint sorted ranges inside [lo, hi], each possibly with children."""
    lines: List[IomemLine] = []
    at = lo
    while budget[0] > 0 and at <= hi and draw(st.booleans()):
        budget[0] -= 1
        start = draw(st.integers(at, min(hi, at + (1 << 34))))
        end = draw(st.integers(start, min(hi, start + (1 << 34))))
        lines.append(IomemLine(start, end, draw(st.sampled_from(IOMEM_NAMES)), depth))
        if depth < 3 and end > start:
            lines += _nested(draw, start, end, depth + 1, budget)
        if end >= hi:
            break
        at = end + 1
    return lines


@st.composite
def iomem_trees(draw, max_lines: int = 40) -> List[IomemLine]:
    """A well-formed /proc/iomem as lines (nesting, sorted, non-zero somewhere)."""
    lines = _nested(draw, 0, draw(st.sampled_from([(1 << 32) - 1, (1 << 40) - 1, U64])), 0,
                    [max_lines])
    if not lines or all(l.start == 0 and l.end == 0 for l in lines):
        lines = [IomemLine(0x1000, 0x9FBFF, "System RAM", 0)] + [l for l in lines if l.depth]
        lines = [l for l in lines if l.depth == 0]
    return lines


def render_iomem(lines: List[IomemLine], width: int = 8) -> str:
    return "".join(f"{'  ' * l.depth}{l.start:0{width}x}-{l.end:0{width}x} : {l.name}\n" for l in lines)


def hostile_text(alphabet: str = "0123456789abcdefx-: ,\n\r\t\0 SystemRAMCrashkernel") -> st.SearchStrategy[str]:
    return st.one_of(st.text(alphabet=alphabet, max_size=300), st.text(max_size=100),
                     st.binary(max_size=200).map(lambda b: b.decode("latin-1")))


@st.composite
def cpu_sets(draw, max_cpu: int = 8191) -> List[int]:
    """CPU numbers up to the largest NR_CPUS x86 allows (8192 CPUs: 0-8191)."""
    return sorted(draw(st.sets(st.integers(0, max_cpu), min_size=1, max_size=64)))


def render_cpu_list(cpus: List[int]) -> str:
    """The kernel's %*pbl format: ascending, runs as "a-b", comma-separated."""
    parts, run = [], [cpus[0], cpus[0]]
    for c in cpus[1:]:
        if c == run[1] + 1:
            run[1] = c
        else:
            parts.append(run)
            run = [c, c]
    parts.append(run)
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)


CPU_LIST_HOSTILE = st.one_of(
    st.sampled_from(["", "\n", "0-", "-1", "0-4294967295", "4294967295", "0-3,", ",", "3-0", "0--1",
                     "0-1\r\n", "0\x00", "٣", "0-18446744073709551615", "1e3", " 0 - 3 ", "0-1,0-1",
                     "0-100000000", "+1", "0x1", "0-7\n8-9"]),
    hostile_text("0123456789-, \n"))


# ---------------------------------------------------------------------------------------------
# Machines


@st.composite
def machine_specs(draw) -> synthetic.MachineSpec:
    ram = draw(st.sampled_from([512 * MiB, 1 * GiB, 2 * GiB, 3 * GiB, 4 * GiB, 6 * GiB, 16 * GiB]))
    crash_high = ram > 3 * GiB and draw(st.booleans())
    cpus = draw(st.integers(1, 8))
    return synthetic.MachineSpec(
        name="fuzz", ram=ram, ram_ranges=draw(st.integers(2, 12)), cpus=cpus,
        cpus_without_notes=tuple(draw(st.sets(st.integers(0, cpus - 1), max_size=2))),
        crash_size=draw(st.sampled_from([64, 128, 160, 256, 384]).map(lambda m: m * MiB)),
        crash_high=crash_high,
        crash_low_size=draw(st.sampled_from([0, 128 * MiB])) if crash_high else 0,
        acpi=draw(st.booleans()), nvs_ranges=draw(st.integers(0, 3)),
        pmem_size=draw(st.sampled_from([0, 0, 2 * GiB])), kaslr=draw(st.booleans()),
        seed=draw(st.integers(0, 1000)))


def valid_layout(spec) -> Optional[synthetic.Layout]:
    try:
        return synthetic.machine_layout(spec)
    except (ValueError, AssertionError):
        return None


MACHINE_FILES_TEXT = ["proc/iomem", "proc/cmdline", "proc/kallsyms", "sys/kernel/vmcoreinfo",
                      "sys/kernel/kexec_crash_size", "sys/devices/system/cpu/possible",
                      "sys/devices/system/cpu/present", "sys/devices/system/cpu/online",
                      "sys/kernel/boot_params/version"]


def _iomem_mutation(draw, text: str) -> str:
    lines = text.splitlines()
    kind = draw(st.sampled_from(["swap", "dup", "drop", "number", "crlf", "nul", "shrink_crash",
                                 "grow_crash", "zero_crash", "overlap", "indent"]))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "swap" and len(lines) > 1:
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "dup":
        lines.insert(i, lines[i])
    elif kind == "drop":
        del lines[i]
    elif kind == "number":
        head, sep, rest = lines[i].partition("-")
        lines[i] = head[:len(head) - len(head.lstrip())] + f"{draw(edge_ints()):x}" + sep + rest
    elif kind == "crlf":
        return "\r\n".join(lines) + "\r\n"
    elif kind == "nul":
        lines[i] += "\0"
    elif kind in ("shrink_crash", "grow_crash", "zero_crash"):
        for n, line in enumerate(lines):
            if "Crash kernel" in line:
                indent = line[:len(line) - len(line.lstrip())]
                start, end = (int(x, 16) for x in line.split(" : ")[0].split("-"))
                if kind == "zero_crash":
                    end = start - 1 if start else 0
                elif kind == "grow_crash":
                    end += draw(st.sampled_from([0x1000, 1 << 30, 1 << 40]))
                else:
                    start += draw(st.sampled_from([0x1000, 0x800, 1 << 20]))
                lines[n] = f"{indent}{start:08x}-{max(end, 0):08x} : Crash kernel"
                break
    elif kind == "overlap":
        start, end = (int(x, 16) for x in lines[i].strip().split(" : ")[0].split("-"))
        lines.insert(i + 1, f"{start + (end - start) // 2:08x}-{end + 0x100000:08x} : System RAM")
    elif kind == "indent":
        lines[i] = "  " + lines[i]
    return "\n".join(lines) + "\n"


def snapshot_folder_files(root: str) -> Dict[str, bytes]:
    """rel path -> bytes of every file of a snapshot folder."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


@st.composite
def machine_mutations(draw, files: Dict[str, bytes]) -> Dict[str, Optional[bytes]]:
    """Changes to a machine's files (rel path -> new bytes; None: delete the file)."""
    nfirmware = len({k.split("/")[3] for k in files if k.startswith("sys/firmware/memmap/")})
    ncpus = len([k for k in files if k.endswith("/crash_notes")]) or 1
    changes: Dict[str, Optional[bytes]] = {}
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(["iomem", "cpulist", "crash_notes", "vmcoreinfo", "memmap",
                                       "kcore", "kallsyms", "boot_params", "cmdline", "delete",
                                       "crash_size"]))
        if target == "iomem":
            text = (changes.get("proc/iomem") or files["proc/iomem"]).decode("latin-1")
            changes["proc/iomem"] = _iomem_mutation(draw, text).encode("latin-1")
        elif target == "cpulist":
            key = draw(st.sampled_from(["possible", "present", "online"]))
            changes[f"sys/devices/system/cpu/{key}"] = draw(CPU_LIST_HOSTILE).encode("utf-8", "replace")
        elif target == "crash_notes":
            cpu = draw(st.integers(0, ncpus))
            name = draw(st.sampled_from(["crash_notes", "crash_notes_size"]))
            value = draw(st.one_of(edge_ints().map(lambda v: f"{v:x}\n"),
                                   st.sampled_from(["-1\n", "\n", "0x\n", "zz\n", "368\r\n", "1e9\n",
                                                    "-368\n", "0\n"]), hostile_text()))
            changes[f"sys/devices/system/cpu/cpu{cpu}/{name}"] = value.encode("utf-8", "replace")
        elif target == "vmcoreinfo":
            changes["sys/kernel/vmcoreinfo"] = draw(st.one_of(
                st.tuples(edge_ints(), edge_ints(32)).map(lambda t: f"{t[0]:x} {t[1]:x}\n"),
                hostile_text())).encode("utf-8", "replace")
        elif target == "memmap":
            n = draw(st.integers(0, nfirmware))
            key = draw(st.sampled_from(["start", "end", "type"]))
            value = draw(st.one_of(edge_ints().map(lambda v: f"0x{v:x}\n"),
                                   st.sampled_from(["System RAM\n", "Reserved\n", "-0x1000\n",
                                                    "0xnothex\n", "\n", "System RAM\r\n"])))
            changes[f"sys/firmware/memmap/{n}/{key}"] = value.encode()
        elif target == "kcore":
            changes["proc/kcore"] = draw(mutate_bytes(files.get("proc/kcore", b"")[:1024]))
        elif target == "kallsyms":
            changes["proc/kallsyms"] = draw(st.one_of(
                mutate_bytes(files.get("proc/kallsyms", b"")),
                hostile_text().map(lambda t: t.encode("utf-8", "replace"))))
        elif target == "boot_params":
            changes["sys/kernel/boot_params/data"] = draw(mutate_bytes(
                files.get("sys/kernel/boot_params/data", bytes(4096))))
        elif target == "cmdline":
            changes["proc/cmdline"] = draw(st.one_of(st.binary(max_size=300),
                                                     st.just(b"a" * 5000 + b"\n")))
        elif target == "crash_size":
            changes["sys/kernel/kexec_crash_size"] = draw(st.sampled_from(
                [b"0\n", b"-1\n", b"\n", b"18446744073709551616\n", b"x"]))
        else:
            changes[draw(st.sampled_from(MACHINE_FILES_TEXT + ["proc/kcore",
                                                               "sys/kernel/boot_params/data"]))] = None
    return changes


class Blob(bytes):
    """File contents that print short in a failure report (length, digest, head)."""

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self))

    def __repr__(self):
        import hashlib
        return (f"Blob(len={len(self)}, sha256={hashlib.sha256(self).hexdigest()[:12]}, "
                f"head={bytes(self[:48])!r})")


@dataclass
class MachineCase:
    spec: synthetic.MachineSpec
    layout: synthetic.Layout = field(repr=False)
    changes: Dict[str, Optional[bytes]] = field(default_factory=dict)
    machine: str = "x86_64"       # snapshot.json's uname -m: "i686" makes it an i386 machine
    base: Optional[str] = None    # a bundled snapshot folder to start from instead of `spec`

    def __repr__(self):
        changed = {k: (v if v is None or len(v) < 80 else Blob(v)) for k, v in self.changes.items()}
        origin = f"base={self.base!r}" if self.base else repr(self.spec)
        return f"MachineCase({origin}, changes={changed!r}, machine={self.machine!r})"

    def _repr_pretty_(self, p, cycle):   # hypothesis' failure report: without the layout
        p.text(repr(self))

    def write(self, dest: str) -> str:
        if self.base:
            shutil.copytree(self.base, dest, symlinks=False)
        else:
            synthetic.make_machine(dest, self.spec)
        if self.machine != "x86_64" and not self.base:
            meta_path = os.path.join(dest, "snapshot.json")
            with open(meta_path) as f:
                meta = json.load(f)
            meta["machine"] = self.machine
            with open(meta_path, "w") as f:
                json.dump(meta, f)
        for rel, data in self.changes.items():
            path = os.path.join(dest, rel)
            if data is None:
                if os.path.isfile(path):
                    os.unlink(path)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        return dest


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Real i386 machines come from QEMU guests (a relabelled synthetic machine would have an
# x86_64 kcore: a machine that cannot exist, which loaders rightly refuse).
def _x86_snapshot(folder: str) -> bool:
    try:
        with open(os.path.join(folder, "snapshot.json")) as f:
            return json.load(f).get("machine", "x86_64") in ("x86_64", "i386", "i686")
    except OSError:
        return False


BUNDLED = sorted(f for f in (os.path.join(ROOT, "tests/snapshots", n)
                             for n in os.listdir(os.path.join(ROOT, "tests/snapshots")))
                 if _x86_snapshot(f))
# arm64 machines are the QEMU snapshots only: tests/bed/synthetic.py builds x86 machines
# (e820, boot_params), and a relabelled one would be a machine that cannot exist
ARM64_BUNDLED = sorted(f for f in (os.path.join(ROOT, "tests/snapshots", n)
                                   for n in os.listdir(os.path.join(ROOT, "tests/snapshots")))
                       if os.path.isfile(os.path.join(f, "sys/firmware/fdt"))
                       and not _x86_snapshot(f))
_BUNDLED_FILES: Dict[str, Dict[str, bytes]] = {}


def _bundled(root):
    if root not in _BUNDLED_FILES:
        _BUNDLED_FILES[root] = snapshot_folder_files(root)
    return _BUNDLED_FILES[root]


@st.composite
def machines(draw, mutate: bool = True) -> MachineCase:
    """A synthetic x86_64 machine (random spec) or a bundled QEMU snapshot (i386 and x86_64),
    then, when `mutate`, a few file changes."""
    spec = synthetic.PRESETS["qemu_like_1g"]
    if draw(st.integers(0, 2)) == 0:
        base = draw(st.sampled_from(BUNDLED))
        files = _bundled(base)
        meta = json.loads(files["snapshot.json"])
        layout, uname = None, meta.get("machine", "x86_64")
    else:
        base, spec = None, draw(machine_specs())
        layout = valid_layout(spec)
        if layout is None:
            spec = synthetic.PRESETS["qemu_like_1g"]
            layout = synthetic.machine_layout(spec)
        files, uname = synthetic.snapshot_files(layout), "x86_64"
    changes = draw(machine_mutations(files)) if mutate and draw(st.booleans()) else {}
    return MachineCase(spec, layout, changes, uname, base)


@st.composite
def arm64_machines(draw, mutate: bool = True) -> MachineCase:
    """A bundled arm64 QEMU snapshot, then, when `mutate`, a few file changes (the device
    tree's bytes among them)."""
    base = draw(st.sampled_from(ARM64_BUNDLED))
    files = _bundled(base)
    changes: Dict[str, Optional[bytes]] = {}
    if mutate and draw(st.booleans()):
        changes = draw(machine_mutations(files))
        if draw(st.booleans()):
            changes["sys/firmware/fdt"] = draw(mutate_bytes(files["sys/firmware/fdt"], 4))
    return MachineCase(synthetic.PRESETS["qemu_like_1g"], None, changes, "aarch64", base)


# ---------------------------------------------------------------------------------------------
# Kernels


def _pow2_or_odd():
    return st.one_of(st.sampled_from([1 << n for n in range(12, 31)]),
                     st.sampled_from([0, 1, 3, 0x1000, 0x300000, 0x80000000]), edge_ints(32))


@st.composite
def fake_kernels(draw, base: FakeKernel = FakeKernel()) -> FakeKernel:
    """`base` with each header field kept or replaced by an odd value (about half each)."""
    def field(default, odd):
        return draw(st.one_of(st.just(default), odd))

    return FakeKernel(
        setup_sects=field(base.setup_sects, st.one_of(st.integers(0, 64), st.just(255))),
        payload_size=field(base.payload_size, st.sampled_from([0, 16, 4096, 200 * 1024])),
        init_size=field(base.init_size, st.one_of(
            st.sampled_from([0, 0x1000, 0x3F98000, 300 * MiB]), edge_ints(32))),
        kernel_alignment=field(base.kernel_alignment, _pow2_or_odd()),
        pref_address=field(base.pref_address, st.one_of(st.sampled_from([0x200000, 0]), edge_ints())),
        protocol=field(base.protocol, st.sampled_from([0x0200, 0x0205, 0x0206, 0x020A, 0x020B,
                                                       0x020C, 0x0210, 0xFFFF])),
        xloadflags=field(base.xloadflags, st.sampled_from([0x3, 0x1, 0x2, 0x0, 0xFFFF])),
        cmdline_size=field(base.cmdline_size, st.sampled_from([1, 2, 64, 256, 0x100000])),
    )


@st.composite
def bzimages(draw, base: FakeKernel = FakeKernel()) -> bytes:
    k = draw(fake_kernels(base))
    data = bzimage_bytes(k)
    if not draw(st.integers(0, 3)):
        data = bytearray(data)
        if draw(st.booleans()):
            data[0x234] = draw(st.integers(0, 2))            # relocatable_kernel
        if draw(st.booleans()):
            data[0x211] = draw(st.integers(0, 255))          # loadflags
        if draw(st.booleans()):
            struct.pack_into("<I", data, 0x1F4, draw(edge_ints(32)))   # syssize
        if draw(st.booleans()):
            struct.pack_into("<I", data, 0x238, draw(edge_ints(32)))   # cmdline_size
        data = bytes(data)
    if not draw(st.integers(0, 3)):
        data = draw(mutate_bytes(data, 4))
    return data


@st.composite
def elf_kernels(draw) -> bytes:
    """An ELF executable kernel, 64- or 32-bit, with 1-3 PT_LOADs of random shape."""
    elfclass = draw(st.sampled_from([1, 2]))
    machine = draw(st.sampled_from([62, 3, 183, 0] if elfclass == 2 else [3, 62, 40]))
    nload = draw(st.integers(0, 3))
    bits = 64 if elfclass == 2 else 32
    phys = draw(st.one_of(st.sampled_from([0x1000000, 0x18000000, 0x2F000000]), edge_ints(bits)))
    entry = draw(st.one_of(st.just(phys), edge_ints(bits)))
    body_off = 0x1000
    phdrs, body = [], b""
    at = phys
    for i in range(nload):
        filesz = draw(st.sampled_from([0, 0x100, 0x1000, 0x3000]))
        memsz = draw(st.one_of(st.just(filesz), st.sampled_from([0, filesz + 0x2000, filesz // 2])))
        paddr = draw(st.one_of(st.just(at & ((1 << bits) - 1)), edge_ints(bits)))
        offset = draw(st.one_of(st.just(body_off + len(body)), edge_ints(bits)))
        phdrs.append((offset, paddr, filesz, memsz))
        body += bytes([0x90 + i]) * filesz
        at = (at + max(memsz, 0x1000) + 0xFFF) & ~0xFFF
    if elfclass == 2:
        head = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, machine, 1,
                           entry, 64, 0, 0, 64, 56, len(phdrs), 0, 0, 0)
        for offset, paddr, filesz, memsz in phdrs:
            head += struct.pack("<IIQQQQQQ", 1, 7, offset, (paddr + 0xFFFFFFFF80000000) & U64,
                                paddr, filesz, memsz, 0x200000)
    else:
        head = struct.pack("<4sBBBBB7xHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, 0, 2, machine, 1,
                           entry & 0xFFFFFFFF, 52, 0, 0, 52, 32, len(phdrs), 0, 0, 0)
        for offset, paddr, filesz, memsz in phdrs:
            head += struct.pack("<IIIIIIII", 1, offset & 0xFFFFFFFF, (paddr + 0xC0000000) & 0xFFFFFFFF,
                                paddr & 0xFFFFFFFF, filesz, memsz, 7, 0x1000)
    data = head + bytes(body_off - len(head)) + body
    if draw(st.booleans()):
        data = draw(mutate_bytes(data, 3))
    return data


@st.composite
def arm64_images(draw, odd: bool = False) -> bytes:
    """An arm64 Image (booting.rst's 64-byte header, then filler): plausible header fields,
    or, when `odd`, any values and sometimes gzip'd or byte-mutated."""
    import gzip
    text_offset = draw(st.sampled_from([0, 0x80000]))
    image_size = draw(st.sampled_from([0x400000, 0x2010000, 0x1000000]))
    flags = draw(st.sampled_from([0b1010, 0b0010, 0b1110, 0b0000]))
    if odd:
        text_offset = draw(st.one_of(st.sampled_from([0x1000, 0x800, 0x200000, 0x80000]),
                                     edge_ints()))
        image_size = draw(st.one_of(st.sampled_from([0, 0x10000, 0x10000000]), edge_ints()))
        flags = draw(st.one_of(st.just(0b1011), edge_ints()))
    body = draw(st.sampled_from([0x1000, 0x10000, 0x30000]))
    head = struct.pack("<IIQQQQQQ4sI", 0x14000000, 0, text_offset, image_size, flags, 0, 0, 0,
                       b"ARM\x64", 0)
    data = head + bytes(range(256)) * (body // 256)
    if odd and draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
    if odd and draw(st.booleans()):
        data = draw(mutate_bytes(data, 4))
    return data


# mostly Images a loader should take, so that most examples reach the plan checker
ARM64_KERNELS = st.one_of(arm64_images(), arm64_images(), arm64_images(), arm64_images(odd=True),
                          elf_kernels(), st.binary(max_size=2048)).map(Blob)
ARM64_INITRDS = st.one_of(st.none(), st.integers(1, 300 * 1024).map(lambda n: b"\xA5" * n),
                          st.binary(min_size=1, max_size=64), st.just(b"")).map(
                              lambda b: None if b is None else Blob(b))

KERNELS = st.one_of(bzimages(), bzimages(I386_BZIMAGE), elf_kernels(),
                    st.just(vmlinux32_bytes(text_size=0x4000)), st.binary(max_size=2048)).map(Blob)


# ---------------------------------------------------------------------------------------------
# Command lines and options


APPEND_BYTES = st.one_of(
    st.binary(max_size=80).filter(lambda b: b"\0" not in b),
    st.text(max_size=60).map(lambda t: t.encode("utf-8")).filter(lambda b: b"\0" not in b),
    st.sampled_from([b"console=ttyS0 irqpoll", b"elfcorehdr=0x1000", b"a" * 3000, b"\xff\xfe",
                     b"crashkernel=256M", b"mem=64M", b"  ", b"\n", b"caf\xe9",
                     b"memmap=exactmap", b"acpi_rsdp=0", b'"quoted arg"']))

OPTION_VALUES = st.one_of(
    edge_ints().map(str), edge_ints().map(hex), st.integers(-(1 << 70), 1 << 72).map(str),
    st.sampled_from(["-5", "-1", "0x", "", " 1", "1k", "0x1_000", "1e6", "٣", "0b101", "010",
                     "ttyS0", "0x3f8", "115200", "4294967296", "0x10000000000000000"]))


@st.composite
def cli_options(draw) -> List[str]:
    """Extra options for a -p load (never -e/-f: nothing here may boot this machine)."""
    opts: List[str] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["entry", "mem-min", "mem-max", "serial", "serial-baud",
                                     "flag", "syscall", "args", "append", "command-line",
                                     "reuse-cmdline"]))
        if kind in ("entry", "mem-min", "mem-max", "serial", "serial-baud"):
            opts.append(f"--{kind}={draw(OPTION_VALUES)}")
        elif kind == "flag":
            opts.append(draw(st.sampled_from(["--noefi", "--reuse-video-type", "--console-serial",
                                              "--console-vga", "--reset-vga", "--real-mode",
                                              "--no-checks", "--json"])))
        elif kind == "syscall":
            opts.append(draw(st.sampled_from(["-c", "-s", "-a"])))
        elif kind == "args":
            opts.append(draw(st.sampled_from(["--args-linux", "--args-elf", "--args-none"])))
        elif kind == "reuse-cmdline":
            opts.append("--reuse-cmdline")
        else:
            opts.append(f"--{kind}=" + os.fsdecode(draw(APPEND_BYTES)))
    return opts


@st.composite
def arm64_cli_options(draw) -> List[str]:
    """Extra options for an arm64 -p load: its own table's, and some of other tables'."""
    opts: List[str] = []
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 4]))):
        kind = draw(st.sampled_from(["serial", "dtb", "syscall", "append", "command-line",
                                     "reuse-cmdline", "mem", "other"]))
        if kind == "serial":
            opts.append("--serial=" + draw(st.sampled_from(["ttyAMA0", "ttyS0", "", "../x",
                                                            "ttyAMA0/../ttyAMA0"])))
        elif kind == "dtb":
            opts.append("--dtb=" + draw(st.sampled_from(["/dev/null", "/nonexistent", "/proc/self/fd/0"])))
        elif kind == "syscall":
            opts.append(draw(st.sampled_from(["-c", "-s", "-a"])))
        elif kind == "reuse-cmdline":
            opts.append("--reuse-cmdline")
        elif kind == "mem":
            opts.append(f"--{draw(st.sampled_from(['mem-min', 'mem-max']))}={draw(OPTION_VALUES)}")
        elif kind == "other":
            opts.append(draw(st.sampled_from(["--noefi", "--console-serial", "--no-checks",
                                              "--json", "--args-linux"])))
        else:
            opts.append(f"--{kind}=" + os.fsdecode(draw(APPEND_BYTES)))
    return opts


INITRDS = st.one_of(st.none(), st.just(b""), st.binary(min_size=1, max_size=64),
                    st.integers(1, 300 * 1024).map(lambda n: b"\xA5" * n)).map(
                        lambda b: None if b is None else Blob(b))


# ---------------------------------------------------------------------------------------------
# Plan folders (for `pykexec inspect`)


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)


@st.composite
def plan_doc_mutations(draw, doc: dict) -> Tuple[dict, Dict[str, Optional[bytes]]]:
    """A changed plan.json document and changed segment files (None: delete)."""
    doc = json.loads(json.dumps(doc))
    files: Dict[str, Optional[bytes]] = {}
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["field", "segfield", "segfile", "escape", "drop_seg", "shape"]))
        segs = doc.get("segments") if isinstance(doc.get("segments"), list) else []
        if kind == "field":
            doc[draw(st.sampled_from(["format", "arch", "syscall", "flags", "entry", "cmdline",
                                      "segments", "notes", "extra"]))] = draw(JSON_VALUES)
        elif kind == "segfield" and segs and isinstance(segs[0], dict):
            seg = draw(st.sampled_from(segs))
            if isinstance(seg, dict):
                seg[draw(st.sampled_from(["mem", "memsz", "bufsz", "kind", "sha256", "file",
                                          "index"]))] = draw(st.one_of(JSON_VALUES, edge_ints()))
        elif kind == "segfile":
            name = f"segment-{draw(st.integers(0, 8)):02d}.bin"
            files[name] = draw(st.one_of(st.none(), st.binary(max_size=64)))
        elif kind == "escape" and segs and isinstance(segs[0], dict):
            segs[0]["file"] = draw(st.sampled_from(["../../etc/hostname", "/etc/hostname", "/dev/zero",
                                                    ".", "", "segment-00.bin/x", "/proc/self/mem"]))
        elif kind == "drop_seg" and segs:
            segs.pop(draw(st.integers(0, len(segs) - 1)))
        else:
            doc = draw(JSON_VALUES)
            break
    return doc, files
