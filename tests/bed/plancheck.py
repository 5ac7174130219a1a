"""An independent checker for kexec_load crash plans: would this plan boot a capture kernel?

It reads a plan as data (a `pykexec.core.plan.Plan`-shaped object or a saved plan folder,
docs/plan-format.md) and the machine as files (a snapshot folder, docs/snapshot-format.md),
and decodes everything itself: /proc/iomem, the CPU lists, the ELF core header (construct
declarations in tests/bed/kcore.py and below), boot_params (tests/bed/bootproto.py) and the
command line. Nothing here imports pykexec: a bug in pykexec's plan logic must not be able
to hide itself by also being in the checker.

`check(plan, machine, kernel=..., initrd=...)` returns a list of `Problem(check, message)`;
an empty list means the plan passed every check that applies. The checks (CHECKS) follow
what the kernel enforces in kexec_load (page-aligned, disjoint segments inside the crash
region) and what the capture kernel needs to boot and build /proc/vmcore.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from construct import Int16ul, Int32ul, Struct

from tests.bed import bootproto
from tests.bed.kcore import Elf64_Ehdr, Elf64_Phdr

PAGE = 4096
KEXEC_ON_CRASH = 0x1
# i386 kexec-tools sends KEXEC_ARCH_DEFAULT; the kernel takes it or KEXEC_ARCH_386
ARCH_FLAGS = {"x86_64": (62 << 16,), "i386": (0, 3 << 16)}
PT_LOAD, PT_NOTE = 1, 4
ET_CORE = 4
EM_FOR_ARCH = {"x86_64": 62, "i386": 3}
X86_64_KERNEL_TEXT = (0xFFFFFFFF80000000, 0xFFFFFFFFC0000000)  # __START_KERNEL_map, 1 GiB
SETUP_HEADER_END = 0x26C
OLD_CMDLINE_SIZE = 255                # boot protocol < 2.06 has no cmdline_size field

Elf32_Ehdr = Struct(
    "e_ident" / Elf64_Ehdr.subcons[0].subcon,
    "e_type" / Int16ul, "e_machine" / Int16ul, "e_version" / Int32ul, "e_entry" / Int32ul,
    "e_phoff" / Int32ul, "e_shoff" / Int32ul, "e_flags" / Int32ul, "e_ehsize" / Int16ul,
    "e_phentsize" / Int16ul, "e_phnum" / Int16ul, "e_shentsize" / Int16ul, "e_shnum" / Int16ul,
    "e_shstrndx" / Int16ul,
)
Elf32_Phdr = Struct(
    "p_type" / Int32ul, "p_offset" / Int32ul, "p_vaddr" / Int32ul, "p_paddr" / Int32ul,
    "p_filesz" / Int32ul, "p_memsz" / Int32ul, "p_flags" / Int32ul, "p_align" / Int32ul,
)
ELF_LAYOUTS = {1: (Elf32_Ehdr, Elf32_Phdr), 2: (Elf64_Ehdr, Elf64_Phdr)}

CHECKS = (
    "flags",            # crash flag and the arch bits of the plan's arch
    "aligned",          # every segment's mem and memsz page-aligned, bufsz <= memsz
    "in_crash",         # every segment inside one crash region
    "in_ram",           # every segment inside System RAM
    "disjoint",         # no two segments overlap
    "entry",            # entry inside a segment (the purgatory segment when there is one)
    "elfcorehdr",       # elfcorehdr= names the core-header segment, which holds an ELF core
    "core_loads",       # PT_LOADs: disjoint, inside RAM, outside the crash region, cover RAM
    "core_notes",       # one PT_NOTE per possible CPU with crash_notes, plus VMCOREINFO
    "cmdline",          # in boot_params, within cmdline_size, elfcorehdr= whole, = plan.cmdline
    "initrd",           # ramdisk_image/size match the initrd segment and file
    "kernel_bytes",     # the kernel segment(s) hold the kernel file's bytes
)


class Problem(NamedTuple):
    check: str
    message: str

    def __str__(self):
        return f"{self.check}: {self.message}"


# ---------------------------------------------------------------------------------------------
# Inputs as plain data


@dataclass(frozen=True)
class Seg:
    kind: str
    mem: int
    memsz: int
    data: bytes

    @property
    def end(self) -> int:
        return self.mem + self.memsz


@dataclass(frozen=True)
class PlanData:
    arch: str
    syscall: str
    flags: int
    entry: Optional[int]
    cmdline: Optional[str]
    segments: Tuple[Seg, ...]

    @classmethod
    def of(cls, plan) -> "PlanData":
        """From any object with pykexec Plan's attributes (duck-typed, nothing imported)."""
        return cls(plan.arch, plan.syscall, plan.flags, plan.entry, plan.cmdline,
                   tuple(Seg(s.kind, s.mem, s.memsz, bytes(s.data)) for s in plan.segments))

    @classmethod
    def from_folder(cls, folder: str) -> "PlanData":
        with open(os.path.join(folder, "plan.json")) as f:
            doc = json.load(f)
        segs = []
        for s in doc["segments"]:
            with open(os.path.join(folder, s["file"]), "rb") as f:
                segs.append(Seg(s["kind"], s["mem"], s["memsz"], f.read()))
        return cls(doc["arch"], doc["syscall"], doc["flags"], doc["entry"], doc["cmdline"],
                   tuple(segs))

    def of_kind(self, kind: str) -> List[Seg]:
        return [s for s in self.segments if s.kind == kind]

    def read(self, addr: int, size: int) -> Optional[bytes]:
        """`size` bytes at physical `addr` as the kernel leaves them; None if not all covered."""
        out = b""
        while size > 0:
            seg = next((s for s in self.segments if s.mem <= addr < s.end), None)
            if seg is None:
                return None
            n = min(size, seg.end - addr)
            off = addr - seg.mem
            chunk = seg.data[off:off + n]
            out += chunk + bytes(n - len(chunk))
            addr, size = addr + n, size - n
        return out


@dataclass(frozen=True)
class MachineFacts:
    """What the checker needs from a snapshot: half-open ranges, CPU notes, vmcoreinfo."""

    ram: Tuple[Tuple[int, int], ...]
    crash: Tuple[Tuple[int, int], ...]
    cpu_notes: Dict[int, int] = field(default_factory=dict)   # cpu -> physical address
    vmcoreinfo: Optional[Tuple[int, int]] = None


_IOMEM_LINE = re.compile(r"^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$")


def parse_iomem(text: str) -> Tuple[List[Tuple[int, int]], List[Tuple[int, int]]]:
    """(System RAM, Crash kernel) as merged half-open ranges. RAM counts at the top level only."""
    ram, crash = [], []
    for line in text.splitlines():
        m = _IOMEM_LINE.match(line)
        if not m:
            continue
        start, end = int(m.group(2), 16), int(m.group(3), 16) + 1
        name = m.group(4).strip()
        if name == "System RAM" and not m.group(1):
            ram.append((start, end))
        elif name == "Crash kernel":
            crash.append((start, end))
    return merge(ram), sorted(crash)


def merge(spans) -> List[Tuple[int, int]]:
    out: List[List[int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [tuple(x) for x in out]


def cpu_list(text: str) -> List[int]:
    cpus = []
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


def read_machine(root: str) -> MachineFacts:
    def text(rel):
        try:
            with open(os.path.join(root, rel), "rb") as f:
                return f.read(1 << 22).decode("latin-1")
        except OSError:
            return None

    ram, crash = parse_iomem(text("proc/iomem") or "")
    notes = {}
    # glibc's count of configured CPUs: the possible list, else the cpuN folders
    possible = (text("sys/devices/system/cpu/possible") or "").strip(" \t\r\n\0")
    try:
        cpus = cpu_list(possible) if possible else None
    except ValueError:
        cpus = None
    if cpus is None:
        folder = os.path.join(root, "sys/devices/system/cpu")
        names = os.listdir(folder) if os.path.isdir(folder) else []
        cpus = sorted(int(n[3:]) for n in names if re.fullmatch(r"cpu[0-9]+", n))
    for cpu in cpus:
        value = text(f"sys/devices/system/cpu/cpu{cpu}/crash_notes")
        if value is not None:
            try:
                notes[cpu] = int(value.strip(" \t\r\n\0"), 16)
            except ValueError:
                continue
    vmcoreinfo = (text("sys/kernel/vmcoreinfo") or "").split()
    try:
        vi = (int(vmcoreinfo[0], 16), int(vmcoreinfo[1], 16))
    except (IndexError, ValueError):
        vi = None
    return MachineFacts(tuple(ram), tuple(crash), notes, vi)


# ---------------------------------------------------------------------------------------------
# Decoders


def parse_memsize(text: str) -> int:
    """The kernel's memparse: C integer with an optional K/M/G/T/P/E suffix."""
    m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([KkMmGgTtPpEe]?)", text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    num = m.group(1)
    value = int(num, 16) if num[:2].lower() == "0x" else int(num, 8) if num.startswith("0") else int(num)
    shift = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}[m.group(2).lower()]
    return value << shift


def elfcorehdr_address(cmdline: str) -> Optional[int]:
    """The last elfcorehdr=[size@]addr on the line (the kernel keeps the last one)."""
    found = None
    for word in cmdline.split(" "):
        if word.startswith("elfcorehdr="):
            value = word[len("elfcorehdr="):]
            found = parse_memsize(value.rpartition("@")[2])
    return found


class CoreHeader(NamedTuple):
    elfclass: int
    machine: int
    phdrs: list


def parse_core_header(data: bytes) -> CoreHeader:
    if data[:4] != b"\x7fELF" or data[4] not in ELF_LAYOUTS:
        raise ValueError("no ELF header")
    ehdr_s, phdr_s = ELF_LAYOUTS[data[4]]
    ehdr = ehdr_s.parse(data)
    if ehdr.e_type != ET_CORE:
        raise ValueError(f"e_type {ehdr.e_type}, not ET_CORE")
    if ehdr.e_phentsize != phdr_s.sizeof():
        raise ValueError(f"e_phentsize {ehdr.e_phentsize}")
    end = ehdr.e_phoff + ehdr.e_phnum * phdr_s.sizeof()
    if end > len(data):
        raise ValueError("program headers past the segment's bytes")
    phdrs = [phdr_s.parse(data[ehdr.e_phoff + i * phdr_s.sizeof():]) for i in range(ehdr.e_phnum)]
    return CoreHeader(data[4], ehdr.e_machine, phdrs)


def boot_params_of(plan: PlanData):
    segs = plan.of_kind("boot_params")
    if len(segs) != 1 or len(segs[0].data) < SETUP_HEADER_END:
        return None
    return bootproto.BootParams.parse(segs[0].data[:PAGE].ljust(PAGE, b"\0"))


def bzimage_layout(kernel: bytes) -> Optional[Tuple[int, int]]:
    """(setup bytes, cmdline_size) of a bzImage, None when `kernel` is not one."""
    if len(kernel) < SETUP_HEADER_END or kernel[0x202:0x206] != b"HdrS":
        return None
    hdr = bootproto.SetupHeader.parse(kernel[bootproto.SETUP_HEADER_OFFSET:SETUP_HEADER_END])
    setup = ((hdr.setup_sects or 4) + 1) * 512
    cmdline_size = hdr.cmdline_size if hdr.version >= 0x206 else OLD_CMDLINE_SIZE
    return setup, cmdline_size


def elf_loads(kernel: bytes):
    """PT_LOADs of an ELF executable as (offset, paddr, filesz, memsz), None if not ELF."""
    if kernel[:4] != b"\x7fELF" or len(kernel) < 52 or kernel[4] not in ELF_LAYOUTS:
        return None
    ehdr_s, phdr_s = ELF_LAYOUTS[kernel[4]]
    ehdr = ehdr_s.parse(kernel)
    out = []
    for i in range(ehdr.e_phnum):
        ph = phdr_s.parse(kernel[ehdr.e_phoff + i * phdr_s.sizeof():])
        if ph.p_type == PT_LOAD:
            out.append((ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz))
    return out


# ---------------------------------------------------------------------------------------------
# The checks


def _inside(span, ranges) -> bool:
    return any(s <= span[0] and span[1] <= e for s, e in ranges)


def _subtract(spans, cuts):
    out = list(spans)
    for cs, ce in cuts:
        nxt = []
        for s, e in out:
            if ce <= s or cs >= e:
                nxt.append((s, e))
                continue
            if s < cs:
                nxt.append((s, cs))
            if ce < e:
                nxt.append((ce, e))
        out = nxt
    return out


def check(plan, machine: MachineFacts, kernel: Optional[bytes] = None,
          initrd: Optional[bytes] = None, crash: bool = True) -> List[Problem]:
    """Every problem of a kexec_load plan (`plan`: Plan-shaped object, PlanData or folder)."""
    if isinstance(plan, str):
        plan = PlanData.from_folder(plan)
    elif not isinstance(plan, PlanData):
        plan = PlanData.of(plan)
    problems: List[Problem] = []

    def fail(name, message):
        problems.append(Problem(name, message))

    if plan.syscall != "kexec_load":
        return _check_file_load(plan, kernel, initrd)
    segs = sorted(plan.segments, key=lambda s: s.mem)

    # flags
    if plan.arch in ARCH_FLAGS and plan.flags & 0xFFFF0000 not in ARCH_FLAGS[plan.arch]:
        fail("flags", f"arch bits {plan.flags & 0xFFFF0000:#x} for {plan.arch}")
    if crash and not plan.flags & KEXEC_ON_CRASH:
        fail("flags", f"flags {plan.flags:#x} lack KEXEC_ON_CRASH")

    # segments
    for s in segs:
        where = f"{s.kind} segment at {s.mem:#x}+{s.memsz:#x}"
        if s.mem % PAGE or s.memsz % PAGE or s.memsz == 0 or len(s.data) > s.memsz:
            fail("aligned", f"{where}: not page-aligned, empty or bufsz {len(s.data):#x} > memsz")
        if crash and not _inside((s.mem, s.end), machine.crash):
            fail("in_crash", f"{where} is not inside a crash region")
        if not _inside((s.mem, s.end), machine.ram):
            fail("in_ram", f"{where} is not inside System RAM")
    for a, b in zip(segs, segs[1:]):
        if b.mem < a.end:
            fail("disjoint", f"{a.kind} {a.mem:#x}+{a.memsz:#x} overlaps {b.kind} {b.mem:#x}")

    # entry
    holder = [s for s in segs if plan.entry is not None and s.mem <= plan.entry < s.end]
    purgatory = plan.of_kind("purgatory")
    if not holder:
        fail("entry", f"entry {plan.entry!r} is in no segment")
    elif purgatory and holder[0].kind != "purgatory":
        fail("entry", f"entry {plan.entry:#x} is in the {holder[0].kind} segment, not purgatory")

    params = boot_params_of(plan) if plan.of_kind("boot_params") else None
    cmdline = _check_cmdline(plan, params, kernel, fail)
    if crash:
        _check_core(plan, machine, cmdline, fail)
    if params is not None:
        _check_initrd(plan, params, initrd, fail)
    if kernel is not None:
        _check_kernel(plan, kernel, fail)
    return problems


def _check_cmdline(plan: PlanData, params, kernel, fail) -> Optional[str]:
    """The command line the capture kernel will see (None when there is no boot_params)."""
    if params is None:
        if plan.of_kind("boot_params"):
            fail("cmdline", "boot_params segment too short to hold a setup header")
        return plan.cmdline
    ptr = params.hdr.cmd_line_ptr | params.ext_cmd_line_ptr << 32
    limit = params.hdr.cmdline_size
    layout = bzimage_layout(kernel) if kernel is not None else None
    if layout is not None:
        limit = layout[1]
    seg = next((s for s in plan.segments if ptr and s.mem <= ptr < s.end), None)
    if seg is None:
        fail("cmdline", f"cmd_line_ptr {ptr:#x} is in no segment")
        return None
    raw = plan.read(ptr, min(limit + 1, seg.end - ptr))
    nul = raw.find(b"\0")
    if nul < 0 or nul > limit:
        fail("cmdline", f"command line at {ptr:#x} is longer than cmdline_size {limit} "
                        "(the kernel cuts it there)")
        text = raw[:limit].decode("latin-1")
    else:
        text = raw[:nul].decode("latin-1")
    if plan.cmdline is not None and plan.cmdline.encode("utf-8", "surrogateescape") != text.encode("latin-1"):
        fail("cmdline", f"plan says {plan.cmdline!r}, boot_params holds {text!r}")
    return text


def _check_core(plan: PlanData, machine: MachineFacts, cmdline: Optional[str], fail) -> None:
    cores = plan.of_kind("elfcorehdr")
    try:
        addr = elfcorehdr_address(cmdline) if cmdline is not None else None
    except ValueError as e:
        fail("elfcorehdr", str(e))
        return
    if addr is None:
        fail("elfcorehdr", f"no elfcorehdr= in {cmdline!r}")
        return
    if len(cores) != 1 or cores[0].mem != addr:
        fail("elfcorehdr", f"elfcorehdr={addr:#x}, core-header segments at "
                           f"{[hex(c.mem) for c in cores]}")
        return
    try:
        core = parse_core_header(cores[0].data)
    except (ValueError, Exception) as e:   # construct raises its own StreamError
        fail("elfcorehdr", f"core header at {addr:#x} does not parse: {e}")
        return
    if plan.arch in EM_FOR_ARCH and core.machine != EM_FOR_ARCH[plan.arch]:
        fail("elfcorehdr", f"core header e_machine {core.machine} for {plan.arch}")

    # notes
    notes = [p for p in core.phdrs if p.p_type == PT_NOTE]
    want = sorted(machine.cpu_notes.values()) + ([machine.vmcoreinfo[0]] if machine.vmcoreinfo else [])
    got = sorted(p.p_paddr for p in notes)
    if got != sorted(want):
        fail("core_notes", f"PT_NOTEs at {[hex(a) for a in got]}, machine has notes at "
                           f"{[hex(a) for a in sorted(want)]}")
    for p in notes:
        if p.p_offset != p.p_paddr or p.p_memsz == 0:
            fail("core_notes", f"PT_NOTE at {p.p_paddr:#x}: offset {p.p_offset:#x}, size {p.p_memsz:#x}")

    # loads
    loads = [p for p in core.phdrs if p.p_type == PT_LOAD]
    text = [p for p in loads if plan.arch == "x86_64"
            and X86_64_KERNEL_TEXT[0] <= p.p_vaddr < X86_64_KERNEL_TEXT[1]]
    ram_loads = [p for p in loads if p not in text]
    spans = []
    backups = plan.of_kind("backup")
    for p in loads:
        span = (p.p_paddr, p.p_paddr + p.p_memsz)
        where = f"PT_LOAD {p.p_paddr:#x}+{p.p_memsz:#x}"
        if p.p_memsz == 0 or p.p_filesz != p.p_memsz:
            fail("core_loads", f"{where}: filesz {p.p_filesz:#x}")
        if not _inside(span, machine.ram):
            fail("core_loads", f"{where} is not inside System RAM")
        if p in text:
            continue
        spans.append(span)
        if any(span[0] < ce and cs < span[1] for cs, ce in machine.crash):
            fail("core_loads", f"{where} reaches into the crash region")
        if p.p_offset != p.p_paddr:
            # x86's backup rule: low RAM is read from the copy purgatory makes at the panic
            ok = any(b.mem == p.p_offset and p.p_memsz <= b.memsz for b in backups)
            if not ok:
                fail("core_loads", f"{where} is read from {p.p_offset:#x}, which is no backup segment")
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        if b[0] < a[1]:
            fail("core_loads", f"PT_LOADs {a[0]:#x}-{a[1]:#x} and {b[0]:#x}-{b[1]:#x} overlap")
    if len(text) > 1:
        fail("core_loads", f"{len(text)} kernel-text PT_LOADs")
    missing = _subtract(_subtract(machine.ram, machine.crash), spans)
    if missing:
        s, e = missing[0]
        fail("core_loads", f"RAM {s:#x}-{e:#x} outside the crash region is in no PT_LOAD "
                           f"({len(missing)} such pieces)")


def _check_initrd(plan: PlanData, params, initrd, fail) -> None:
    image = params.hdr.ramdisk_image | params.ext_ramdisk_image << 32
    size = params.hdr.ramdisk_size | params.ext_ramdisk_size << 32
    segs = plan.of_kind("initrd")
    if initrd is None and not segs:
        if image or size:
            fail("initrd", f"no initrd, but boot_params says {image:#x}+{size:#x}")
        return
    if len(segs) != 1:
        fail("initrd", f"{len(segs)} initrd segments")
        return
    seg = segs[0]
    if (image, size) != (seg.mem, len(seg.data)):
        fail("initrd", f"boot_params ramdisk {image:#x}+{size:#x}, initrd segment "
                       f"{seg.mem:#x}+{len(seg.data):#x}")
    if initrd is not None and seg.data != initrd:
        fail("initrd", f"initrd segment ({len(seg.data)} bytes) is not the initrd file "
                       f"({len(initrd)} bytes)")


def _check_kernel(plan: PlanData, kernel: bytes, fail) -> None:
    layout = bzimage_layout(kernel)
    if layout is not None:
        segs = plan.of_kind("kernel")
        body = kernel[layout[0]:]
        if len(segs) != 1 or segs[0].data.rstrip(b"\0") != body.rstrip(b"\0"):
            fail("kernel_bytes", f"kernel segment is not the bzImage's bytes from {layout[0]:#x} "
                                 f"({len(body)} bytes)")
        return
    loads = elf_loads(kernel)
    if loads is None:
        fail("kernel_bytes", "the kernel file is neither a bzImage nor ELF, yet a plan was made")
        return
    placed = [s for s in plan.segments if s.kind in ("kernel", "elf_load")]
    if not placed or not any(memsz for _, _, _, memsz in loads):
        fail("kernel_bytes", "no kernel segment, or an ELF kernel without memory")
        return
    for offset, paddr, filesz, memsz in loads:
        if memsz == 0:
            continue
        want = kernel[offset:offset + filesz]
        if filesz > memsz or len(want) != filesz:
            fail("kernel_bytes", f"ELF PT_LOAD at {paddr:#x}: filesz {filesz:#x} memsz {memsz:#x} "
                                 f"(file has {len(want)} bytes)")
            continue
        got = plan.read(paddr, memsz)
        if got is None or got[:filesz] != want or any(got[filesz:]):
            fail("kernel_bytes", f"ELF PT_LOAD {paddr:#x}+{memsz:#x} is not in the plan as the "
                                 "file has it")


def _check_file_load(plan: PlanData, kernel, initrd) -> List[Problem]:
    problems = []
    pairs = (("kernel", kernel), ("initrd", initrd))
    for kind, data in pairs:
        segs = plan.of_kind(kind)
        if data is not None and (len(segs) != 1 or segs[0].data != data):
            problems.append(Problem("kernel_bytes" if kind == "kernel" else "initrd",
                                    f"kexec_file_load {kind} is not the file"))
    return problems
