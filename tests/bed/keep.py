"""Real vmcores kept for the tests that read dumps on the host (`pykexec vmcore ...`).

`capture_kept_vmcore(arch, run_dir)` runs ONE pykexec kdump cycle with
CycleConfig.keep_vmcore: stage 2 copies /proc/vmcore into the run's results folder (a
streamed copy over the read-write 9p share), so the file is what the capture kernel saw.

    "x86_64": 1 GiB, 2 CPUs, crashkernel=256M, bzImage: an ELF64 vmcore of ~1 GiB
    "i386":   the 2006 document's case (686 vmlinux, --args-linux --elf32-core-headers,
              crashkernel=64M@16M, 1 GiB, 2 CPUs): an ELF32 vmcore

Tests share one cycle per arch and per session through the fixtures `kept_vmcore_x86_64`
and `kept_vmcore_i386` in tests/e2e/conftest.py (the vmcore `dmesg`/`info` tests and the
`save` tests use the same files); the fixtures delete the vmcore at the end of the session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pykexec.arch.x86 import purgatory_spec
from tests.bed import qemu
from tests.bed.kernels import BedError

KEEP_APPEND_I386 = "console=ttyS0 init 1 irqpoll maxcpus=1 reset_devices panic=1"


@dataclass
class KeptVmcore:
    arch: str
    path: Optional[Path]             # the copied /proc/vmcore (None if the cycle failed)
    release: str                     # the guest kernel package's release (uname -r)
    cpus: int                        # CPUs of the crashed kernel: one NT_PRSTATUS each
    elfclass: int
    result: "qemu.CycleResult"       # the whole cycle (guest vmcore-dmesg output included)
    vmlinux: Optional[Path] = None   # the ELF kernel the guest ran (no debug info)
    uname_release: Optional[str] = None   # `uname -r` in the capture kernel (same kernel)
    guest_pykexec_dmesg: Optional[dict] = None   # `pykexec vmcore dmesg /proc/vmcore` there


def capture_kept_vmcore(arch: str, run_dir: Path, timeout: float = 400) -> KeptVmcore:
    """One kdump cycle that keeps its vmcore; BedError when the bed is not available."""
    if arch == "x86_64":
        from tests.bed.initramfs import get_initramfs
        from tests.bed.kernels import get_kernel
        kernel = get_kernel()
        argv = qemu.loader_argv(qemu.LOADERS["pykexec"], str(kernel.bzimage),
                                str(get_initramfs(kernel)), append=qemu.DEFAULT_APPEND)
        cfg = qemu.CycleConfig(loader_argv=argv, memory_mib=1024, cpus=2,
                               cmdline_extra="crashkernel=256M", pattern_mib=4,
                               run_dir=run_dir, kernel=kernel, timeout=timeout,
                               name="kept-vmcore-x86_64", keep_vmcore=True)
        res = qemu.run_kdump_cycle(cfg)
        elfclass = 64
    elif arch == "i386":
        from pykexec.purgatory.build import purgatory_object
        from tests.bed import i386guest
        purgatory_object(purgatory_spec.I386)       # built on the host: the guest has no gcc
        kernel = i386guest.get_kernel("686")
        root = i386guest.get_root()
        initrd = i386guest.get_initramfs(kernel, root)
        argv = qemu.loader_argv(i386guest.pykexec_argv(), i386guest.guest_path(kernel.vmlinux),
                                i386guest.guest_path(initrd), append=KEEP_APPEND_I386,
                                extra=("--args-linux", "--elf32-core-headers"))
        cfg = qemu.CycleConfig(loader_argv=argv, memory_mib=1024, cpus=2,
                               cmdline_extra="crashkernel=64M@16M", pattern_mib=4,
                               run_dir=run_dir, kernel=kernel, timeout=timeout,
                               name="kept-vmcore-i386", keep_vmcore=True)
        res, _low = i386guest.run_i386_cycle(cfg)
        elfclass = 32
    else:
        raise BedError(f"no kept-vmcore cycle for {arch}")
    stage2 = run_dir / "results" / "stage2.json"
    s2 = json.loads(stage2.read_text()) if stage2.exists() else {}
    return KeptVmcore(arch, res.kept_vmcore, kernel.release, cfg.cpus, elfclass, res,
                      Path(kernel.vmlinux), s2.get("uname_release"),
                      s2.get("pykexec_vmcore_dmesg"))
