"""`pykexec vmcore info`: what a person asks of a dump first, as a dict (--json) or a table.

- the kernel release (VMCOREINFO OSRELEASE) and the crash time (CRASHTIME, UTC);
- the panic line (the last "Kernel panic - not syncing" record of the log) and the last
  log lines;
- each CPU's NT_PRSTATUS registers, and which CPU panicked. That CPU is found, in order:
  (1) the panic record's printk caller: "C<n>" is CPU n, "T<pid>" is the CPU whose
  NT_PRSTATUS pr_pid is that pid (the crashing CPU saves its own note with the current
  task's pid; the others are stopped by NMI wherever they were, mostly idle, pid 0);
  (2) the "CPU: <n> PID: <pid>" line panic's stack dump prints; (3) unknown. NT_PRSTATUS
  notes are in CPU order, so note n is CPU n when CPUs are numbered without holes;
- the memory the dump describes (PT_LOAD ranges and totals) and its VMCOREINFO keys;
- completeness: every PT_LOAD's file bytes are in the file, the notes parse, VMCOREINFO is
  there, the log can be read. `problems` lists what is not so.
"""

from __future__ import annotations

import datetime
import re
from typing import List, Optional

from pykexec.abi.machines import EM_NAMES
from pykexec.vmcore import dmesg
from pykexec.vmcore.arch import arch_for
from pykexec.vmcore.dump import Vmcore
from pykexec.vmcore.error import VmcoreError

PANIC_MARK = b"Kernel panic - not syncing"
CPU_LINE = re.compile(rb"CPU: (\d+) PID: (\d+)")


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _line(rec: dmesg.Record) -> str:
    return (dmesg.timestamp(rec.ts_nsec or 0) + dmesg.escape(rec.text)).decode("latin-1")


def panicked_cpu(dump: Vmcore, records: List[dmesg.Record]) -> tuple:
    """(cpu index or None, how it was found)."""
    panic = [r for r in records if PANIC_MARK in r.text]
    if panic and panic[-1].caller_id is not None:
        rec = panic[-1]
        caller = rec.caller()
        if caller.startswith("C"):
            cpu = int(caller[1:])
            if cpu < len(dump.cpus):
                return cpu, f"panic record's printk caller {caller}"
        else:
            pid = int(caller[1:])
            hits = [i for i, c in enumerate(dump.cpus) if c.pid == pid]
            if len(hits) == 1:
                return hits[0], f"panic record's caller {caller} is NT_PRSTATUS pid {pid}"
    for rec in reversed(records):
        m = CPU_LINE.search(rec.text)
        if m and int(m.group(1)) < len(dump.cpus):
            return int(m.group(1)), f"log line \"{m.group(0).decode()}\""
    return None, "not found (no panic record with a caller, no \"CPU: n PID: p\" line)"


def gather(dump: Vmcore, last_lines: int = 10) -> dict:
    info = dump.vmcoreinfo
    problems: List[str] = []
    for load, absent in dump.missing():
        problems.append(f"PT_LOAD {load.index} ({load.paddr:#x}-{load.end:#x}) lacks its last "
                        f"{absent} file bytes: the file ends at {dump.file_size:#x} (truncated)")
    if info is None:
        problems.append("no VMCOREINFO note")
    records: List[dmesg.Record] = []
    log_format = None
    if info is not None:
        try:
            log_format = dmesg.log_format(dump)
            records = [r for r in dmesg.records(dump) if r.committed]
        except VmcoreError as e:
            problems.append(f"log: {str(e).split(': ', 1)[-1]}")
    panic = [r for r in records if PANIC_MARK in r.text]
    cpu, how = panicked_cpu(dump, records) if dump.cpus else (None, "no NT_PRSTATUS notes")
    crash_time = info.crash_time if info else None
    loads = [{"index": ld.index, "paddr": ld.paddr, "end": ld.end, "vaddr": ld.vaddr,
              "memsz": ld.memsz, "filesz": ld.filesz, "offset": ld.offset} for ld in dump.loads]
    return {
        "file": dump.path,
        "file_size": dump.file_size,
        "elf_class": dump.elfclass,
        "machine": EM_NAMES.get(dump.machine, str(dump.machine)),
        "release": info.osrelease if info else None,
        "build_id": info.get("BUILD-ID") if info else None,
        "page_size": info.page_size if info else None,
        "crash_time": crash_time,
        "crash_time_utc": (datetime.datetime.fromtimestamp(crash_time, datetime.timezone.utc)
                           .strftime("%Y-%m-%d %H:%M:%S UTC") if crash_time else None),
        "log_format": log_format,
        "log_records": len(records),
        "panic_line": _line(panic[-1]) if panic else None,
        "last_lines": [_line(r) for r in records[-last_lines:]] if last_lines else [],
        "panic_cpu": cpu,
        "panic_cpu_found_by": how,
        "cpus": [{"cpu": i, "pid": c.pid, "pc": c.pc, "sp": c.sp, "registers": c.regs}
                 for i, c in enumerate(dump.cpus)],
        "memory": {"loads": loads, "total": sum(ld.memsz for ld in dump.loads),
                   "in_file": sum(ld.filesz for ld in dump.loads)},
        "translation": dump.arch.describe_translation(),
        "vmcoreinfo": dict(info) if info else {},
        "complete": not problems,
        "problems": problems,
    }


def _pointer_size(facts: dict) -> int:
    """Bytes of a kernel pointer of the dump's machine (its reader's, else the ELF class's)."""
    machine = next((m for m, name in EM_NAMES.items() if name == facts["machine"]), None)
    size = arch_for(machine).pointer_size if machine is not None else 0
    return size or facts["elf_class"] // 8


def table(facts: dict) -> str:
    width = 2 + 2 * _pointer_size(facts)
    out = [f"{facts['file']}: ELF{facts['elf_class']} vmcore for {facts['machine']}, "
           f"{_human(facts['file_size'])}"]
    row = lambda k, v: out.append(f"  {k:<14} {v}")  # noqa: E731
    row("release", facts["release"] or "? (no VMCOREINFO)")
    row("crash time", facts["crash_time_utc"] or "not recorded")
    row("panic", facts["panic_line"] or "no \"Kernel panic\" line in the log")
    cpu = facts["panic_cpu"]
    row("panicked CPU", f"{cpu} ({facts['panic_cpu_found_by']})" if cpu is not None
        else facts["panic_cpu_found_by"])
    row("log", f"{facts['log_records']} records ({facts['log_format'] or 'unreadable'})")
    mem = facts["memory"]
    row("memory", f"{_human(mem['total'])} in {len(mem['loads'])} PT_LOADs "
        f"({_human(mem['in_file'])} in the file)")
    for ld in mem["loads"]:
        out.append(f"    {ld['paddr']:#014x}-{ld['end']:#014x} {_human(ld['memsz']):>10}  "
                   f"vaddr {ld['vaddr']:#x}  file offset {ld['offset']:#x}")
    row("translation", "; ".join(facts["translation"]))
    row("complete", "yes" if facts["complete"] else "NO: " + "; ".join(facts["problems"]))
    out.append(f"  CPUs ({len(facts['cpus'])} NT_PRSTATUS notes)")
    for c in facts["cpus"]:
        mark = "  <- panicked" if c["cpu"] == cpu else ""
        pc = "?" if c["pc"] is None else f"{c['pc']:#x}"
        sp = "?" if c["sp"] is None else f"{c['sp']:#x}"
        out.append(f"    CPU {c['cpu']}: pid {c['pid']}, pc {pc}, sp {sp}{mark}")
        items = list(c["registers"].items())
        for i in range(0, len(items), 4):
            out.append("      " + "  ".join(f"{k:>8}={v:#0{width}x}" for k, v in items[i:i + 4]))
    if facts["last_lines"]:
        out.append(f"  last {len(facts['last_lines'])} log lines")
        out.extend(f"    {line}" for line in facts["last_lines"])
    out.append(f"  VMCOREINFO ({len(facts['vmcoreinfo'])} keys)")
    out.extend(f"    {k}={v}" for k, v in facts["vmcoreinfo"].items())
    return "\n".join(out) + "\n"
