"""Cold start: a crash-load plan imports only what it uses (issue 14).

Runs `pykexec -p KERNEL --dry-run --sysroot SNAPSHOT` (the whole planning path; no load is
ever attempted here) and lists the modules the process had imported at exit. Building the
purgatory (subprocess, tempfile, shutil, shlex), the CLI subcommands (click, snapshot,
inspect), the SVG picture and plan folders (json without a snapshot) are not needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.packaging.build import REPO

EXAMPLES = REPO / "examples"
NOT_NEEDED = ("subprocess", "tempfile", "shutil", "shlex", "click", "pykexec.views.svg",
              "pykexec.views.inspect", "pykexec.machine.snapshot", "pykexec.machine.snapcheck", "pykexec.vmcore")

PROBE = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: json.dump(sorted(sys.modules), open(out, "w")))
sys.argv[0] = "pykexec"
runpy.run_module("pykexec", run_name="__main__")
"""


def imported_by(tmp_path, *argv):
    out = tmp_path / "modules.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out), *argv], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(out.read_text()))


def test_a_crash_plan_imports_only_what_it_uses(tmp_path):
    modules = imported_by(tmp_path, "-p", str(EXAMPLES / "kernels" / "stand-in-bzImage"),
                          "--append=console=ttyS0", "--sysroot",
                          str(EXAMPLES / "qemu-x86_64-1g-2cpu"), "--dry-run")
    assert "pykexec.arch.x86_64.crashload" in modules and "pykexec.purgatory.build" in modules
    assert not [m for m in NOT_NEEDED if m in modules], sorted(set(NOT_NEEDED) & modules)


def test_the_svg_picture_is_imported_only_when_asked(tmp_path):
    modules = imported_by(tmp_path, "-p", str(EXAMPLES / "kernels" / "stand-in-bzImage"),
                          "--append=console=ttyS0", "--sysroot",
                          str(EXAMPLES / "qemu-x86_64-1g-2cpu"), "--dry-run",
                          "--svg", str(tmp_path / "plan.svg"))
    assert "pykexec.views.svg" in modules                      # the probe sees what a run imports
