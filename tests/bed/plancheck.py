"""An independent checker for kexec_load crash plans: would this plan boot a capture kernel?

It reads a plan as data (a `pykexec.core.plan.Plan`-shaped object or a saved plan folder,
docs/plan-format.md) and the machine as files (a snapshot folder, docs/snapshot-format.md),
and decodes everything itself: /proc/iomem, the CPU lists, the ELF core header (construct
declarations in tests/bed/kcore.py and below), boot_params (tests/bed/bootproto.py) and the
command line. Nothing here imports pykexec: a bug in pykexec's plan logic must not be able
to hide itself by also being in the checker.

`check(plan, machine, kernel=..., initrd=...)` returns a list of `Problem(check, message)`;
an empty list means the plan passed every check that applies. The checks (CHECKS for x86,
ARM64_CHECKS for arm64) follow what the kernel enforces in kexec_load (page-aligned,
disjoint segments inside the crash region) and what the capture kernel needs to boot and
build /proc/vmcore.

arm64 (booting.rst and the kernel's early device-tree code, stated here from those facts):
the Image at a 2 MiB aligned base + its header's text_offset with image_size of room; the
device tree (decoded by the minimal FDT walk below) passes the command line in
/chosen/bootargs, the core header's (address, size) in linux,elfcorehdr, the crash
region(s) in linux,usable-memory-range and the initrd's bounds in linux,initrd-start/end;
the core header's RAM PT_LOADs use the linear map /proc/kcore shows and its kernel-text
PT_LOAD the image mapping (kimage_voffset, _stext from the VMCOREINFO in /proc/kcore);
purgatory enters the Image with x0 = the device tree, once the SHA-256 of every other
segment matches (its variables read back from the bytes at the plan's symbol addresses).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from construct import Bytes, Const, ConstructError, Int16ul, Int32ub, Int32ul, Int64ul, Struct

from tests.bed import bootproto
from tests.bed.kcore import Elf64_Ehdr, Elf64_Nhdr, Elf64_Phdr

PAGE = 4096
KEXEC_ON_CRASH = 0x1
# i386 kexec-tools sends KEXEC_ARCH_DEFAULT; the kernel takes it or KEXEC_ARCH_386
EM_AARCH64 = 183
ARCH_FLAGS = {"x86_64": (62 << 16,), "i386": (0, 3 << 16), "arm64": (EM_AARCH64 << 16,)}
PT_LOAD, PT_NOTE = 1, 4
ET_CORE = 4
EM_FOR_ARCH = {"x86_64": 62, "i386": 3, "arm64": EM_AARCH64}
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
ARM64_CHECKS = (
    "flags", "aligned", "in_crash", "in_ram", "disjoint", "entry",
    "image",            # Image header; 2 MiB aligned base + text_offset; image_size room
    "dtb",              # one device tree segment that decodes, <= 2 MiB, with /chosen
    "cmdline",          # /chosen/bootargs = plan.cmdline
    "initrd",           # /chosen/linux,initrd-start/end = the initrd segment, or absent
    "usable_memory",    # /chosen/linux,usable-memory-range = exactly the crash region(s)
    "elfcorehdr",       # /chosen/linux,elfcorehdr = (address, size) of the core header
    "core_loads", "core_notes",
    "linear_map",       # RAM PT_LOADs: p_vaddr - p_paddr = the linear map's, as kcore has it
    "kernel_text",      # one PT_LOAD for the kernel image, as VMCOREINFO and kcore place it
    "purgatory",        # kernel_entry = the Image, dtb_addr (x0) = the DTB, SHA-256 table
    "kernel_bytes",
)

# arm64 Image header (Documentation/arch/arm64/booting.rst), 64 bytes
Arm64ImageHeader = Struct(
    "code0" / Int32ul, "code1" / Int32ul, "text_offset" / Int64ul, "image_size" / Int64ul,
    "flags" / Int64ul, "res2" / Int64ul, "res3" / Int64ul, "res4" / Int64ul,
    "magic" / Bytes(4), "res5" / Int32ul,
)
ARM64_IMAGE_MAGIC = b"ARM\x64"
ARM64_KIMG_ALIGN = 2 << 20
ARM64_LEGACY_TEXT_OFFSET = 0x80000     # booting.rst: image_size 0 means text_offset 0x80000
ARM64_DTB_MAX = 2 << 20                # booting.rst: the device tree must not exceed 2 MiB
ARM64_KIMAGE_MAX = 1 << 30             # kcore's image entry, told from the vmalloc area
NO_PADDR = (1 << 64) - 1               # kcore's p_paddr for what has no physical address
MASK64 = (1 << 64) - 1

# Flattened device tree (devicetree specification, chapter 5), big-endian
FdtHeader = Struct(
    "magic" / Const(0xD00DFEED, Int32ub), "totalsize" / Int32ub, "off_dt_struct" / Int32ub,
    "off_dt_strings" / Int32ub, "off_mem_rsvmap" / Int32ub, "version" / Int32ub,
    "last_comp_version" / Int32ub, "boot_cpuid_phys" / Int32ub, "size_dt_strings" / Int32ub,
    "size_dt_struct" / Int32ub,
)
FdtPropHeader = Struct("len" / Int32ub, "nameoff" / Int32ub)
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9
ROOT_CELLS_DEFAULT = (1, 1)            # the kernel's dt_root_addr/size_cells without the props

# the purgatory's loader-visible variables (arch/common/purgatory/core.h, arm64 purgatory.c)
Sha256Region = Struct("start" / Int64ul, "len" / Int64ul)
SHA256_REGIONS = 16


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
    notes: dict = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, plan) -> "PlanData":
        """From any object with pykexec Plan's attributes (duck-typed, nothing imported)."""
        notes = getattr(plan, "notes", None)
        return cls(plan.arch, plan.syscall, plan.flags, plan.entry, plan.cmdline,
                   tuple(Seg(s.kind, s.mem, s.memsz, bytes(s.data)) for s in plan.segments),
                   notes if isinstance(notes, dict) else {})

    @classmethod
    def from_folder(cls, folder: str) -> "PlanData":
        with open(os.path.join(folder, "plan.json")) as f:
            doc = json.load(f)
        segs = []
        for s in doc["segments"]:
            with open(os.path.join(folder, s["file"]), "rb") as f:
                segs.append(Seg(s["kind"], s["mem"], s["memsz"], f.read()))
        notes = doc.get("notes")
        return cls(doc["arch"], doc["syscall"], doc["flags"], doc["entry"], doc["cmdline"],
                   tuple(segs), notes if isinstance(notes, dict) else {})

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
    # /proc/kcore's head: PT_LOADs as (vaddr, paddr, memsz) and its VMCOREINFO note's text
    kcore_loads: Tuple[Tuple[int, int, int], ...] = ()
    kcore_vmcoreinfo: Optional[str] = None
    firmware_fdt: Optional[bytes] = None                      # sys/firmware/fdt


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
    kcore = (text("proc/kcore") or "").encode("latin-1")
    loads, info = parse_kcore(kcore)
    fdt = (text("sys/firmware/fdt") or "").encode("latin-1") or None
    return MachineFacts(tuple(ram), tuple(crash), notes, vi, loads, info, fdt)


def parse_kcore(data: bytes) -> Tuple[Tuple[Tuple[int, int, int], ...], Optional[str]]:
    """(PT_LOADs as (vaddr, paddr, memsz), VMCOREINFO text) of a kcore head; ((), None) when
    it is not a readable ELF64 core."""
    try:
        ehdr = Elf64_Ehdr.parse(data)
        if ehdr.e_phentsize != Elf64_Phdr.sizeof() or ehdr.e_phoff + ehdr.e_phnum * 56 > len(data):
            return (), None
        phdrs = [Elf64_Phdr.parse(data[ehdr.e_phoff + i * 56:]) for i in range(ehdr.e_phnum)]
    except ConstructError:
        return (), None
    loads = tuple((p.p_vaddr, p.p_paddr, p.p_memsz) for p in phdrs if p.p_type == PT_LOAD)
    info = None
    for p in phdrs:
        if p.p_type != PT_NOTE:
            continue
        notes = data[p.p_offset:p.p_offset + p.p_filesz]
        at = 0
        while at + Elf64_Nhdr.sizeof() <= len(notes):
            n = Elf64_Nhdr.parse(notes[at:])
            name_at = at + Elf64_Nhdr.sizeof()
            desc_at = name_at + -(-n.n_namesz // 4) * 4
            name = notes[name_at:name_at + n.n_namesz].rstrip(b"\0")
            if name == b"VMCOREINFO" and info is None:
                info = notes[desc_at:desc_at + n.n_descsz].decode("latin-1")
            at = desc_at + -(-n.n_descsz // 4) * 4
    return loads, info


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


def fdt_nodes(blob: bytes, wanted=("/", "/chosen")) -> Dict[str, Dict[str, bytes]]:
    """The properties of the `wanted` nodes (full paths) of a flattened device tree, by a
    walk of its structure block; ValueError when the blob is not a well-formed tree."""
    try:
        hdr = FdtHeader.parse(blob)
    except ConstructError:
        raise ValueError("no FDT header (magic 0xd00dfeed)") from None
    if hdr.totalsize > len(blob) or hdr.version < 16 or hdr.last_comp_version > 17:
        raise ValueError(f"FDT totalsize {hdr.totalsize:#x} of {len(blob):#x} bytes, "
                         f"version {hdr.version}/{hdr.last_comp_version}")
    struct_end = hdr.off_dt_struct + hdr.size_dt_struct if hdr.version >= 17 else hdr.totalsize
    strings_end = hdr.off_dt_strings + hdr.size_dt_strings
    if struct_end > hdr.totalsize or strings_end > hdr.totalsize:
        raise ValueError("FDT blocks reach past totalsize")
    out: Dict[str, Dict[str, bytes]] = {}
    path: List[str] = []
    at, ended = hdr.off_dt_struct, False
    while not ended:
        if at + 4 > struct_end:
            raise ValueError("FDT structure block ends without FDT_END")
        token = Int32ub.parse(blob[at:at + 4])
        at += 4
        if token == FDT_BEGIN_NODE:
            end = blob.find(b"\0", at, struct_end)
            if end < 0 or (not path and end != at):
                raise ValueError("FDT node name unterminated, or a named root")
            path.append(blob[at:end].decode("latin-1"))
            at = -(-(end + 1) // 4) * 4
            name = "/" + "/".join(path[1:])
            if name in wanted:
                out.setdefault(name, {})
        elif token == FDT_END_NODE:
            if not path:
                raise ValueError("FDT_END_NODE outside any node")
            path.pop()
        elif token == FDT_PROP:
            if not path or at + 8 > struct_end:
                raise ValueError("FDT property outside a node or cut")
            head = FdtPropHeader.parse(blob[at:at + 8])
            value_at = at + 8
            if value_at + head.len > struct_end:
                raise ValueError("FDT property value past the structure block")
            name_at = hdr.off_dt_strings + head.nameoff
            name_end = blob.find(b"\0", name_at, strings_end)
            if name_end < 0:
                raise ValueError("FDT property name outside the strings block")
            node = "/" + "/".join(path[1:])
            if node in out:
                out[node].setdefault(blob[name_at:name_end].decode("latin-1"),
                                     blob[value_at:value_at + head.len])
            at = -(-(value_at + head.len) // 4) * 4
        elif token == FDT_END:
            ended = True
        elif token != FDT_NOP:
            raise ValueError(f"FDT token {token:#x} at {at - 4:#x}")
    if path:
        raise ValueError("FDT_END inside a node")
    return out


def be_cells(value: bytes) -> int:
    """A number of big-endian cells as the kernel's of_read_number reads it (low 64 bits)."""
    return int.from_bytes(value, "big") & ((1 << 64) - 1)


def parse_vmcoreinfo(text: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out.setdefault(key, value.strip())
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

    if plan.arch == "arm64":
        _check_arm64(plan, machine, kernel, initrd, crash, fail)
        return problems
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
    core = _core_at(plan, machine, cores[0], fail)
    if core is None:
        return
    text = [p for p in core.phdrs if p.p_type == PT_LOAD and plan.arch == "x86_64"
            and X86_64_KERNEL_TEXT[0] <= p.p_vaddr < X86_64_KERNEL_TEXT[1]]
    _check_core_loads(plan, machine, core, text, fail)


def _core_at(plan: PlanData, machine: MachineFacts, seg: Seg, fail) -> Optional[CoreHeader]:
    """The core header in `seg`, its e_machine and its notes checked (None: unreadable)."""
    addr = seg.mem
    try:
        core = parse_core_header(seg.data)
    except (ValueError, Exception) as e:   # construct raises its own StreamError
        fail("elfcorehdr", f"core header at {addr:#x} does not parse: {e}")
        return None
    if plan.arch in EM_FOR_ARCH and core.machine != EM_FOR_ARCH[plan.arch]:
        fail("elfcorehdr", f"core header e_machine {core.machine} for {plan.arch}")
    if plan.arch == "arm64" and core.elfclass != 2:
        fail("elfcorehdr", f"core header ELF class {core.elfclass}, arm64 dumps are ELF64")

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
    return core


def _check_core_loads(plan: PlanData, machine: MachineFacts, core: CoreHeader, text, fail) -> None:
    """PT_LOADs other than `text` (the kernel-text ones): RAM outside the crash region, all of it."""
    loads = [p for p in core.phdrs if p.p_type == PT_LOAD]
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


# ---------------------------------------------------------------------------------------------
# arm64


def _check_arm64(plan: PlanData, machine: MachineFacts, kernel, initrd, crash, fail) -> None:
    image = _check_arm64_image(plan, machine, crash, fail)
    chosen, cells = _arm64_chosen(plan, fail)
    core_seg = None
    if chosen is not None:
        _check_bootargs(plan, chosen, machine, fail)
        _check_chosen_initrd(plan, chosen, initrd, fail)
        if crash:
            _check_usable_memory(chosen, cells, machine, fail)
            core_seg = _check_chosen_elfcorehdr(plan, chosen, cells, fail)
    if core_seg is not None:
        core = _core_at(plan, machine, core_seg, fail)
        if core is not None:
            text = _check_arm64_maps(core, machine, fail)
            _check_core_loads(plan, machine, core, text, fail)
    _check_arm64_purgatory(plan, image, fail)
    if kernel is not None and image is not None:
        _check_arm64_kernel(image, kernel, fail)


def _check_arm64_image(plan: PlanData, machine: MachineFacts, crash: bool, fail) -> Optional[Seg]:
    """The kernel segment: an Image at a 2 MiB aligned base + text_offset, with room for
    image_size (BSS included) that no other segment takes."""
    segs = plan.of_kind("kernel")
    if len(segs) != 1:
        fail("image", f"{len(segs)} kernel segments, an arm64 load has one Image")
        return None
    seg = segs[0]
    if len(seg.data) < Arm64ImageHeader.sizeof():
        fail("image", f"kernel segment of {len(seg.data)} bytes holds no Image header")
        return None
    hdr = Arm64ImageHeader.parse(seg.data)
    if hdr.magic != ARM64_IMAGE_MAGIC:
        fail("image", f"kernel segment at {seg.mem:#x} has no Image magic at 0x38 ({hdr.magic!r})")
        return None
    text_offset, room = hdr.text_offset, hdr.image_size
    if room == 0:
        text_offset, room = ARM64_LEGACY_TEXT_OFFSET, len(seg.data)
    base = seg.mem - text_offset
    if base % ARM64_KIMG_ALIGN:
        fail("image", f"Image at {seg.mem:#x} - text_offset {text_offset:#x} = {base:#x} is not "
                      "2 MiB aligned")
    span = (seg.mem, seg.mem + room)
    if crash and not _inside(span, machine.crash):
        fail("image", f"the Image's {room:#x} bytes (image_size) from {seg.mem:#x} are not "
                      "inside a crash region")
    for other in plan.segments:
        if other is not seg and other.mem < span[1] and span[0] < other.end:
            fail("image", f"{other.kind} segment at {other.mem:#x} lies in the Image's "
                          f"{room:#x} bytes from {seg.mem:#x} (its BSS would overwrite it)")
    return seg


def _arm64_chosen(plan: PlanData, fail):
    """(/chosen's properties, (#address-cells, #size-cells) of the root), or (None, None)."""
    segs = plan.of_kind("dtb")
    if len(segs) != 1:
        fail("dtb", f"{len(segs)} device tree segments, an arm64 load passes one")
        return None, None
    seg = segs[0]
    try:
        nodes = fdt_nodes(seg.data)
        totalsize = FdtHeader.parse(seg.data).totalsize
    except ValueError as e:
        fail("dtb", f"device tree at {seg.mem:#x} does not decode: {e}")
        return None, None
    if totalsize > ARM64_DTB_MAX:
        fail("dtb", f"device tree of {totalsize:#x} bytes, booting.rst allows 2 MiB")
    if "/chosen" not in nodes:
        fail("dtb", f"device tree at {seg.mem:#x} has no /chosen")
        return None, None
    cells = []
    for prop, default in zip(("#address-cells", "#size-cells"), ROOT_CELLS_DEFAULT):
        value = nodes["/"].get(prop)
        if value is not None and (len(value) != 4 or not be_cells(value)):
            fail("dtb", f"root {prop} is {value.hex()}, not one non-zero cell")
            return None, None
        cells.append(default if value is None else be_cells(value))
    return nodes["/chosen"], tuple(cells)


def _check_bootargs(plan: PlanData, chosen, machine: MachineFacts, fail) -> None:
    value = chosen.get("bootargs")
    want = (plan.cmdline or "").encode("utf-8", "surrogateescape")
    if value is None:
        if want:
            fail("cmdline", f"no /chosen/bootargs, the plan's command line is {plan.cmdline!r}")
        return
    if not value.endswith(b"\0") or b"\0" in value[:-1]:
        fail("cmdline", f"/chosen/bootargs {value[:80]!r} is not one NUL-terminated string")
        return
    if not want and value == _firmware_bootargs(machine):
        # an empty command line leaves the tree's own bootargs, as kexec-tools does (a plan
        # that says "" for it: the oracle's)
        return
    if value[:-1] != want:
        fail("cmdline", f"plan says {plan.cmdline!r}, /chosen/bootargs holds {value[:-1]!r}")
    elif (plan.notes or {}).get("cmdline_origin") and value != _firmware_bootargs(machine):
        # pykexec states the line it kept: it must be the running tree's
        fail("cmdline", f"the plan says it kept the running tree's bootargs, but {value[:80]!r} "
                        "is not the running tree's /chosen/bootargs")


def _firmware_bootargs(machine: MachineFacts) -> Optional[bytes]:
    try:
        return fdt_nodes(machine.firmware_fdt or b"").get("/chosen", {}).get("bootargs")
    except ValueError:
        return None


def _check_chosen_initrd(plan: PlanData, chosen, initrd, fail) -> None:
    start, end = chosen.get("linux,initrd-start"), chosen.get("linux,initrd-end")
    segs = plan.of_kind("initrd")
    if not segs:
        if start is not None or end is not None:
            fail("initrd", "no initrd segment, but /chosen has linux,initrd-start/end (the new "
                           "kernel would take memory it does not own for its initramfs)")
        if initrd:
            fail("initrd", f"an initrd of {len(initrd)} bytes was asked for, none is planned")
        return
    if len(segs) != 1:
        fail("initrd", f"{len(segs)} initrd segments")
        return
    seg = segs[0]
    if start is None or end is None or len(start) not in (4, 8) or len(end) not in (4, 8):
        fail("initrd", "/chosen lacks one-or-two-cell linux,initrd-start/end for the initrd "
                       f"segment at {seg.mem:#x}")
        return
    got = (be_cells(start), be_cells(end))
    if got != (seg.mem, seg.mem + len(seg.data)):
        fail("initrd", f"/chosen initrd {got[0]:#x}-{got[1]:#x}, initrd segment "
                       f"{seg.mem:#x}+{len(seg.data):#x}")
    if initrd is not None and seg.data != initrd:
        fail("initrd", f"initrd segment ({len(seg.data)} bytes) is not the initrd file "
                       f"({len(initrd)} bytes)")


def _pairs(value: bytes, cells) -> Optional[List[Tuple[int, int]]]:
    """(address, size) pairs in the root's cells, None when the length does not divide."""
    step = 4 * (cells[0] + cells[1])
    if not value or len(value) % step:
        return None
    return [(be_cells(value[i:i + 4 * cells[0]]), be_cells(value[i + 4 * cells[0]:i + step]))
            for i in range(0, len(value), step)]


def _check_usable_memory(chosen, cells, machine: MachineFacts, fail) -> None:
    value = chosen.get("linux,usable-memory-range")
    pairs = _pairs(value, cells) if value is not None else None
    want = sorted((s, e - s) for s, e in machine.crash)
    if pairs is None:
        fail("usable_memory", "/chosen/linux,usable-memory-range is absent or not whole "
                              "(address, size) pairs: the capture kernel would use all RAM")
    elif sorted(pairs) != want:
        fail("usable_memory", f"/chosen/linux,usable-memory-range {[(hex(a), hex(b)) for a, b in pairs]}, "
                              f"crash regions {[(hex(a), hex(b)) for a, b in want]}")


def _check_chosen_elfcorehdr(plan: PlanData, chosen, cells, fail) -> Optional[Seg]:
    """linux,elfcorehdr names the one core-header segment and covers its headers."""
    value = chosen.get("linux,elfcorehdr")
    pairs = _pairs(value, cells) if value is not None else None
    cores = plan.of_kind("elfcorehdr")
    if pairs is None or len(pairs) != 1:
        fail("elfcorehdr", "/chosen/linux,elfcorehdr is absent or not one (address, size)")
        return None
    addr, size = pairs[0]
    if len(cores) != 1 or cores[0].mem != addr:
        fail("elfcorehdr", f"linux,elfcorehdr at {addr:#x}, core-header segments at "
                           f"{[hex(c.mem) for c in cores]}")
        return None
    seg = cores[0]
    try:
        hdr = Elf64_Ehdr.parse(seg.data)
        extent = hdr.e_phoff + hdr.e_phnum * hdr.e_phentsize
    except ConstructError:
        extent = len(seg.data)       # _core_at reports the unreadable header
    if not extent <= size <= seg.memsz:
        fail("elfcorehdr", f"linux,elfcorehdr size {size:#x}: the headers need {extent:#x}, "
                           f"the segment has {seg.memsz:#x}")
    return seg


def _check_arm64_maps(core: CoreHeader, machine: MachineFacts, fail) -> list:
    """The kernel-text PT_LOAD and the linear map of the others; returns the text ones.

    The image: p_vaddr - p_paddr = NUMBER(kimage_voffset), holding SYMBOL(_stext), and equal
    to kcore's own image entry when kcore has one. RAM: p_vaddr - p_paddr = the linear map's
    offset, which kcore's RAM entries (physical address known, not the image) show."""
    loads = [p for p in core.phdrs if p.p_type == PT_LOAD]
    info = parse_vmcoreinfo(machine.kcore_vmcoreinfo or "")
    try:
        stext = int(info["SYMBOL(_stext)"], 16)
        voffset = int(info["NUMBER(kimage_voffset)"], 0) & MASK64
    except (KeyError, ValueError):
        fail("kernel_text", "the machine's /proc/kcore has no VMCOREINFO with SYMBOL(_stext) and "
                            "NUMBER(kimage_voffset): the image mapping cannot be known")
        return []
    text = [p for p in loads if p.p_vaddr <= stext < p.p_vaddr + p.p_memsz]
    kimage = [l for l in machine.kcore_loads if l[1] != NO_PADDR and l[0] <= stext < l[0] + l[2]
              and l[2] <= ARM64_KIMAGE_MAX]
    if len(text) != 1:
        fail("kernel_text", f"{len(text)} PT_LOADs hold _stext {stext:#x}, a dump needs one")
    for p in text:
        got = (p.p_vaddr, p.p_paddr, p.p_memsz)
        if (p.p_vaddr - p.p_paddr) & MASK64 != voffset:
            fail("kernel_text", f"kernel-text PT_LOAD {p.p_vaddr:#x} -> {p.p_paddr:#x}: not "
                                f"kimage_voffset {voffset:#x}")
        elif kimage and got != kimage[0]:
            fail("kernel_text", f"kernel-text PT_LOAD {tuple(map(hex, got))}, kcore maps the image "
                                f"as {tuple(map(hex, kimage[0]))}")
    linear = [l for l in machine.kcore_loads if l[1] != NO_PADDR and l not in kimage]
    deltas = {(v - p) & MASK64 for v, p, _ in linear}
    for p in loads:
        if p in text or not deltas:
            continue
        delta = (p.p_vaddr - p.p_paddr) & MASK64
        holder = [(v - a) & MASK64 for v, a, n in linear if a <= p.p_paddr < a + n]
        if delta not in (holder[:1] or deltas):
            fail("linear_map", f"RAM PT_LOAD {p.p_paddr:#x}: p_vaddr {p.p_vaddr:#x} is not its "
                               f"linear-map address (kcore: vaddr - paddr = "
                               f"{', '.join(hex(d) for d in sorted(deltas))})")
    return text


def _hex(value: Optional[int]) -> str:
    return "unreadable" if value is None else hex(value)


def _u64(plan: PlanData, addr, size: int = 8) -> Optional[int]:
    data = plan.read(addr, size) if isinstance(addr, int) else None
    return None if data is None else int.from_bytes(data, "little")


def _check_arm64_purgatory(plan: PlanData, image: Optional[Seg], fail) -> None:
    """Purgatory's variables as the plan's bytes hold them, at the addresses its notes give
    (plans that do not record them, such as the oracle's, are not checked here)."""
    shown = plan.notes.get("purgatory_symbols")
    where = shown.get("symbol_addresses") if isinstance(shown, dict) else None
    if not isinstance(where, dict):
        return
    purg = plan.of_kind("purgatory")
    if len(purg) != 1:
        fail("purgatory", f"{len(purg)} purgatory segments")
        return
    seg = purg[0]
    for name in ("kernel_entry", "dtb_addr", "skip_checks", "sha256_regions", "sha256_digest"):
        addr = where.get(name)
        if not isinstance(addr, int) or not seg.mem <= addr < seg.end:
            fail("purgatory", f"purgatory variable {name} at {addr!r} is not in its segment")
            return
    dtbs = plan.of_kind("dtb")
    x0 = _u64(plan, where["dtb_addr"])
    if len(dtbs) != 1 or x0 != dtbs[0].mem:
        fail("purgatory", f"x0 (dtb_addr) = {_hex(x0)}, device tree at "
                          f"{[hex(d.mem) for d in dtbs]}")
    entry = _u64(plan, where["kernel_entry"])
    if image is not None and entry != image.mem:
        fail("purgatory", f"kernel_entry {_hex(entry)} is not the Image's first byte {image.mem:#x}")
    if _u64(plan, where["skip_checks"], 4):
        return
    raw = plan.read(where["sha256_regions"], SHA256_REGIONS * Sha256Region.sizeof())
    regions = [r for r in (Sha256Region.parse(raw[i * 16:]) for i in range(SHA256_REGIONS))
               if r.len] if raw else []
    got = sorted((r.start, r.len) for r in regions)
    want = sorted((s.mem, s.memsz) for s in plan.segments if s is not seg)
    if got != want:
        fail("purgatory", f"SHA-256 regions {[(hex(a), hex(b)) for a, b in got]}, other segments "
                          f"{[(hex(a), hex(b)) for a, b in want]}")
        return
    h = hashlib.sha256()
    for r in regions:      # in the table's order, as purgatory hashes them
        h.update(plan.read(r.start, r.len))
    if plan.read(where["sha256_digest"], 32) != h.digest():
        fail("purgatory", "sha256_digest is not the digest of the listed segments: purgatory "
                          "would stop instead of entering the kernel")


def _check_arm64_kernel(image: Seg, kernel: bytes, fail) -> None:
    """The Image bytes: the file itself, or a gzip'd file's content (zboot and ELF files are
    checked through the Image header only)."""
    if kernel[:2] == b"\x1f\x8b":
        try:
            # bounded: one byte more than the segment holds says "longer"
            kernel = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(kernel, len(image.data) + 1)
        except zlib.error:
            fail("kernel_bytes", "the kernel file is a damaged gzip stream, yet a plan was made")
            return
    if kernel[0x38:0x3C] != ARM64_IMAGE_MAGIC:
        return
    if image.data.rstrip(b"\0") != kernel.rstrip(b"\0"):
        fail("kernel_bytes", f"kernel segment ({len(image.data)} bytes) is not the Image file "
                             f"({len(kernel)} bytes)")
