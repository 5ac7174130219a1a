"""The commands of docs/tutorial.md: how they are marked, run and compared.

A command is a line starting with `$ ` inside a ```console fenced block (a trailing `\\`
continues it on the next line); the lines after it, up to the next command or the end of
the block, are the output the document shows. Commands run with bash in the repository
root, in document order (later ones may read what earlier ones wrote), with `pykexec` on
PATH as this interpreter's `python -m pykexec`, and `/tmp/tutorial` replaced by a private
folder. A command must exit 0 (a document that shows a failure says so with `; echo $?`).

The shown output is compared with the real output line by line (trailing spaces ignored):
a line `...` stands for any number of lines left out; without one at the start (end) the
shown output must start (end) where the real one does. The bytes pykexec draws fresh on
every run (the SETUP_RNG_SEED payload, hence the setup_data and purgatory digests and
purgatory's sha256_digest) are masked on the lines that show them.

Used by tests/docs/test_tutorial.py and by scripts/update-tutorial (which fills in the
output of commands whose block shows none yet).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "tutorial.md"
TMP_PREFIX = "/tmp/tutorial"
ELLIPSIS = "..."
VOLATILE_LINE = re.compile(r"^\s*\d+\s+(setup_data|purgatory)\s+0x|sha256_digest|\"sha256\"")
HEX = re.compile(r"[0-9a-f]{12,64}")


@dataclass
class Command:
    line: int                    # 1-based line of the `$ ` in the document
    text: str                    # the command, continuations joined
    shown: List[str] = field(default_factory=list)
    shown_at: int = 0            # index in the document's lines where the output starts
    shown_end: int = 0           # index one past the output


def parse(text: str) -> List[Command]:
    lines = text.splitlines()
    out: List[Command] = []
    in_block = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if not in_block:
            in_block = line.strip() == "```console"
            i += 1
            continue
        if line.strip() == "```":
            in_block = False
            i += 1
            continue
        if line.startswith("$ "):
            start = i
            cmd = line[2:]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd + "\n" + lines[i]
            c = Command(line=start + 1, text=cmd, shown_at=i + 1)
            i += 1
            while i < len(lines) and not lines[i].startswith("$ ") and lines[i].strip() != "```":
                c.shown.append(lines[i])
                i += 1
            c.shown_end = i
            out.append(c)
            continue
        raise ValueError(f"tutorial line {i + 1}: output before any `$ ` command in a console block")
    return out


def environment(tmp: Path) -> dict:
    bindir = tmp / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    wrapper = bindir / "pykexec"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m pykexec \"$@\"\n")
    wrapper.chmod(0o755)
    py = bindir / "python"
    if not py.exists():
        py.symlink_to(sys.executable)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = str(REPO) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHON"] = sys.executable
    env["COLUMNS"] = "100"
    env.pop("PYKEXEC_SYSCALL_FAULTS", None)
    return env


def run(cmd: Command, tmp: Path, env: dict) -> subprocess.CompletedProcess:
    text = cmd.text.replace(TMP_PREFIX, str(tmp / "tutorial"))
    return subprocess.run(["bash", "-o", "pipefail", "-c", text], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def normalise(lines: List[str], tmp: Path) -> List[str]:
    out = []
    for line in lines:
        line = line.rstrip().replace(str(tmp / "tutorial"), TMP_PREFIX)
        if VOLATILE_LINE.search(line):
            line = HEX.sub("<random>", line)
        out.append(line)
    return out


def mismatch(shown: List[str], actual: List[str]) -> str:
    """'' when `shown` (with `...` gaps) matches `actual`, else what went wrong."""
    chunks: List[List[str]] = [[]]
    for line in shown:
        if line.strip() == ELLIPSIS:
            chunks.append([])
        else:
            chunks[-1].append(line)
    open_start = shown[:1] != [] and shown[0].strip() == ELLIPSIS
    open_end = bool(shown) and shown[-1].strip() == ELLIPSIS
    while actual and not actual[-1].strip():
        actual = actual[:-1]
    pos = 0
    for n, chunk in enumerate(chunks):
        if not chunk:
            continue
        anchored = n == 0 and not open_start
        if anchored:
            if actual[:len(chunk)] != chunk:
                return _diff(chunk, actual[:len(chunk) + 3], "the output starts differently")
            pos = len(chunk)
            continue
        for at in range(pos, len(actual) - len(chunk) + 1):
            if actual[at:at + len(chunk)] == chunk:
                pos = at + len(chunk)
                break
        else:
            first = chunk[0]
            near = [a for a in actual[pos:] if a.split()[:2] == first.split()[:2]][:3]
            return (f"shown lines not found (in order) in the real output; first of them:\n"
                    f"  shown: {first!r}\n  real lines that start alike: {near!r}")
    if not open_end and pos != len(actual):
        return f"the real output goes on after the shown lines: {actual[pos:pos + 3]!r}"
    return ""


def _diff(shown, actual, what):
    for a, b in zip(shown, actual + [""] * len(shown)):
        if a != b:
            return f"{what}:\n  shown: {a!r}\n  real:  {b!r}"
    return what
