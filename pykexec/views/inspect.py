"""`pykexec inspect FILE`: explain a file a kdump load uses or makes.

The kind is found from the content, never from the name:

- a plan folder (plan.json): the dry-run report (`pykexec.views.show`);
- a kernel image in an architecture's own format (a bzImage: the setup header, field by
  field, with what each means), explained by that architecture (`image_explainer()`);
- an ELF executable (vmlinux): machine, entry, PT_LOADs;
- an ELF relocatable object (purgatory): sections, relocations by type, the symbols a loader
  sets;
- an ELF core file: with its notes inside the file, a vmcore (NT_PRSTATUS registers per CPU,
  VMCOREINFO keys); with offsets that are physical addresses, an elfcorehdr blob (the header
  a loader writes for the capture kernel).

`inspect_path(path) -> str` is pure apart from reading the file; bad input raises
`InspectError` with one line naming the file and the problem.

(Longer than 400 lines because it is one short explainer per file kind, read together.)
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections import Counter
from typing import Dict, List, Optional, Tuple

from pykexec.abi.elf import (ELF_MAGIC, ET_CORE, ET_DYN, ET_EXEC, ET_REL, NT_PRSTATUS,
                             NOTE_TYPE_NAMES, PT_LOAD, PT_NOTE, ElfHead, iter_notes,
                             parse_core_header)
from pykexec.abi.machines import EM_DESCRIPTIONS, EM_NAMES
from pykexec.arch import by_elf_machine, image_explainers, optional_hook, registered
from pykexec.core.uki import is_uki_head
from pykexec.core.files import NotRegularFile, ReadPolicy, read_regular
from pykexec.errors import PykexecError
from pykexec.views.show import hex_range, human_size

READ_LIMIT = 64 << 20          # whole files up to this size; vmcores are read by pieces
VMLINUX_NOTES_LIMIT = 1 << 20  # a vmlinux's notes (build id, Xen) are a few hundred bytes
CORE_NOTES_LIMIT = 64 << 20    # per-CPU NT_PRSTATUS + VMCOREINFO: ~32 MiB at 8192 CPUs

# Global symbols of a purgatory that a loader writes, and why.
PURGATORY_SYMBOLS = {
    "entry64_regs": "registers loaded before jumping to the kernel (rsi = boot_params, rip = entry)",
    "entry32_regs": "registers for a 32-bit entry",
    "sha256_regions": "(address, length) of each segment to check before jumping",
    "sha256_digest": "the expected SHA-256 of those regions",
    "purgatory_backup_dest": "where the first 640 KiB of RAM are copied (the backup segment)",
    "purgatory_backup_src": "start of the low RAM to back up",
    "purgatory_backup_sz": "bytes to back up",
    "backup_dest": "where low RAM is copied",
    "backup_src": "start of the low RAM to back up",
    "backup_size": "bytes to back up",
    "cmdline_end": "end of the command line",
    "panic_kernel": "set for a crash load",
    "jump_back_entry": "kexec jump-back entry",
    "console_serial": "print progress on the serial port",
    "console_serial_base": "serial port I/O base",
    "console_vga": "print progress on VGA text memory",
    "stack_end": "top of purgatory's stack",
    "stack": "purgatory's stack",
    "purgatory_start": "the entry point",
    "entry64": "64-bit trampoline into the kernel",
}

class InspectError(PykexecError):
    """The file cannot be explained: one line naming it and the problem."""


# ------------------------------------------------------------------------------------------
# Detection

def detect(path: str, head: bytes) -> str:
    """The kind of `path`: plan, bzimage, vmlinux, object, vmcore, elfcorehdr."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "plan.json")):
            return "plan"
        raise InspectError(f"{path}: a folder without plan.json (not a plan folder)")
    if is_uki_head(head):
        return "uki"
    explainer = _image_explainer(head)
    if explainer is not None:
        return explainer.KIND
    if head[:4] == ELF_MAGIC:
        if len(head) < 20 or head[4] not in (1, 2):
            raise InspectError(f"{path}: truncated or unknown ELF header")
        if head[5] != 1:
            raise InspectError(f"{path}: big-endian ELF files are not supported")
        e_type = ElfHead.parse(head).e_type
        if e_type in (ET_EXEC, ET_DYN):
            return "vmlinux"
        if e_type == ET_REL:
            return "object"
        if e_type == ET_CORE:
            return "core"
        raise InspectError(f"{path}: ELF type {e_type} is not an executable, object or core")
    if head[:2] == b"\x1f\x8b":
        raise InspectError(f"{path}: gzip data (decompress it first, or pass the bzImage)")
    if not head:
        raise InspectError(f"{path}: empty file")
    raise InspectError(f"{path}: not a bzImage, ELF file, core file or plan folder")


def _read(path: str, limit: int = READ_LIMIT) -> bytes:
    """At most `limit` bytes of the regular file `path` (never blocks on a FIFO)."""
    try:
        return read_regular(path, ReadPolicy(limit, head_only=True, trust_size=False,
                                             step=1 << 24))
    except NotRegularFile as e:
        raise InspectError(f"{path}: not a regular file ({e.kind}); inspect "
                           "reads files and plan folders only") from None
    except OSError as e:
        raise InspectError(f"{path}: {e.strerror or e}") from None


def inspect_path(path: str) -> str:
    """The explanation of the file or plan folder at `path` (text)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise InspectError(f"{path}: {(e.strerror or str(e)).lower()}") from None
    head = b"" if stat.S_ISDIR(mode) else _read(path, 4096)
    kind = detect(path, head)
    try:
        if kind == "plan":
            from pykexec.core.plan import PlanFormatError, load_plan
            from pykexec.views.show import plan_report
            try:
                plan = load_plan(path)
            except PlanFormatError as e:
                raise InspectError(f"bad plan folder: {e}") from None
            except ValueError as e:     # the Plan or Segment refused a value
                raise InspectError(f"{path}: bad plan folder: {e}") from None
            return f"{path}: plan folder\n" + plan_report(plan)
        if kind == "core":
            return explain_core(path)
        if kind == "vmlinux":
            try:
                with open(path, "rb") as f:
                    return explain_vmlinux(f, path)
            except OSError as e:
                raise InspectError(f"{path}: {e.strerror or e}") from None
            except InspectError as e:
                raise InspectError(f"{path}: {e}") from None
        data = _read(path)
        if kind == "object":
            return explain_object(data, path)
        if kind == "uki":
            return explain_uki(data, path)
        return explain_image(data, path, os.path.getsize(path))
    except InspectError:
        raise
    except (ValueError, struct.error, IndexError, KeyError, OverflowError) as e:
        # pyelftools follows offsets in a damaged file as far as they point
        raise InspectError(f"{path}: cannot parse as {kind}: {e}") from None
    except Exception as e:  # pyelftools and construct raise their own types
        name = e.__class__.__name__
        if name in ("ELFError", "ELFParseError", "StreamError", "ConstructError",
                    "ELFRelocationError") or "construct" in type(e).__module__:
            raise InspectError(f"{path}: cannot parse as {kind} (truncated or corrupt): {e}") from None
        raise


# ------------------------------------------------------------------------------------------
# bzImage

def _image_explainer(head: bytes):
    """The explainer of the architecture whose kernel image format `head` starts, or None."""
    return next((e for e in image_explainers() if e.probe(head)), None)


def explain_image(data: bytes, path: str, file_size: Optional[int] = None) -> str:
    """A kernel image file in an architecture's own format, explained by that architecture."""
    explainer = _image_explainer(data)
    if explainer is None:
        raise InspectError(f"{path}: not a kernel image format pykexec knows")
    try:
        return explainer.explain(data, path, len(data) if file_size is None else file_size)
    except ValueError as e:
        raise InspectError(str(e)) from None


# ------------------------------------------------------------------------------------------
# Unified kernel images

UKI_SECTION_MEANING = {
    ".linux": "the kernel image (what a loader loads)",
    ".initrd": "the initrd (the default when no --initrd is given)",
    ".cmdline": "the command line (the default when no --append/--reuse-cmdline is given)",
    ".osrel": "os-release of the system the image belongs to",
    ".uname": "the kernel's release (uname -r)",
    ".dtb": "a device tree for the kernel",
    ".splash": "a boot splash image",
    ".pcrsig": "signatures of the expected TPM PCR values",
    ".pcrpkey": "the public key for those signatures",
    ".sbat": "Secure Boot advanced targeting (revocation) data",
    ".sdmagic": "systemd-stub's version string",
    ".text": "the EFI stub's code",
}


def explain_uki(data: bytes, path: str) -> str:
    """A unified kernel image: its sections, the defaults it carries, then its kernel."""
    from pykexec.core.uki import UkiError, parse_uki
    try:
        uki = parse_uki(data, path)
    except UkiError as e:
        raise InspectError(str(e)) from None
    if uki is None:
        raise InspectError(f"{path}: not a unified kernel image")
    lines = [f"{path}: unified kernel image (a PE file: an EFI stub with the kernel, its "
             f"initrd and command line as sections), {len(data)} bytes",
             "", f"  {'section':<10} {'offset':>10} {'size':>10}  meaning"]
    for sec in uki.sections:
        lines.append(f"  {sec.name:<10} {sec.offset:#10x} {sec.size:#10x}  "
                     f"{UKI_SECTION_MEANING.get(sec.name, '')}".rstrip())
    lines.append("")
    lines.append("command line: " + (repr(uki.cmdline) if uki.cmdline is not None
                                      else "none (no .cmdline section)"))
    lines.append("initrd: " + (f"{len(uki.initrd)} bytes" if uki.initrd is not None
                               else "none (no .initrd section)"))
    lines.append("pykexec loads .linux, with .initrd and .cmdline unless options replace them.")
    lines.append("")
    inner = f"{path} (.linux section)"
    try:
        lines.append(explain_image(uki.linux, inner))
    except InspectError as e:
        lines.append(f"{inner}: {e}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# ELF executables and objects (pyelftools reads them)

def _elffile(data):
    from elftools.elf.elffile import ELFFile
    return ELFFile(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)


def _flags(p_flags: int) -> str:
    return "".join(c if p_flags & bit else "-" for bit, c in ((4, "R"), (2, "W"), (1, "X")))


def explain_vmlinux(data, path: str = "vmlinux") -> str:
    """An ELF kernel (bytes or a binary file object)."""
    elf = _elffile(data)
    stream = elf.stream
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    end = elf["e_phoff"] + elf["e_phnum"] * elf["e_phentsize"]
    if elf["e_phnum"] == 0:
        raise InspectError("ELF executable without program headers: nothing to load")
    if end > size:
        raise InspectError(f"program headers end at {end:#x}, past the end of the file "
                           f"({size:#x} bytes): truncated or corrupt")
    machine = elf["e_machine"]
    stream.seek(0)
    e_machine = ElfHead.parse(stream.read(ElfHead.sizeof())).e_machine
    is_text = _kernel_text_rule(e_machine)
    out = [f"{path}: ELF{elf.elfclass} {elf['e_type']} for {machine}, entry {elf['e_entry']:#x}"]
    loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    out.append(f"  {len(loads)} PT_LOADs (what a loader copies: file bytes at p_paddr, "
               f"zero-filled up to p_memsz)")
    out.append(f"  {'vaddr':>18} {'paddr':>18} {'filesz':>10} {'memsz':>10} flags  "
               f"{'file offset':>11}  what")
    for s in loads:
        what = ("kernel image" if is_text(s["p_vaddr"])
                else "per-CPU data template" if s["p_vaddr"] == 0 else "")
        out.append(f"  {s['p_vaddr']:>#18x} {s['p_paddr']:>#18x} {s['p_filesz']:>#10x} "
                   f"{s['p_memsz']:>#10x} {_flags(s['p_flags']):<5}  {s['p_offset']:>#11x}  {what}")
    entry = elf["e_entry"]
    for s in loads:
        if s["p_vaddr"] <= entry < s["p_vaddr"] + s["p_memsz"]:
            phys = s["p_paddr"] + entry - s["p_vaddr"]
            out.append(f"  entry {entry:#x} is virtual: physical {phys:#x}")
            break
        if s["p_paddr"] <= entry < s["p_paddr"] + s["p_memsz"]:
            note = getattr(by_elf_machine(e_machine), "vmlinux_entry_note", None)
            out.append(f"  entry {entry:#x} is physical: {entry - s['p_paddr']:#x} into the "
                       f"PT_LOAD at {s['p_paddr']:#x}" + (f" ({note})" if note else ""))
            break
    xen = 0
    for s in elf.iter_segments():
        if s["p_type"] != "PT_NOTE":
            continue
        if s["p_filesz"] > VMLINUX_NOTES_LIMIT:
            out.append(f"  PT_NOTE of {s['p_filesz']:#x} bytes: more than a kernel has, not read")
            continue
        for note in s.iter_notes():
            name = note["n_name"]
            raw = note.get("n_descdata", b"")
            if not isinstance(raw, (bytes, bytearray)):
                raw = b""
            if name == "Xen":
                xen += 1
                continue
            text = raw.rstrip(b"\0")
            if text and all(32 <= c < 127 for c in text):
                shown = text.decode()
            else:
                shown = raw.hex()
            ntype = note["n_type"]
            out.append(f"  note {name} {ntype}: {shown[:80]}")
    if xen:
        out.append(f"  {xen} Xen notes (for booting as a Xen guest; kexec ignores them)")
    return "\n".join(out) + "\n"


def _relocation_sets():
    """Every architecture's purgatory relocation types (pykexec.purgatory.elfrel sets)."""
    found = (optional_hook(a, "relocations") for a in registered())
    return tuple(r for r in found if r is not None)


def explain_object(data: bytes, path: str = "purgatory.o") -> str:
    from pykexec.purgatory.elfrel import ElfRelError, RelocatableObject
    elf = _elffile(data)
    out = [f"{path}: ELF{elf.elfclass} relocatable object for {elf['e_machine']}"]
    try:
        sets = _relocation_sets()
        obj = RelocatableObject.from_bytes(data, relocations=sets)
    except ElfRelError as e:
        raise InspectError(f"{path}: cannot be loaded as a purgatory: {e}") from None
    out.append(f"  loaded size {obj.size:#x} ({human_size(obj.size)}), base alignment "
               f"{obj.required_alignment:#x}")
    loaded = obj.layout(0)
    out.append("  allocated sections (offset from the load address)")
    for p in loaded.sections:
        kind = "NOBITS" if p.nobits else "PROGBITS"
        flags = "".join(c for bit, c in ((1, "W"), (2, "A"), (4, "X")) if p.flags & bit)
        out.append(f"    {p.offset:>#8x} {p.size:>#8x} align {p.align:<4} {kind:<8} {flags:<3} {p.name}")
    counts: Counter = Counter()
    from elftools.elf.relocation import RelocationSection
    names = next((dict(s.type_names) for s in sets if elf["e_machine"] in s.machines), {})
    for section in elf.iter_sections():
        if isinstance(section, RelocationSection):
            target = elf.get_section(section["sh_info"]).name
            for rel in section.iter_relocations():
                counts[(names.get(rel["r_info_type"], str(rel["r_info_type"])), target)] += 1
    out.append(f"  relocations: {sum(counts.values())}")
    by_type: Counter = Counter()
    for (rtype, _target), n in counts.items():
        by_type[rtype] += n
    for rtype, n in sorted(by_type.items(), key=lambda kv: -kv[1]):
        targets = ", ".join(f"{t} {m}" for (r, t), m in sorted(counts.items()) if r == rtype)
        out.append(f"    {rtype:<18} {n:>5}  ({targets})")
    out.append(f"  entry: {loaded.entry:#x} from the load address" if loaded.entry is not None
               else "  entry: none found")
    globals_ = sorted({s.name for s in obj.symbols()
                       if s.bind == "STB_GLOBAL" and s.shndx not in (0,) and s.name})
    known = [n for n in globals_ if n in PURGATORY_SYMBOLS]
    out.append(f"  global symbols: {len(globals_)}; those a loader sets or uses:")
    for name in known:
        try:
            addr = loaded.symbol_address(name)
            size = loaded.symbol_size(name)
        except Exception:  # noqa: BLE001 - a symbol outside allocated sections
            continue
        out.append(f"    {name:<24} +{addr:#07x} {size:>5} bytes  {PURGATORY_SYMBOLS[name]}")
    others = [n for n in globals_ if n not in PURGATORY_SYMBOLS]
    if others:
        out.append(f"    other globals: {' '.join(others)}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------
# ELF core files: vmcore and elfcorehdr

def _read_at(f, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def explain_core(path: str) -> str:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(64 << 10)
            try:
                ehdr, phdrs = parse_core_header(head)
            except ValueError:
                f.seek(0)
                head = f.read(16 << 20)
                ehdr, phdrs = parse_core_header(head)
            notes = [p for p in phdrs if p.p_type == PT_NOTE]
            in_file = bool(notes) and all(p.p_offset + p.p_filesz <= size for p in notes)
            note_bytes = sum(p.p_filesz for p in notes)
            if in_file and note_bytes > CORE_NOTES_LIMIT:
                raise InspectError(f"{path}: PT_NOTEs of {note_bytes:#x} bytes, more than a "
                                   f"kernel writes ({CORE_NOTES_LIMIT:#x}): not read")
            note_data = [(p, _read_at(f, p.p_offset, p.p_filesz)) for p in notes] if in_file else []
    except OSError as e:
        raise InspectError(f"{path}: {e.strerror or e}") from None
    except ValueError as e:
        raise InspectError(f"{path}: bad ELF core header: {e}") from None
    if in_file and note_data and _notes_parse(note_data):
        return explain_vmcore(path, head, ehdr, phdrs, note_data, size)
    return explain_elfcorehdr(head, path)


def _notes_parse(note_data) -> bool:
    try:
        for _p, data in note_data:
            if not list(iter_notes(data)):
                return False
        return True
    except Exception:  # noqa: BLE001
        return False


def _core_head(path: str, ehdr, phdrs) -> List[str]:
    cls = 64 if ehdr.e_ident.elfclass == 2 else 32
    loads = [p for p in phdrs if p.p_type == PT_LOAD]
    return [f"{path}: ELF{cls} core for {EM_DESCRIPTIONS.get(ehdr.e_machine, ehdr.e_machine)}, "
            f"{len(phdrs)} program headers ({sum(1 for p in phdrs if p.p_type == PT_NOTE)} "
            f"PT_NOTE, {len(loads)} PT_LOAD)"]


def explain_elfcorehdr(data: bytes, path: str = "elfcorehdr") -> str:
    """An elfcorehdr blob: offsets are physical addresses in the old kernel's memory."""
    from pykexec.core.plan import Plan, Segment
    from pykexec.views.show import _describe_phdrs
    from pykexec.views.planfacts import decode_plan
    ehdr, raw = parse_core_header(data)
    plan = Plan(_arch_name(ehdr.e_machine), "kexec_load", 0, None, None,
                (Segment(0, max(len(data), 1), data, "elfcorehdr", path),))
    facts = decode_plan(plan)
    described = _describe_phdrs(plan, facts.program_headers, None)
    out = _core_head(path, ehdr, raw)
    out[0] += "; an elfcorehdr (offsets are physical addresses of the old kernel's memory)"
    total = sum(p["memsz"] for p in described if p["stands_for"] in ("ram", "ram_backup"))
    out.append(f"  RAM described: {human_size(total)}")
    out.append(f"  {'#':>3}  type {'paddr':>18} {'memsz':>12} {'offset':>18}  stands for")
    for p in described:
        out.append(f"  {p['index']:>3}  {p['type']:<4} {p['paddr']:>#18x} {p['memsz']:>#12x} "
                   f"{p['offset']:>#18x}  {p['what']}")
    return "\n".join(out) + "\n"


def _arch_name(e_machine: int) -> str:
    """The name pykexec's architecture for `e_machine` goes by (else the ELF name, which
    no architecture module answers to: only generic facts are decoded)."""
    arch = by_elf_machine(e_machine)
    return arch.name if arch is not None else EM_NAMES.get(e_machine, str(e_machine))


def _kernel_text_rule(e_machine: int):
    """vaddr -> whether a PT_LOAD there maps kernel text, by the machine's architecture."""
    arch = by_elf_machine(e_machine)
    decoder = optional_hook(arch, "plan_decoder")
    return decoder.is_kernel_text if decoder is not None else (lambda _vaddr: False)


def decode_prstatus(desc: bytes, e_machine: int) -> Optional[Tuple[int, Dict[str, int]]]:
    """(pr_pid, registers) of an NT_PRSTATUS descriptor, in the layout of the machine's
    architecture; None for a machine pykexec has no reader for."""
    arch = by_elf_machine(e_machine)
    reader = optional_hook(arch, "dump_reader")
    cpu = reader.prstatus(desc) if reader is not None else None
    return (cpu.pid, cpu.regs) if cpu is not None else None


def explain_vmcore(path, head, ehdr, phdrs, note_data, size) -> str:
    elfclass = 64 if ehdr.e_ident.elfclass == 2 else 32
    out = _core_head(path, ehdr, phdrs)
    out[0] += f"; a vmcore ({human_size(size)})"
    loads = [p for p in phdrs if p.p_type == PT_LOAD]
    is_text = _kernel_text_rule(ehdr.e_machine)
    ram = sum(p.p_memsz for p in loads if not is_text(p.p_vaddr))
    out.append(f"  memory: {human_size(ram)} of RAM in {len(loads)} PT_LOADs")
    for p in loads:
        what = "kernel text" if is_text(p.p_vaddr) else "RAM"
        out.append(f"    {what:<11} {hex_range(p.p_paddr, p.p_paddr + p.p_memsz):<33} "
                   f"{human_size(p.p_memsz):>9}  vaddr {p.p_vaddr:#x}, file offset {p.p_offset:#x}")
    cpu = 0
    for p, data in note_data:
        out.append(f"  PT_NOTE at file offset {p.p_offset:#x}, {p.p_filesz} bytes:")
        for name, ntype, desc in iter_notes(data):
            tname = NOTE_TYPE_NAMES.get(ntype, f"type {ntype}") if name != "VMCOREINFO" else "VMCOREINFO"
            decoded = None
            if name == "CORE" and ntype == NT_PRSTATUS:
                try:
                    decoded = decode_prstatus(desc, ehdr.e_machine)
                except ValueError as e:
                    out.append(f"    CPU {cpu}: {e}")
                    cpu += 1
                    continue
            if decoded is not None:
                pid, regs = decoded
                out.append(f"    CPU {cpu} (note {cpu}): NT_PRSTATUS, pid {pid}, registers at the panic:")
                items = list(regs.items())
                for i in range(0, len(items), 4):
                    out.append("      " + "  ".join(f"{k:>8}={v:#018x}" if elfclass == 64
                                                    else f"{k:>8}={v:#010x}"
                                                    for k, v in items[i:i + 4]))
                cpu += 1
            elif name == "VMCOREINFO":
                text = desc.rstrip(b"\0").decode("latin-1", "replace")
                lines = [ln for ln in text.splitlines() if ln]
                out.append(f"    VMCOREINFO: {len(lines)} keys (what makedumpfile and crash "
                           f"read: release, page size, symbol addresses, structure offsets)")
                for ln in lines:
                    key, _, value = ln.partition("=")
                    out.append(f"      {key:<40} {value}")
            else:
                out.append(f"    {name} {tname}: {len(desc)} bytes")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------
# Command line

def main(path: str, out=None, err=None) -> int:
    import sys
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        text = inspect_path(path)
    except InspectError as e:
        from pykexec.errors import one_line
        err.write(f"pykexec inspect: {one_line(str(e))}\n")
        return 1
    out.write(text)
    return 0
