"""Showing a plan: where every byte goes and why, as a report for people and JSON for programs.

`describe_plan(plan, machine=None)` gathers the facts once, as plain data with integers as
numbers (the JSON form); `plan_report` turns them into text. Both are pure: a plan (and
optionally the machine it was made for) in, data or text out. Everything is read back out
of the segments the way the capture kernel and purgatory will read it
(`pykexec.views.planfacts`), so a plan recorded from Debian's kexec and one built by pykexec are
explained the same way.

Optional `plan.notes` keys that add facts when a loader records them:

- `crash_window`: `[start, end)` of the crashkernel region used.
- `purgatory_symbols`: `{name: value}` of the symbols the loader patched.
- `user_cmdline`: the command line as the user gave it (so the added parameters are known
  exactly); for oracle plans the `argv` note's `--append`/`--command-line` is used.
- `cpu_notes`: `[[cpu, paddr, size], ...]` to name the CPU of each PT_NOTE.
- `dtb_edits`: `[{"node", "property", "action": "set"|"delete", "value"}, ...]`, the
  properties a loader changed in the device tree it passes (with `dtb`, its address, and
  `dtb_source`, the tree it started from); shown as `device_tree`, beside the segment
  that holds the tree.

Without them the crash window is inferred from the gap the ELF core header leaves in the
dumped RAM, and the CPU of a note from the machine when one is given.

(Longer than 400 lines: the facts and the report that prints them are kept side by side,
so a fact and its wording change together.)
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, TextIO, Tuple

from pykexec.abi import kexec as kexec_abi
from pykexec.abi.machines import EM_NAMES
from pykexec.core.plan import Plan
from pykexec.core.units import hex_range, human_size  # noqa: F401 (views import them here)
from pykexec.views import planfacts

VMCOREINFO_MIN_SIZE = 2048              # CPU crash notes are < 1 KiB; vmcoreinfo ~4 KiB

SEGMENT_PURPOSE = {
    "kernel": "the capture kernel (bzImage protected-mode code), runs where it is loaded",
    "elf_load": "a PT_LOAD of the capture kernel (ELF vmlinux)",
    "initrd": "the capture kernel's initramfs",
    "boot_params": "zero page: boot header, e820 map, command line for the capture kernel",
    "param_block": "parameter block for an ELF kernel (--args-linux)",
    "purgatory": "runs after the panic: checks the segments' SHA-256, saves low RAM, "
                 "jumps to the kernel",
    "elfcorehdr": "ELF core header: the map of the old kernel's memory (/proc/vmcore)",
    "backup": "copy of the first 640 KiB of RAM, made by purgatory at panic time",
    "setup_data": "setup_data item linked from boot_params",
    "unknown": "not recognised",
}

def segment_purposes(plan: Plan) -> dict:
    """What each kind of segment is for; an architecture's decoder may word its own kinds
    (its SEGMENT_PURPOSE)."""
    decoder = planfacts.plan_decoder(plan)
    return {**SEGMENT_PURPOSE, **getattr(decoder, "SEGMENT_PURPOSE", {})}


PARAM_MEANING = {
    "elfcorehdr": "where the ELF core header is: the capture kernel builds /proc/vmcore "
                  "from it",
    "acpi_rsdp": "where the ACPI RSDP is (the capture kernel cannot search for it)",
    "memmap": "the memory the capture kernel may use (exact map on the command line)",
    "disable_cpu_apicid": "the boot CPU's APIC ID, so the capture kernel does not "
                          "send it INIT",
}
LOADER_PARAMS = tuple(PARAM_MEANING)

REGISTER_MEANING = {
    "rsi": "boot_params", "esi": "boot_params",
    "rip": "kernel entry", "eip": "kernel entry",
    "rsp": "stack", "esp": "stack",
}


# ------------------------------------------------------------------------------------------
# Small formatting helpers

def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ------------------------------------------------------------------------------------------
# Facts

def decode_flags(plan: Plan) -> List[str]:
    """The flag names of `plan.flags` (kexec_load: arch + KEXEC_*; file load: KEXEC_FILE_*)."""
    return kexec_abi.decode_flags(plan.flags, plan.syscall == "kexec_file_load")


def crash_hotplug(plan: Plan) -> bool:
    """Whether the kernel may rewrite this crash load's elfcorehdr on CPU/memory hotplug:
    a kexec_load crash load asks with a flag (kexec_file_load's crash loads always may,
    when the kernel has CONFIG_CRASH_HOTPLUG)."""
    return (plan.syscall == "kexec_load" and bool(plan.flags & kexec_abi.KEXEC_ON_CRASH)
            and bool(plan.flags & kexec_abi.CRASH_HOTPLUG_FLAGS))


def _machine_fact(machine, name):
    """machine.<name>, or None when there is no machine or it cannot say."""
    if machine is None:
        return None
    try:
        return getattr(machine, name)
    except Exception:  # noqa: BLE001 - a missing fact only means less detail
        return None


def _pairs(value) -> List[Tuple[int, int]]:
    return [(int(a), int(b)) for a, b in value]


def _kernel_text_rule(plan: Plan):
    """vaddr -> whether a core PT_LOAD there maps kernel text (the plan's architecture's rule;
    none for an architecture pykexec does not know)."""
    decoder = planfacts.plan_decoder(plan)
    return decoder.is_kernel_text if decoder is not None else (lambda _vaddr: False)


def crash_windows(plan: Plan, machine=None, phdrs=None) -> List[Dict[str, Any]]:
    """The crashkernel regions the plan uses: [{start, end, size, source, segments}]."""
    placed = [s for s in plan.segments if s.mem is not None]

    def entry(start, end, source):
        inside = [i for i, s in enumerate(plan.segments)
                  if s.mem is not None and start <= s.mem and s.end <= end]
        return {"start": start, "end": end, "size": end - start, "source": source,
                "segments": inside}

    note = plan.notes.get("crash_window")
    if note is not None:
        if note and isinstance(note[0], (list, tuple)):
            return [entry(a, b, "plan notes") for a, b in _pairs(note)]
        return [entry(int(note[0]), int(note[1]), "plan notes")]
    regions = _machine_fact(machine, "crash_regions")
    if regions:
        return [entry(r.start, r.end, "machine's /proc/iomem Crash kernel line") for r in regions]
    if phdrs is None:
        return []
    is_text = _kernel_text_rule(plan)
    loads = sorted((p.paddr, p.paddr + p.memsz) for p in phdrs
                   if p.type == "LOAD" and not is_text(p.vaddr))
    out = []
    for (_a, prev_end), (next_start, _b) in zip(loads, loads[1:]):
        if next_start <= prev_end:
            continue
        if any(prev_end <= s.mem and s.end <= next_start for s in placed):
            out.append(entry(prev_end, next_start, "gap the ELF core header leaves in the dumped RAM"))
    return out


def _user_cmdline(plan: Plan) -> Optional[str]:
    if "user_cmdline" in plan.notes:
        return plan.notes["user_cmdline"]
    argv = plan.notes.get("argv")
    if not argv:
        return None
    found = None
    args = list(argv)
    for i, arg in enumerate(args):
        for opt in ("--append", "--command-line"):
            if arg.startswith(opt + "="):
                found = (found + " " if found and opt == "--append" else "") + arg.split("=", 1)[1]
            elif arg == opt and i + 1 < len(args):
                found = (found + " " if found and opt == "--append" else "") + args[i + 1]
    return found if found is not None else ""


def cmdline_parameters(plan: Plan, cmdline: Optional[str]) -> List[Dict[str, Any]]:
    """Each parameter of `cmdline` with whether the loader added it and what it means."""
    if cmdline is None:
        return []
    user = _user_cmdline(plan)
    remaining = list(user.split()) if user is not None else None
    out = []
    for word in cmdline.split():
        name = word.split("=", 1)[0]
        if remaining is not None:
            added = word not in remaining
            if not added:
                remaining.remove(word)
        else:
            added = name in LOADER_PARAMS
        out.append({"text": word, "name": name,
                    "value": word.split("=", 1)[1] if "=" in word else None,
                    "added_by_loader": added,
                    "meaning": PARAM_MEANING.get(name, "") if added else ""})
    return out


def _elfcorehdr_param(cmdline: Optional[str]) -> Optional[int]:
    for word in (cmdline or "").split():
        if word.startswith("elfcorehdr="):
            value = word.split("=", 1)[1].split("@")[-1]
            try:
                if value[-1:] in "kK" and value[-1:]:
                    return int(value[:-1], 0) * 1024
                if value[-1:] in "mM" and value[-1:]:
                    return int(value[:-1], 0) << 20
                return int(value, 0)
            except ValueError:
                return None
    return None


def _describe_phdrs(plan: Plan, phdrs, machine) -> List[Dict[str, Any]]:
    is_text = _kernel_text_rule(plan)
    cpu_by_addr: Dict[int, int] = {}
    for item in plan.notes.get("cpu_notes", ()) or ():
        cpu_by_addr[int(item[1])] = int(item[0])
    for note in _machine_fact(machine, "cpus") or ():
        cpu_by_addr.setdefault(note.paddr, note.cpu)
    vmcoreinfo = _machine_fact(machine, "vmcoreinfo")
    notes = [p for p in phdrs if p.type == "NOTE"]
    labels = plan.notes.get("core_header")
    if not isinstance(labels, (list, tuple)) or len(labels) != len(phdrs):
        labels = None
    segs = {s.mem: i for i, s in enumerate(plan.segments) if s.mem is not None}
    out = []
    cpu_seen = 0
    for index, p in enumerate(phdrs):
        item = {"index": index, "type": p.type, "offset": p.offset, "vaddr": p.vaddr,
                "paddr": p.paddr, "filesz": p.filesz, "memsz": p.memsz, "flags": p.flags,
                "align": p.align, "stands_for": "", "what": "", "backup_copy": None,
                "cpu": None}
        label = str(labels[index]) if labels is not None else ""
        m = re.match(r"CPU (\d+) notes", label)
        if p.type == "NOTE" and label:
            if m:
                item["stands_for"], item["cpu"] = "cpu_notes", int(m.group(1))
                item["what"] = f"{label} (registers at the panic: NT_PRSTATUS)"
            elif "vmcoreinfo" in label.lower():
                item["stands_for"] = "vmcoreinfo"
                item["what"] = "vmcoreinfo (symbols and offsets for makedumpfile/crash)"
            else:
                item["what"] = label
        elif p.type == "NOTE":
            if vmcoreinfo is not None and p.paddr == vmcoreinfo.paddr:
                item["stands_for"], item["what"] = "vmcoreinfo", "vmcoreinfo"
            elif p.paddr in cpu_by_addr:
                cpu = cpu_by_addr[p.paddr]
                item["stands_for"], item["cpu"] = "cpu_notes", cpu
                item["what"] = f"CPU {cpu} notes (registers at the panic: NT_PRSTATUS)"
            elif p.memsz >= VMCOREINFO_MIN_SIZE or (
                    machine is None and p is notes[-1] and len(notes) > 1
                    and p.memsz != notes[0].memsz):
                item["stands_for"] = "vmcoreinfo"
                item["what"] = "vmcoreinfo (by its size: symbols and offsets for makedumpfile/crash)"
            else:
                item["stands_for"] = "cpu_notes"
                item["what"] = (f"CPU notes, {_ordinal(cpu_seen + 1)} CPU with crash_notes "
                                f"(registers at the panic)")
            if item["stands_for"] == "cpu_notes":
                cpu_seen += 1
        elif p.type == "LOAD":
            if is_text(p.vaddr):
                item["stands_for"] = "kernel_text"
                item["what"] = (f"kernel text: virtual {p.vaddr:#x} = physical {p.paddr:#x}, "
                                f"{human_size(p.memsz)}")
            elif p.offset != p.paddr:
                item["stands_for"] = "ram_backup"
                item["backup_copy"] = p.offset
                where = f", segment #{segs[p.offset]}" if p.offset in segs else ""
                item["what"] = (f"RAM {hex_range(p.paddr, p.paddr + p.memsz)} "
                                f"({human_size(p.memsz)}) (read from the backup copy at "
                                f"{p.offset:#x}{where})")
            else:
                item["stands_for"] = "ram"
                item["what"] = f"RAM {hex_range(p.paddr, p.paddr + p.memsz)} ({human_size(p.memsz)})"
        else:
            item["what"] = f"program header type {p.type}"
        out.append(item)
    return out


def _in_window(start, end, windows) -> bool:
    return any(start < w["end"] and end > w["start"] for w in windows)


def _locate(plan: Plan, addr: Optional[int]) -> Optional[Dict[str, Any]]:
    if addr is None:
        return None
    for i, s in enumerate(plan.segments):
        if s.contains(addr):
            return {"segment": i, "kind": s.kind, "offset": addr - s.mem}
    return None


def describe_plan(plan: Plan, machine=None) -> Dict[str, Any]:
    """Every fact the report shows, as plain data (stable keys, integers as numbers)."""
    facts = planfacts.decode_plan(plan)
    core_seg = planfacts.core_header_segment(plan)
    is_text = _kernel_text_rule(plan)
    phdrs = facts.program_headers
    windows = crash_windows(plan, machine, phdrs)
    purposes = segment_purposes(plan)
    segments = []
    for i, s in enumerate(plan.segments):
        segments.append({
            "index": i, "kind": s.kind, "mem": s.mem, "end": s.end if s.mem is not None else None,
            "memsz": s.memsz, "bufsz": s.bufsz, "sha256": s.sha256, "source": s.source,
            "purpose": purposes.get(s.kind, ""),
            "in_crash_window": (s.mem is not None and _in_window(s.mem, s.end, windows)),
        })
    core = None
    if core_seg is not None and phdrs:
        loads = [p for p in phdrs if p.type == "LOAD"]
        core = {
            "address": core_seg.mem, "segment": plan.segments.index(core_seg),
            "elf_class": facts.core_class, "machine": facts.core_machine,
            "size": len(core_seg.data.rstrip(b"\0")) if core_seg.data else 0,
            "program_headers": _describe_phdrs(plan, phdrs, machine),
            "dumped_bytes": sum(p.memsz for p in loads if not is_text(p.vaddr)),
        }
    decoder = planfacts.plan_decoder(plan)   # e820 and setup_data come from it alone
    e820 = [{"addr": a, "size": n, "end": a + n, "type": t,
             "type_name": decoder.E820_TYPE_NAMES.get(t, f"type {t}"),
             "in_crash_window": _in_window(a, a + n, windows),
             "where": "boot_params" if k < decoder.E820_IN_BOOT_PARAMS else "setup_data"}
            for k, (a, n, t) in enumerate(facts.e820)]
    setup = [{"address": a, "type": t, "type_name": decoder.SETUP_DATA_NAMES.get(t, f"type {t}"),
              "len": n, "meaning": decoder.SETUP_DATA_MEANING.get(t, "")}
             for a, t, n, _d in planfacts.setup_data_chain(plan)]
    purgatory = None
    purg_seg = next((s for s in plan.segments if s.kind == "purgatory"), None)
    if purg_seg is not None or facts.registers is not None:
        regs = dict(facts.registers or {})
        offset = regs.pop("_block_offset", None)
        width = regs.pop("_width", None)
        described = []
        for name, value in regs.items():
            loc = _locate(plan, value) if value else None
            described.append({"name": name, "value": value,
                              "meaning": REGISTER_MEANING.get(name, ""), "points_to": loc})
        symbols = plan.notes.get("purgatory_symbols") or {}
        purgatory = {
            "segment": plan.segments.index(purg_seg) if purg_seg is not None else None,
            "address": purg_seg.mem if purg_seg is not None else None,
            "entry": plan.entry, "entry_in": _locate(plan, plan.entry),
            "register_block": (purg_seg.mem + offset) if (purg_seg is not None
                                                          and offset is not None) else None,
            "register_width": width,
            "registers": described,
            "symbols": dict(symbols),
        }
    cmdline = facts.cmdline if facts.cmdline is not None else plan.cmdline
    elfcorehdr_param = _elfcorehdr_param(cmdline)
    return {
        "format": 1,
        "arch": plan.arch, "syscall": plan.syscall, "flags": plan.flags,
        "flag_names": decode_flags(plan), "entry": plan.entry,
        # only when on, so that every other plan's JSON stays as it was
        **({"crash_hotplug": True} if crash_hotplug(plan) else {}),
        "entry_in": _locate(plan, plan.entry),
        "cmdline": cmdline,
        "cmdline_parameters": cmdline_parameters(plan, cmdline),
        "elfcorehdr_parameter": elfcorehdr_param,
        "crash_windows": windows,
        "crash_window": ({"start": windows[0]["start"], "end": windows[0]["end"],
                          "size": windows[0]["size"], "source": windows[0]["source"]}
                         if windows else None) if len(windows) <= 1 else _main_window(windows),
        "segments": segments,
        "total_memsz": sum(s.memsz for s in plan.segments),
        "total_bufsz": sum(s.bufsz for s in plan.segments),
        "elf_core_header": core,
        "e820": e820,
        "setup_data": setup,
        "boot_header": dict(facts.boot_header),
        "purgatory": purgatory,
        # only for plans that pass a device tree, so that every other plan's JSON stays
        **({"device_tree": dt} if (dt := device_tree(plan)) is not None else {}),
        "notes": _jsonable(dict(plan.notes)),
    }


FDT_MAGIC = bytes.fromhex("d00dfeed")      # a flattened device tree's first word (big endian)
DTB_EDIT_FIELDS = ("node", "property", "action", "value")


def device_tree(plan: Plan) -> Optional[Dict[str, Any]]:
    """The `dtb_edits` note with the segment that holds the tree (the note's `dtb` address,
    else a segment of kind dtb or one that starts with the FDT magic); None without the
    note. Every field is text, whatever a recorded plan's note holds."""
    edits = plan.notes.get("dtb_edits")
    if edits is None:
        return None
    items = edits if isinstance(edits, (list, tuple)) else [edits]
    shown = []
    for e in items:
        e = e if hasattr(e, "get") else {"value": e}
        shown.append({k: "" if e.get(k) is None else str(e.get(k)) for k in DTB_EDIT_FIELDS})
    address = plan.notes.get("dtb")
    seg = plan.segment_at(address) if isinstance(address, int) else None
    if seg is None:
        seg = next((s for s in plan.segments if s.kind == "dtb"), None) or next(
            (s for s in plan.segments if s.data[:4] == FDT_MAGIC), None)
    source = plan.notes.get("dtb_source")
    return {
        "segment": plan.segments.index(seg) if seg is not None else None,
        "address": seg.mem if seg is not None else None,
        "size": seg.bufsz if seg is not None else None,
        "source": None if source is None else str(source),
        "edits": shown,
    }


def _main_window(windows):
    best = max(windows, key=lambda w: (len(w["segments"]), w["start"]))
    return {"start": best["start"], "end": best["end"], "size": best["size"],
            "source": best["source"]}


def _jsonable(value):
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def plan_summary(plan: Plan, machine=None) -> dict:
    """The plan as plain data: plan.json's keys (without the bytes) plus every decoded fact."""
    return describe_plan(plan, machine)


# ------------------------------------------------------------------------------------------
# Text

def _where(loc: Optional[Dict[str, Any]]) -> str:
    if loc is None:
        return "outside every segment"
    return f"{loc['kind']} segment #{loc['segment']} + {loc['offset']:#x}"


def plan_report(plan: Plan, machine=None, facts: Optional[Dict[str, Any]] = None) -> str:
    f = facts if facts is not None else describe_plan(plan, machine)
    out: List[str] = []
    add = out.append
    add(f"{f['syscall']} for {f['arch']}: flags {f['flags']:#x} ({' | '.join(f['flag_names'])}), "
        + (f"entry {f['entry']:#x} ({_where(f['entry_in'])})" if f["entry"] is not None
           else "no entry (the kernel places the segments)"))
    for w in f["crash_windows"]:
        used = sum(plan.segments[i].memsz for i in w["segments"])
        usage = (f"{len(w['segments'])} segments use {human_size(used)}" if w["segments"]
                 else "no segments here")
        add(f"crash kernel window: {hex_range(w['start'], w['end'])} "
            f"[{w['start']:#x}, {w['end']:#x}) {human_size(w['size'])}, {usage} "
            f"(from the {w['source']})")
    if f.get("crash_hotplug"):
        add("crash hotplug: on (the kernel rewrites the elfcorehdr on CPU/memory hotplug; "
            "purgatory does not check it)")
    uki = plan.notes.get("uki")
    if uki:
        add("unified kernel image: the kernel is its .linux section; command line from "
            + ("its .cmdline section" if uki["cmdline_from"] != "options" else "the options")
            + "; initrd from "
            + ("its .initrd section" if uki["initrd_from"] != "options" else "the options"))
    add("")
    add("segments (copied in this order when the panic comes)")
    add(f"{'#':>2}  {'kind':<11} {'physical range':<37} {'memsz':>10} {'bufsz':>10}  "
        f"{'sha256':<12}  source")
    for s in f["segments"]:
        where = (f"{s['mem']:#018x}-{s['end'] - 1:#018x}" if s["mem"] is not None
                 else "(file descriptor)")
        add(f"{s['index']:>2}  {s['kind']:<11} {where:<37} {s['memsz']:>#10x} {s['bufsz']:>#10x}  "
            f"{s['sha256'][:12]}  {s['source']}")
    add(f"    total memsz {f['total_memsz']:#x} ({human_size(f['total_memsz'])}), "
        f"bufsz {f['total_bufsz']:#x} ({human_size(f['total_bufsz'])})")
    kinds_seen = {}
    for s in f["segments"]:
        kinds_seen.setdefault(s["kind"], s["purpose"])
    for kind, purpose in kinds_seen.items():
        add(f"    {kind:<11} {purpose}")

    core = f["elf_core_header"]
    if core is not None:
        add("")
        cls = {1: "ELF32", 2: "ELF64"}.get(core["elf_class"], f"class {core['elf_class']}")
        mach = EM_NAMES.get(core["machine"], f"machine {core['machine']}")
        add(f"ELF core header at {core['address']:#x} (segment #{core['segment']}): {cls} {mach}, "
            f"{len(core['program_headers'])} program headers; the capture kernel's /proc/vmcore "
            f"will hold {human_size(core['dumped_bytes'])} of RAM")
        add(f"{'#':>4}  {'type':<4} {'paddr':>18} {'memsz':>12} {'offset':>18}  stands for")
        for p in core["program_headers"]:
            add(f"{p['index']:>4}  {p['type']:<4} {p['paddr']:>#18x} {p['memsz']:>#12x} "
                f"{p['offset']:>#18x}  {p['what']}")
    if f["e820"]:
        add("")
        in_bp = sum(1 for e in f["e820"] if e["where"] == "boot_params")
        add(f"capture kernel memory map (e820): {len(f['e820'])} entries, {in_bp} in boot_params"
            + (f", {len(f['e820']) - in_bp} in SETUP_E820_EXT" if len(f["e820"]) > in_bp else ""))
        for e in f["e820"]:
            mark = "  <- inside the crash window: memory the capture kernel runs in" \
                if e["in_crash_window"] and e["type_name"] == "RAM" else ""
            add(f"  {e['addr']:#018x}-{e['end'] - 1:#018x} {e['size']:>#12x} "
                f"{human_size(e['size']):>9}  {e['type_name']}{mark}")
    if f["cmdline"] is not None:
        add("")
        from pykexec.core.cmdline import byte_length
        origin = plan.notes.get("cmdline_origin")
        # printable_text: a command line kept from a device tree is not trusted either
        add(printable_text(f"command line ({byte_length(f['cmdline'])} bytes"
                           + (f", {origin}" if origin else "") + "):"))
        add(f"  {printable_text(f['cmdline'])}")
        for p in f["cmdline_parameters"]:
            if p["added_by_loader"]:
                extra = ""
                if p["name"] == "elfcorehdr" and f["elfcorehdr_parameter"] is not None:
                    extra = f" = {f['elfcorehdr_parameter']:#x}"
                add(f"  + {printable_text(p['text']):<28} added by the loader: {p['meaning'] or 'loader parameter'}{extra}")
    if f.get("device_tree") is not None:
        add("")
        add(device_tree_heading(f["device_tree"]) + ":")
        for line in device_tree_lines(f["device_tree"]):
            add("  " + line)
    if f["setup_data"]:
        add("")
        add("setup_data chain (from boot_params):")
        for s in f["setup_data"]:
            add(f"  {s['address']:#x} {s['type_name']} ({s['type']}), {s['len']} bytes"
                + (f": {s['meaning']}" if s["meaning"] else ""))
    pg = f["purgatory"]
    if pg is not None:
        add("")
        head = "purgatory"
        if pg["address"] is not None:
            head += f" at {pg['address']:#x} (segment #{pg['segment']})"
        if pg["entry"] is not None:
            head += f", entry {pg['entry']:#x} ({_where(pg['entry_in'])})"
        add(head)
        if pg["registers"]:
            block = (f"at {pg['register_block']:#x}" if pg["register_block"] is not None
                     else "found by its contents; no segment is labelled purgatory")
            add(f"  registers loaded before jumping to the kernel "
                f"({pg['register_width']}-bit block {block}):")
            zero = [r["name"] for r in pg["registers"] if not r["value"]]
            for r in pg["registers"]:
                if r["value"]:
                    what = r["meaning"]
                    where = _where(r["points_to"]) if r["points_to"] else "outside every segment"
                    if (r["name"] in ("rip", "eip") and r["points_to"]
                            and r["points_to"]["kind"] == "kernel"
                            and r["points_to"]["offset"] == 0x200):
                        where += " (the 64-bit entry point, startup_64)"
                    add(f"    {r['name']:<4} = {r['value']:#018x}  {what + ': ' if what else ''}{where}")
            if zero:
                add(f"    zero: {' '.join(zero)}")
        else:
            add("  register block not found")
        if pg["symbols"]:
            add("  symbols set by the loader:")
            for line in _symbol_lines(plan, pg["symbols"]):
                add("    " + line)
    return "\n".join(out) + "\n"


def device_tree_heading(dt: Dict[str, Any]) -> str:
    where = (f" (segment #{dt['segment']} at {dt['address']:#x}, {dt['size']} bytes)"
             if dt["segment"] is not None and dt["address"] is not None else "")
    source = f" from {printable_text(dt['source'])}" if dt["source"] else ""
    count = len(dt["edits"])
    return (f"device tree for the new kernel{where}{source}: {count} "
            f"propert{'y' if count == 1 else 'ies'} changed")


def device_tree_lines(dt: Dict[str, Any]) -> List[str]:
    """One line per edit: `set    /chosen/bootargs = "..."`, `delete /chosen/...`."""
    out = []
    for e in dt["edits"]:
        path = e["node"].rstrip("/") + "/" + e["property"]
        value = f" = {e['value']}" if e["action"] != "delete" and e["value"] else ""
        out.append(printable_text(f"{e['action']:<6} {path}{value}"))
    return out


def printable_text(text: str) -> str:
    """`text` on one line: undecodable bytes and control characters escaped (a recorded
    plan's note is not trusted)."""
    from pykexec.core.cmdline import printable
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in printable(text))


def _symbol_lines(plan: Plan, symbols: Dict[str, Any]) -> List[str]:
    """purgatory_symbols as text: scalars in hex, (address, length) lists by segment."""
    addresses = symbols.get("symbol_addresses")
    addresses = addresses if isinstance(addresses, dict) else {}
    lines = []
    for name, value in symbols.items():
        if name in ("symbol_addresses", "registers"):
            continue      # the addresses are shown beside each symbol; registers above
        at = addresses.get(name)
        where = f"  (at {at:#x})" if isinstance(at, int) else ""
        if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
            lines.append(f"{name} = {json.dumps(value)}{where}")
        elif isinstance(value, int):
            lines.append(f"{name} = {value:#x}{where}")
        elif value and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
            lines.append(f"{name} = {len(value)} regions{where}:")
            covered = set()
            for start, length in value:
                loc = _locate(plan, start)
                seg = f"  segment #{loc['segment']} {loc['kind']}" if loc else ""
                if loc:
                    covered.add(loc["segment"])
                lines.append(f"    {start:#x} + {length:#x}{seg}")
            if name == "sha256_regions":
                left = [f"#{i} {s.kind}" for i, s in enumerate(plan.segments)
                        if i not in covered and s.mem is not None]
                if left:
                    lines.append(f"    not checked: {', '.join(left)} (purgatory cannot "
                                 f"check the bytes it runs from)" if all(
                                     plan.segments[int(x.split()[0][1:])].kind == "purgatory"
                                     for x in left) else f"    not checked: {', '.join(left)}")
        else:
            lines.append(f"{name} = {json.dumps(value)}{where}")
    if "registers" in symbols and "entry64_regs" in addresses:
        lines.append(f"entry64_regs = the registers above  (at {addresses['entry64_regs']:#x})")
    return lines


def plan_table(plan: Plan) -> str:
    """The report (kept under its first name)."""
    return plan_report(plan)


def print_plan(plan: Plan, as_json: bool, out: TextIO, machine=None) -> None:
    if as_json:
        json.dump(describe_plan(plan, machine), out, indent=1)
        out.write("\n")
    else:
        out.write(plan_report(plan, machine))
