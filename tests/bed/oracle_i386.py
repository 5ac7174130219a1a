"""Debian's i386 kexec (kexec-tools:i386) as an oracle, on the host.

The same method as tests/bed/oracle.py (a snapshot bound over /proc and /sys in a private
mount namespace, the syscalls recorded by an LD_PRELOAD shim), with three changes for a
32-bit kexec on this x86_64 host:

* the kexec binary is the one in the bed's 32-bit userland (tests/bed/i386guest.py
  `get_root()`); it needs the host's libc6:i386 to run;
* the shim is built with -m32 (gcc-multilib) and catches kexec_load as syscall 283;
* kexec runs under `setarch i686`, so uname() says i686 as on the i386 guest the
  snapshot came from. Without it kexec-tools' i386 build sees an x86_64 kernel, adds
  KEXEC_ARCH_X86_64 and enters purgatory through its 64-to-32-bit trampoline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

from tests.bed import oracle
from tests.bed.kernels import BedError


def kexec_i386(root: Optional[Path] = None) -> Path:
    from tests.bed.i386guest import get_root
    return (root or get_root()) / "sbin" / "kexec"


def can_run_i386(root: Optional[Path] = None) -> Optional[str]:
    """None if 32-bit programs (and an -m32 shim) work here, else why not."""
    kexec = kexec_i386(root)
    if shutil.which("setarch") is None:
        return "setarch (util-linux) is missing"
    try:
        proc = subprocess.run(["setarch", "i686", str(kexec), "--version"], capture_output=True,
                              text=True, timeout=30)
    except OSError as err:
        return f"cannot run {kexec}: {err}"
    if proc.returncode != 0 or "kexec-tools" not in proc.stdout + proc.stderr:
        return (f"{kexec} does not run here (exit {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[:200]}); install libc6:i386")
    try:
        oracle.shim_library(m32=True)
    except RuntimeError as err:
        return f"cannot build the 32-bit shim (install gcc-multilib): {str(err)[:300]}"
    return None


_NAMESPACE_SCRIPT = oracle._NAMESPACE_SCRIPT.replace(
    'exec env LD_PRELOAD="$lib"', 'exec setarch i686 env LD_PRELOAD="$lib"')


def run_oracle_i386(snapshot_dir: str, argv: Sequence[str], kexec: Optional[str] = None,
                    out_dir: Optional[str] = None) -> oracle.OracleResult:
    """Run Debian's i386 `kexec ARGV` on the i386 machine in `snapshot_dir`; record only."""
    parsed = oracle.check_argv(argv)
    if os.geteuid() != 0:
        raise PermissionError("run_oracle_i386 needs root (mount namespace)")
    if _NAMESPACE_SCRIPT == oracle._NAMESPACE_SCRIPT:
        raise BedError("tests/bed/oracle.py's namespace script changed: update oracle_i386")
    kexec = kexec or str(kexec_i386())
    snap = os.path.abspath(snapshot_dir)
    lib = oracle.shim_library(m32=True)
    with tempfile.TemporaryDirectory(prefix="pykexec-oracle32-") as records:
        proc = subprocess.run(
            ["unshare", "--mount", "--net", "--propagation", "private",
             "sh", "-c", _NAMESPACE_SCRIPT, "oracle", snap, str(lib), records, kexec, *argv],
            capture_output=True, text=True, errors="replace", timeout=oracle.TIMEOUT_S,
            stdin=subprocess.DEVNULL)
        calls, reboots, getrandoms = oracle.read_records(records)
    plan = None
    if calls:
        notes = {"source": "oracle-i386", "kexec": kexec, "argv": list(argv),
                 "exit_code": proc.returncode, "snapshot": snap}
        plan = replace(oracle.plan_from_call(calls[-1], notes, parsed.kernel, parsed.initrd),
                       arch="i386")
        if out_dir is not None:
            oracle.save_plan(plan, out_dir)
    return oracle.OracleResult(exit_code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                               plan=plan, calls=calls, reboots=reboots, getrandom_calls=getrandoms)
