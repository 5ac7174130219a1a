"""Plans are byte-identical to the committed baseline (scripts/plan-corpus, issue 10).

tests/unit/plan_baseline.json holds, for several hundred (machine, request) cases, the
SHA-256 of every file of the saved plan and of every view (table, JSON, SVG, inspect), or the
exact refusal. It was made from the commit before the package re-layout; the corpus drives
pykexec only through its command line, so it keeps working whatever the modules are called.
Regenerate the baseline only for an intended behaviour change (see the script's docstring).
"""

from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "plan-corpus"
BASELINE = Path(__file__).with_name("plan_baseline.json")


def corpus_module():
    """scripts/plan-corpus as a module (its file name has no .py)."""
    loader = importlib.machinery.SourceFileLoader("plan_corpus", str(SCRIPT))
    spec = importlib.util.spec_from_loader("plan_corpus", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def baseline():
    return json.loads(BASELINE.read_text())


def test_every_plan_and_view_matches_the_baseline():
    require(shutil.which("gcc"), "gcc builds the purgatory that every plan holds")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check", str(BASELINE), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    diffs = proc.stdout.splitlines()
    shown = "\n".join(diffs[:80]) + (f"\n... and {len(diffs) - 80} more" if len(diffs) > 80 else "")
    assert proc.returncode == 0 and not diffs, (
        f"plans differ from {BASELINE.name} ({len(diffs)} differences; exit {proc.returncode}):\n"
        f"{shown}\n{proc.stderr[-3000:]}")


def test_the_baseline_covers_both_arches_every_view_and_refusals(baseline):
    cases = baseline["cases"]
    assert len(cases) >= 400
    machines = {key.split(" | ")[0] for key in cases}
    assert {"examples/qemu-x86_64-1g-2cpu", "examples/server-64g-2socket",
            "examples/kdump-2006-i386/machine", "tests/snapshots/qemu-i386-pae-5g-2cpu",
            "synthetic/server_64g_numa", "overlay/efi"} <= machines
    assert any(m.startswith("synthetic/") for m in machines)
    assert all("aarch64" in why for name, why in baseline["skipped"].items() if "arm64" in name)
    plans = [c for c in cases.values() if c.get("files")]
    assert len(plans) >= 300
    assert all({"table", "json"} <= set(c["views"]) for c in plans)
    # no SVG for a kexec_file_load plan: the kernel places its segments
    assert all("svg" in c["views"] for c in plans if " -s " not in c["cmd"])
    assert sum("inspect" in c["views"] for c in plans) >= 100
    refusals = [c for c in cases.values() if c["exit"] not in (0, 1) or
                (c["exit"] == 1 and c["stderr"].startswith("pykexec:"))]
    assert len(refusals) >= 50 and all(c["stderr"].count("\n") == 1 for c in refusals)
    # a plan of each kind: kexec_load crash (x86_64, i386), normal load, kexec_file_load
    keys = {k.split(" | ")[1] for k, c in cases.items() if c.get("files")}
    assert {"p-bz-initrd", "p-elf", "l-bz", "p-bz-s", "p-elf32-core", "p-mem-min"} <= keys


def test_a_changed_case_is_reported_by_machine_variant_and_file(baseline):
    corpus = corpus_module()
    assert corpus.differences(baseline, baseline) == []
    now = copy.deepcopy(baseline)
    cases = now["cases"]
    plan_key = "examples/qemu-x86_64-1g-2cpu | p-bz-initrd"
    cases[plan_key]["files"]["segment-03.bin"] = "0" * 12
    cases[plan_key]["fields"]["cmdline"] = "1" * 12
    refusal_key = "examples/qemu-x86_64-1g-2cpu | p-console-vga"
    cases[refusal_key]["exit"] = 0
    gone = "tests/snapshots/qemu-i386-2g-1cpu | p-elf"
    del cases[gone]
    cases["synthetic/new | p-bz"] = {"exit": 0, "stderr": ""}
    diffs = corpus.differences(baseline, now)
    old = baseline["cases"][plan_key]
    assert diffs == [
        f"{plan_key}: plan file segment-03.bin: {old['files']['segment-03.bin']} -> 000000000000",
        f"{plan_key}: plan.json field cmdline: {old['fields']['cmdline']} -> 111111111111",
        f"{refusal_key}: exit 255 -> 0",
        "synthetic/new | p-bz: not in the baseline (regenerate it from the commit before the change)",
        f"{gone}: in the baseline, not run now",
    ]
