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
# packages a load never needs, with everything under them (numpy is vmcore's)
NOT_NEEDED_TREES = ("numpy", "pykexec.vmcore", "zstandard", "click", "hypothesis")


def unneeded(modules):
    return sorted(m for m in modules if m in NOT_NEEDED
                  or any(m == t or m.startswith(t + ".") for t in NOT_NEEDED_TREES))

PROBE = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: json.dump(sorted(sys.modules), open(out, "w")))
sys.argv[0] = "pykexec"
runpy.run_module("pykexec", run_name="__main__")
"""


def imported_by(tmp_path, *argv, status=0):
    out = tmp_path / "modules.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out), *argv], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == status, proc.stderr
    return set(json.loads(out.read_text()))


def test_a_crash_plan_imports_only_what_it_uses(tmp_path):
    modules = imported_by(tmp_path, "-p", str(EXAMPLES / "kernels" / "stand-in-bzImage"),
                          "--append=console=ttyS0", "--sysroot",
                          str(EXAMPLES / "qemu-x86_64-1g-2cpu"), "--dry-run")
    assert "pykexec.arch.x86_64.crashload" in modules and "pykexec.purgatory.build" in modules
    assert not unneeded(modules), unneeded(modules)


def test_a_bzimage_crash_plan_never_imports_the_elf_parser(tmp_path):
    """pyelftools' ELFFile drags in its DWARF reader (about a tenth of a bare load's start):
    a bzImage load takes the purgatory from the build's record and parses no ELF file."""
    modules = imported_by(tmp_path, "-p", str(EXAMPLES / "kernels" / "stand-in-bzImage"),
                          "--append=console=ttyS0", "--sysroot",
                          str(EXAMPLES / "qemu-x86_64-1g-2cpu"), "--dry-run")
    assert "pykexec.purgatory.elfrel" in modules
    parser = sorted(m for m in modules if m.startswith(("elftools.dwarf", "elftools.elf.elffile")))
    assert not parser, parser


def test_the_probe_sees_the_elf_parser_when_a_vmlinux_is_loaded(tmp_path):
    """The check above can fail: an ELF kernel is parsed with pyelftools."""
    modules = imported_by(tmp_path, "-p", str(EXAMPLES / "kernels" / "stand-in-vmlinux-i386"),
                          "--args-linux", "--append=console=ttyS0", "--sysroot",
                          str(EXAMPLES / "kdump-2006-i386" / "machine"), "--dry-run")
    assert "elftools.elf.elffile" in modules and "elftools.dwarf" in modules


def test_a_crash_plan_with_an_initrd_imports_only_what_it_uses(tmp_path):
    modules = imported_by(tmp_path, "-p", str(EXAMPLES / "kernels" / "stand-in-bzImage"),
                          "--initrd=" + str(EXAMPLES / "kernels" / "stand-in-initrd"),
                          "--append=console=ttyS0", "--sysroot",
                          str(EXAMPLES / "qemu-x86_64-1g-2cpu"), "--dry-run")
    assert "pykexec.arch.x86.crashload" in modules
    assert not unneeded(modules), unneeded(modules)


def test_the_probe_sees_a_package_tree_that_is_imported(tmp_path):
    """The check above can fail: `vmcore info` imports the vmcore tree (exit 1: the example
    is only the head of a dump, so info calls it incomplete)."""
    modules = imported_by(tmp_path, "vmcore", "info",
                          str(EXAMPLES / "vmcore-1g-2cpu" / "vmcore-head"), status=1)
    assert {"pykexec.vmcore", "pykexec.vmcore.info"} <= set(unneeded(modules))


def test_the_svg_picture_is_imported_only_when_asked(tmp_path):
    modules = imported_by(tmp_path, "-p", str(EXAMPLES / "kernels" / "stand-in-bzImage"),
                          "--append=console=ttyS0", "--sysroot",
                          str(EXAMPLES / "qemu-x86_64-1g-2cpu"), "--dry-run",
                          "--svg", str(tmp_path / "plan.svg"))
    assert "pykexec.views.svg" in modules                      # the probe sees what a run imports
