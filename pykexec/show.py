"""Showing a plan: a table for people, JSON for programs."""

from __future__ import annotations

import json
from typing import TextIO

from pykexec.plan import Plan


def plan_summary(plan: Plan) -> dict:
    """The plan as plain data (what plan.json holds, without the bytes)."""
    return {
        "arch": plan.arch, "syscall": plan.syscall, "flags": plan.flags, "entry": plan.entry,
        "cmdline": plan.cmdline,
        "segments": [{"index": i, "kind": s.kind, "mem": s.mem, "memsz": s.memsz,
                      "bufsz": s.bufsz, "sha256": s.sha256, "source": s.source}
                     for i, s in enumerate(plan.segments)],
        "notes": dict(plan.notes),
    }


def plan_table(plan: Plan) -> str:
    lines = [f"{plan.syscall} for {plan.arch}: flags {plan.flags:#x}, "
             + (f"entry {plan.entry:#x}" if plan.entry is not None else "no entry")]
    lines.append(f"{'#':>2}  {'kind':<11} {'physical range':<37} {'memsz':>10} {'bufsz':>10}  "
                 f"{'sha256':<12}  source")
    for i, s in enumerate(plan.segments):
        where = f"{s.mem:#018x}-{s.end - 1:#018x}" if s.mem is not None else "(file descriptor)"
        lines.append(f"{i:>2}  {s.kind:<11} {where:<37} {s.memsz:>#10x} {s.bufsz:>#10x}  "
                     f"{s.sha256[:12]}  {s.source}")
    if plan.cmdline is not None:
        lines.append(f"command line: {plan.cmdline}")
    return "\n".join(lines) + "\n"


def print_plan(plan: Plan, as_json: bool, out: TextIO) -> None:
    if as_json:
        json.dump(plan_summary(plan), out, indent=1)
        out.write("\n")
    else:
        out.write(plan_table(plan))
