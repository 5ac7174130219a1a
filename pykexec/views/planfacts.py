"""Decode a plan into comparable facts, and compare two plans.

A plan is bytes at addresses; what a reader wants to know is what those bytes say: the ELF
core header's program headers, the capture kernel's e820 map, the command line it will see,
the registers purgatory will load. `decode_plan` reads them back out of the segments, the
way the capture kernel and purgatory will, so it works the same on a plan recorded from
Debian's kexec (the oracle) and on one built by pykexec.

`compare_plans` separates what depends on placement (addresses chosen top-down in the crash
region, and every pointer derived from them) from what two correct loaders must agree on.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from pykexec.core.plan import Plan, Segment
from pykexec.abi import bootparams as bp
from pykexec.abi.elf import (ELF_MAGIC, ET_CORE, PT_LOAD, PT_NOTE, elf_class_of,
                                 parse_core_header)

ENTRY64_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")
ENTRY32_REGS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip")
E820_TYPE_NAMES = {bp.E820_RAM: "RAM", bp.E820_RESERVED: "reserved", bp.E820_ACPI: "ACPI",
                   bp.E820_NVS: "NVS", bp.E820_UNUSABLE: "unusable", bp.E820_PMEM: "PMEM",
                   bp.E820_PRAM: "PRAM"}


# ----------------------------------------------------------------------------------------
# Reading structures out of a plan

def _is_boot_params(seg: Segment) -> bool:
    return (seg.mem is not None and seg.bufsz >= 0x290
            and struct.unpack_from("<I", seg.data, 0x202)[0] == bp.HDRS_MAGIC)


def _is_core_header(seg: Segment) -> bool:
    return (seg.bufsz >= 20 and seg.data[:4] == ELF_MAGIC
            and struct.unpack_from("<H", seg.data, 16)[0] == ET_CORE)


def boot_params_segment(plan: Plan) -> Optional[Segment]:
    """The segment holding boot_params (bzImage) or the ELF `--args-linux` parameter block."""
    for seg in plan.segments:
        if seg.kind in ("boot_params", "param_block"):
            return seg
    return next((s for s in plan.segments if _is_boot_params(s)), None)


def core_header_segment(plan: Plan) -> Optional[Segment]:
    for seg in plan.segments:
        if seg.kind == "elfcorehdr":
            return seg
    return next((s for s in plan.segments if _is_core_header(s)), None)


def _read_cstring(plan: Plan, addr: int, limit: int = 4096) -> Optional[str]:
    seg = plan.segment_at(addr)
    if seg is None:
        return None
    raw = seg.read(addr, min(limit, seg.end - addr))
    from pykexec.core.cmdline import from_bytes   # the command lines' one encoding rule
    return from_bytes(raw.split(b"\0", 1)[0])


@functools.lru_cache(maxsize=4)
def _parse_boot_params(page: bytes):
    return bp.BootParams.parse(page)


def _boot_params(seg: Segment):
    """boot_params parsed from `seg` (read only by callers): one parse per plan, not one per
    fact (the 4 KiB parse is the slowest step of a listing)."""
    return _parse_boot_params(seg.read(seg.mem, bp.BOOT_PARAMS_SIZE))


def read_cmdline(plan: Plan) -> Optional[str]:
    """The command line the new kernel will see, read back through boot_params."""
    if plan.syscall == "kexec_file_load":
        return plan.cmdline
    seg = boot_params_segment(plan)
    if seg is None:
        return plan.cmdline
    params = _boot_params(seg)
    ptr = params.hdr.cmd_line_ptr | (params.ext_cmd_line_ptr << 32)
    if ptr == 0:
        return None
    return _read_cstring(plan, ptr)


def setup_data_chain(plan: Plan) -> List[Tuple[int, int, int, bytes]]:
    """(address, type, len, data) for each setup_data item linked from boot_params."""
    seg = boot_params_segment(plan)
    if seg is None:
        return []
    addr = _boot_params(seg).hdr.setup_data
    chain, seen = [], set()
    while addr and addr not in seen:
        seen.add(addr)
        holder = plan.segment_at(addr)
        if holder is None:
            break
        hdr = bp.SetupDataHeader.parse(holder.read(addr, 16))
        chain.append((addr, hdr.type, hdr.len, holder.read(addr + 16, hdr.len)))
        addr = hdr.next
    return chain


def read_e820(plan: Plan) -> List[Tuple[int, int, int]]:
    """The capture kernel's e820 table: boot_params entries, then SETUP_E820_EXT ones."""
    seg = boot_params_segment(plan)
    if seg is None:
        return []
    params = _boot_params(seg)
    entries = [(e.addr, e.size, e.type) for e in params.e820_table[:params.e820_entries]]
    for _addr, typ, length, data in setup_data_chain(plan):
        if typ == bp.SETUP_E820_EXT:
            for off in range(0, length - length % 20, 20):
                e = bp.E820Entry.parse(data[off:off + 20])
                entries.append((e.addr, e.size, e.type))
    return entries


def find_entry_registers(plan: Plan) -> Optional[Dict[str, int]]:
    """Locate purgatory's register block by what it must hold, not by symbol tables.

    A plan recorded from another loader has no symbols, so search the purgatory segment for
    a 64-bit block whose rsi is the boot_params address and whose rip lands in a segment
    (or a 32-bit block with esi/eip likewise).
    """
    params = boot_params_segment(plan)
    purg = next((s for s in plan.segments if s.kind == "purgatory"), None)
    if purg is None and plan.entry is not None:
        purg = plan.segment_at(plan.entry)
    if params is None or purg is None:
        return None
    data = purg.data
    for off in range(0, len(data) - 17 * 8 + 1, 8):
        if struct.unpack_from("<Q", data, off + 4 * 8)[0] != params.mem:
            continue
        regs = dict(zip(ENTRY64_REGS, struct.unpack_from("<17Q", data, off)))
        if plan.segment_at(regs["rip"]) is not None:
            regs["_block_offset"] = off
            regs["_width"] = 64
            return regs
    for off in range(0, len(data) - 9 * 4 + 1, 4):
        if struct.unpack_from("<I", data, off + 4 * 4)[0] != params.mem:
            continue
        regs = dict(zip(ENTRY32_REGS, struct.unpack_from("<9I", data, off)))
        if plan.segment_at(regs["eip"]) is not None:
            regs["_block_offset"] = off
            regs["_width"] = 32
            return regs
    return None


# ----------------------------------------------------------------------------------------
# Classifying an unlabelled plan (the oracle records bytes, not purposes)

def _bzimage_payload(kernel: bytes) -> Optional[bytes]:
    if len(kernel) < 0x290 or kernel[0x202:0x206] != b"HdrS":
        return None
    setup_sects = kernel[0x1F1] or 4
    return kernel[(setup_sects + 1) * 512:]


def _elf_load_chunks(kernel: bytes) -> List[bytes]:
    if kernel[:4] != ELF_MAGIC:
        return []
    from io import BytesIO

    from elftools.elf.elffile import ELFFile
    elf = ELFFile(BytesIO(kernel))
    return [seg.data()[:seg["p_memsz"]] for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]


def _read_file(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def annotate(plan: Plan, kernel_path: Optional[str] = None,
             initrd_path: Optional[str] = None) -> Plan:
    """Return `plan` with segment kinds inferred from content and `cmdline` read back."""
    kernel = _read_file(kernel_path)
    initrd = _read_file(initrd_path)
    if plan.syscall == "kexec_file_load":
        kinds = ["kernel", "initrd"]
        segs = [Segment(s.mem, s.memsz, s.data, kinds[i] if i < 2 else "unknown", s.source)
                for i, s in enumerate(plan.segments)]
        return Plan(plan.arch, plan.syscall, plan.flags, plan.entry, plan.cmdline, segs, plan.notes)

    payload = _bzimage_payload(kernel) if kernel else None
    elf_chunks = {hashlib.sha256(c).digest() for c in _elf_load_chunks(kernel)} if kernel else set()
    initrd_digest = hashlib.sha256(initrd).digest() if initrd is not None else None
    payload_digest = hashlib.sha256(payload).digest() if payload is not None else None

    kinds: Dict[int, str] = {}
    for i, seg in enumerate(plan.segments):
        digest = hashlib.sha256(seg.data).digest()
        if payload_digest is not None and digest == payload_digest:
            kinds[i] = "kernel"
        elif digest in elf_chunks:
            kinds[i] = "elf_load"
        elif initrd_digest is not None and digest == initrd_digest:
            kinds[i] = "initrd"
        elif _is_core_header(seg):
            kinds[i] = "elfcorehdr"
        elif _is_boot_params(seg):
            kinds[i] = "param_block" if elf_chunks else "boot_params"
    provisional = plan.with_segments(
        Segment(s.mem, s.memsz, s.data, kinds.get(i, "unknown"), s.source)
        for i, s in enumerate(plan.segments))

    # Segments known only by reference: setup_data items, the backup copy, purgatory.
    setup_addrs = {addr for addr, *_ in setup_data_chain(provisional)}
    backup_addrs = set()
    core = core_header_segment(provisional)
    if core is not None:
        try:
            _ehdr, phdrs = parse_core_header(core.data)
            backup_addrs = {p.p_offset for p in phdrs
                            if p.p_type == PT_LOAD and p.p_offset != p.p_paddr}
        except ValueError:
            pass
    for i, seg in enumerate(plan.segments):
        if i in kinds:
            continue
        if seg.mem in setup_addrs:
            kinds[i] = "setup_data"
        elif seg.mem in backup_addrs:
            kinds[i] = "backup"
        elif plan.entry is not None and seg.contains(plan.entry):
            kinds[i] = "purgatory"
    segs = [Segment(s.mem, s.memsz, s.data, kinds.get(i, "unknown"), s.source)
            for i, s in enumerate(plan.segments)]
    labelled = plan.with_segments(segs)
    return Plan(labelled.arch, labelled.syscall, labelled.flags, labelled.entry,
                read_cmdline(labelled), labelled.segments, labelled.notes)


# ----------------------------------------------------------------------------------------
# Facts

@dataclass(frozen=True)
class ProgramHeader:
    type: str
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    flags: int
    align: int

    @property
    def points_elsewhere(self) -> bool:
        """A PT_LOAD whose bytes are read from a copy (the backup region)."""
        return self.type == "LOAD" and self.offset != self.paddr


@dataclass(frozen=True)
class PlanFacts:
    arch: str
    syscall: str
    flags: int
    entry: Optional[int]
    segments: Tuple[Tuple[str, Optional[int], int, int, str], ...]
    cmdline: Optional[str]
    core_class: Optional[int] = None
    core_machine: Optional[int] = None
    program_headers: Tuple[ProgramHeader, ...] = ()
    e820: Tuple[Tuple[int, int, int], ...] = ()
    setup_data_types: Tuple[int, ...] = ()
    registers: Optional[Dict[str, int]] = None
    boot_header: Dict[str, int] = field(default_factory=dict)

    def segment(self, kind: str):
        return next((s for s in self.segments if s[0] == kind), None)


_BOOT_HEADER_FIELDS = ("type_of_loader", "loadflags", "ramdisk_image", "ramdisk_size",
                       "cmd_line_ptr", "setup_data", "version", "cmdline_size")


def decode_plan(plan: Plan) -> PlanFacts:
    segments = tuple((s.kind, s.mem, s.memsz, s.bufsz, s.sha256) for s in plan.segments)
    core_class = core_machine = None
    phdrs: Tuple[ProgramHeader, ...] = ()
    core = core_header_segment(plan)
    if core is not None:
        ehdr, raw = parse_core_header(core.data)
        core_class, core_machine = elf_class_of(core.data), ehdr.e_machine
        names = {PT_LOAD: "LOAD", PT_NOTE: "NOTE"}
        phdrs = tuple(ProgramHeader(names.get(p.p_type, str(p.p_type)), p.p_offset, p.p_vaddr,
                                    p.p_paddr, p.p_filesz, p.p_memsz, p.p_flags, p.p_align)
                      for p in raw)
    boot_header: Dict[str, int] = {}
    params_seg = boot_params_segment(plan)
    if params_seg is not None:
        params = _boot_params(params_seg)
        boot_header = {name: params.hdr[name] for name in _BOOT_HEADER_FIELDS}
        boot_header["acpi_rsdp_addr"] = params.acpi_rsdp_addr
        boot_header["address"] = params_seg.mem
    return PlanFacts(
        arch=plan.arch, syscall=plan.syscall, flags=plan.flags, entry=plan.entry,
        segments=segments, cmdline=read_cmdline(plan), core_class=core_class,
        core_machine=core_machine, program_headers=phdrs, e820=tuple(read_e820(plan)),
        setup_data_types=tuple(t for _a, t, _l, _d in setup_data_chain(plan)),
        registers=find_entry_registers(plan), boot_header=boot_header)


# ----------------------------------------------------------------------------------------
# Comparing two plans

@dataclass(frozen=True)
class Difference:
    fact: str
    a: object
    b: object
    placement: bool  # True: expected to differ when segments sit elsewhere
    why: str = ""


@dataclass(frozen=True)
class Comparison:
    differences: Tuple[Difference, ...]

    @property
    def must_match(self) -> Tuple[Difference, ...]:
        return tuple(d for d in self.differences if not d.placement)

    @property
    def placement(self) -> Tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.placement)

    @property
    def equivalent(self) -> bool:
        return not self.must_match

    def explain(self) -> str:
        lines = []
        for d in self.differences:
            tag = "placement" if d.placement else "MISMATCH "
            lines.append(f"{tag} {d.fact}: {d.a!r} != {d.b!r}" + (f"  ({d.why})" if d.why else ""))
        return "\n".join(lines) or "plans agree"


def _params_without(cmdline: Optional[str], names: Sequence[str]) -> List[str]:
    return [p for p in (cmdline or "").split() if p.split("=", 1)[0] not in names]


def _normalised_phdrs(facts: PlanFacts) -> List[tuple]:
    """Program headers with the backup pointer replaced by 'its copy' (placement-free)."""
    backup = facts.segment("backup")
    out = []
    for p in facts.program_headers:
        offset: object = p.offset
        if p.points_elsewhere:
            offset = "backup copy" if backup and backup[1] == p.offset else f"elsewhere {p.offset:#x}"
        out.append((p.type, offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.flags, p.align))
    return out


def _split_e820(facts: PlanFacts, window: Optional[Tuple[int, int]]):
    if window is None:
        return list(facts.e820), []
    lo, hi = window
    inside = [e for e in facts.e820 if e[0] < hi and e[0] + e[1] > lo]
    outside = [e for e in facts.e820 if not (e[0] < hi and e[0] + e[1] > lo)]
    return outside, inside


def compare_plans(a: Plan, b: Plan, crash_window: Optional[Tuple[int, int]] = None) -> Comparison:
    """Compare two plans for the same request on the same machine.

    `crash_window` is the crash region as half-open (start, end); e820 entries inside it
    depend on where the elfcorehdr and backup went, so they count as placement.
    """
    fa, fb = decode_plan(a), decode_plan(b)
    diffs: List[Difference] = []

    def check(fact, va, vb, placement=False, why=""):
        if va != vb:
            diffs.append(Difference(fact, va, vb, placement, why))

    check("arch", fa.arch, fb.arch)
    check("syscall", fa.syscall, fb.syscall)
    check("flags", hex(fa.flags), hex(fb.flags))
    for kind in ("kernel", "initrd"):
        check(f"{kind} bytes", [s[4] for s in fa.segments if s[0] == kind],
              [s[4] for s in fb.segments if s[0] == kind])
    check("ELF kernel segments", [(s[1], s[2], s[4]) for s in fa.segments if s[0] == "elf_load"],
          [(s[1], s[2], s[4]) for s in fb.segments if s[0] == "elf_load"])
    check("command line (placement-free parameters)", _params_without(fa.cmdline, ["elfcorehdr"]),
          _params_without(fb.cmdline, ["elfcorehdr"]))
    check("elfcorehdr= value", [p for p in (fa.cmdline or "").split() if p.startswith("elfcorehdr=")],
          [p for p in (fb.cmdline or "").split() if p.startswith("elfcorehdr=")], True,
          "the header sits where the allocator put it")
    check("ELF core header class", fa.core_class, fb.core_class)
    check("ELF core header machine", fa.core_machine, fb.core_machine)
    check("ELF core program headers", _normalised_phdrs(fa), _normalised_phdrs(fb))
    out_a, in_a = _split_e820(fa, crash_window)
    out_b, in_b = _split_e820(fb, crash_window)
    check("e820 outside the crash region", out_a, out_b)
    check("e820 inside the crash region", in_a, in_b, True,
          "RAM pieces around the elfcorehdr and backup segments")
    check("setup_data types", sorted(fa.setup_data_types), sorted(fb.setup_data_types))
    check("segment kinds", sorted(s[0] for s in fa.segments), sorted(s[0] for s in fb.segments))
    check("segment addresses", [(s[0], s[1], s[2]) for s in fa.segments],
          [(s[0], s[1], s[2]) for s in fb.segments], True, "placement policy")
    check("entry", fa.entry, fb.entry, True, "purgatory address")
    ra, rb = fa.registers, fb.registers
    if ra and rb:
        ka = _kernel_relative_rip(fa, ra)
        kb = _kernel_relative_rip(fb, rb)
        check("kernel entry (relative to the kernel segment)", ka, kb)
        check("boot register (rbx/ebx)", ra.get("rbx", ra.get("ebx")), rb.get("rbx", rb.get("ebx")))
    else:
        check("purgatory register block found", bool(ra), bool(rb))
    return Comparison(tuple(diffs))


def _kernel_relative_rip(facts: PlanFacts, regs: Dict[str, int]):
    rip = regs.get("rip", regs.get("eip"))
    for kind, mem, memsz, _bufsz, _sha in facts.segments:
        if mem is not None and mem <= rip < mem + memsz:
            return (kind, rip - mem) if kind != "elf_load" else (kind, rip)
    return ("outside every segment", rip)
