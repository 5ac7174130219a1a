"""examples/kdump-2006-i386: the document's SETUP section replays on its saved machine."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.bed.fakekernel32 import make_vmlinux32

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "kdump-2006-i386")


def test_replay_plans_the_document_command(tmp_path):
    vmlinux = make_vmlinux32(str(tmp_path / "vmlinux"))
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run([os.path.join(EXAMPLE, "replay"), vmlinux, "/dev/hda1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "crashkernel=64M@16M" in out and "reserved: 67108864 bytes" in out
    assert "kexec_load for i386: flags 0x1 (KEXEC_ON_CRASH | KEXEC_ARCH_DEFAULT)" in out
    assert "0x0000000001000000-0x000000000103ffff" in out          # PT_LOAD at its link address
    assert "ELF core header at" in out and "ELF32 i386" in out
    assert "root=/dev/hda1 init 1 irqpoll maxcpus=1" in out and "elfcorehdr=" in out
    assert "eip  = 0x0000000001000000" in out
    assert "read from the backup copy" in out
    assert not proc.stderr.strip(), proc.stderr


def test_machine_is_the_i386_snapshot():
    machine = os.path.join(EXAMPLE, "machine")
    assert os.path.isfile(os.path.join(machine, "snapshot.json"))
    with open(os.path.join(machine, "proc", "cmdline")) as f:
        assert "crashkernel=64M@16M" in f.read()
