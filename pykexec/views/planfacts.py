"""Decode a plan into comparable facts, and compare two plans.

A plan is bytes at addresses; what a reader wants to know is what those bytes say: the ELF
core header's program headers, the capture kernel's memory map, the command line it will
see, the registers purgatory will load. What an architecture's boot structures say is read
by that architecture's decoder (`plan_decoder(plan)`, found by `plan.arch`). `decode_plan` reads them back out of the segments, the
way the capture kernel and purgatory will, so it works the same on a plan recorded from
Debian's kexec (the oracle) and on one built by pykexec.

`compare_plans` separates what depends on placement (addresses chosen top-down in the crash
region, and every pointer derived from them) from what two correct loaders must agree on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from pykexec.abi.elf import (ELF_MAGIC, ET_CORE, PT_LOAD, PT_NOTE, ElfHead, elf_class_of,
                             parse_core_header)
from pykexec.arch import by_name, optional_hook
from pykexec.core.plan import Plan, Segment


def plan_decoder(plan: Plan):
    """The plan's architecture's decoder of its boot structures (None: only generic facts)."""
    arch = by_name(plan.arch)
    return optional_hook(arch, "plan_decoder")


def _is_core_header(seg: Segment) -> bool:
    return (seg.bufsz >= ElfHead.sizeof() and seg.data[:4] == ELF_MAGIC
            and ElfHead.parse(seg.data).e_type == ET_CORE)


def boot_params_segment(plan: Plan) -> Optional[Segment]:
    """The segment holding the new kernel's boot parameters, as the plan's architecture
    finds it."""
    decoder = plan_decoder(plan)
    return decoder.boot_params_segment(plan) if decoder is not None else None


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


def read_cmdline(plan: Plan) -> Optional[str]:
    """The command line the new kernel will see, read back through its boot parameters."""
    if plan.syscall == "kexec_file_load":
        return plan.cmdline
    decoder = plan_decoder(plan)
    ptr = decoder.cmdline_address(plan) if decoder is not None else None
    if ptr is None:
        return plan.cmdline
    if ptr == 0:
        return None
    return _read_cstring(plan, ptr)


def setup_data_chain(plan: Plan) -> List[Tuple[int, int, int, bytes]]:
    """(address, type, len, data) of each item the boot parameters link."""
    decoder = plan_decoder(plan)
    return decoder.setup_data_chain(plan) if decoder is not None else []


# ----------------------------------------------------------------------------------------
# Classifying an unlabelled plan (the oracle records bytes, not purposes)

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

    decoder = plan_decoder(plan)
    payload = decoder.bzimage_payload(kernel) if kernel and decoder is not None else None
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
        elif decoder is not None and decoder.is_boot_params(seg):
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
    decoder = plan_decoder(plan)
    return PlanFacts(
        arch=plan.arch, syscall=plan.syscall, flags=plan.flags, entry=plan.entry,
        segments=segments, cmdline=read_cmdline(plan), core_class=core_class,
        core_machine=core_machine, program_headers=phdrs,
        e820=tuple(decoder.read_e820(plan)) if decoder is not None else (),
        setup_data_types=tuple(t for _a, t, _l, _d in setup_data_chain(plan)),
        registers=decoder.find_entry_registers(plan) if decoder is not None else None,
        boot_header=decoder.boot_header(plan) if decoder is not None else {})


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
