"""Real vmcores captured once by the QEMU bed and kept in the cache (never in git), for
the benchmark (scripts/bench: `vmcore save` on 1 GiB and 4 GiB dumps). The e2e tests use
tests/bed/keep.py instead: a fresh dump per session, deleted afterwards.

`get_vmcore(name)` returns a `KeptVmcore` (the copied /proc/vmcore, the stage-1 pattern
record, stage 2's JSON) for one of the `PRESETS`, running one kdump cycle with
`keep_vmcore` the first time (minutes under TCG; the 4 GiB one also costs 4 GiB of disk).
Folder: ~/.cache/pykexec-bed/vmcores/<preset>-<kernel release>/, complete once READY exists.

    python -m tests.bed.vmcores x86_64-1g      # capture (or find) one, print its folder
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

from pykexec.arch.x86 import purgatory_spec
from tests.bed.kernels import BedError, cache_lock, cache_root


@dataclass(frozen=True)
class KeptVmcore:
    folder: Path

    @property
    def vmcore(self) -> Path:
        return self.folder / "vmcore"

    @property
    def pattern(self) -> Path:
        return self.folder / "pattern.txt"

    @property
    def stage2(self) -> dict:
        return json.loads((self.folder / "stage2.json").read_text())


def _x86_64(memory_mib: int) -> Callable:
    def capture(run_dir: Path):
        from tests.bed.kernels import get_kernel
        from tests.bed.initramfs import get_initramfs
        from tests.bed.qemu import LOADERS, CycleConfig, loader_argv, run_kdump_cycle
        from pykexec.purgatory.build import purgatory_object
        purgatory_object(purgatory_spec.X86_64)      # built on the host: the guest's view is read-only
        kernel = get_kernel()
        argv = loader_argv(LOADERS["pykexec"], str(kernel.bzimage), str(get_initramfs(kernel)))
        cfg = CycleConfig(loader_argv=argv, memory_mib=memory_mib, cpus=2,
                          cmdline_extra="crashkernel=256M", pattern_mib=64, keep_vmcore=True,
                          name=f"keep-x86_64-{memory_mib}m", run_dir=run_dir, kernel=kernel,
                          timeout=300 + memory_mib // 4)
        return kernel.release, run_kdump_cycle(cfg)
    return capture


def _i386(memory_mib: int) -> Callable:
    def capture(run_dir: Path):
        from tests.bed import i386guest
        from tests.bed.qemu import CycleConfig, loader_argv
        from pykexec.purgatory.build import purgatory_object
        purgatory_object(purgatory_spec.I386)        # built on the host: the guest's view is read-only
        kernel = i386guest.get_kernel("686")
        initrd = i386guest.get_initramfs(kernel, i386guest.get_root())
        argv = loader_argv(i386guest.pykexec_argv(), i386guest.guest_path(kernel.vmlinux),
                           i386guest.guest_path(initrd),
                           append="console=ttyS0 init 1 irqpoll maxcpus=1 reset_devices panic=1",
                           extra=("--args-linux", "--elf32-core-headers"))
        cfg = CycleConfig(loader_argv=argv, memory_mib=memory_mib, cpus=2,
                          cmdline_extra="crashkernel=64M@16M", pattern_mib=32, keep_vmcore=True,
                          name=f"keep-i386-{memory_mib}m", run_dir=run_dir, kernel=kernel,
                          timeout=300 + memory_mib // 4)
        res, _low = i386guest.run_i386_cycle(cfg)
        return kernel.release, res
    return capture


# name -> capture(run_dir) -> (kernel release, CycleResult)
PRESETS: Dict[str, Callable] = {
    "x86_64-1g": _x86_64(1024),      # ELF64, the 1 GiB benchmark dump
    "x86_64-4g": _x86_64(4096),      # ELF64, the 4 GiB benchmark dump
    "i386-1g": _i386(1024),          # ELF32 (--elf32-core-headers), the 2006 document's form
}


def vmcores_root() -> Path:
    return cache_root() / "vmcores"


def find_vmcore(name: str):
    """The kept vmcore of preset `name` if one is complete in the cache, else None."""
    ready = sorted(vmcores_root().glob(f"{name}-*/READY"))
    return KeptVmcore(ready[-1].parent) if ready else None


def get_vmcore(name: str) -> KeptVmcore:
    if name not in PRESETS:
        raise BedError(f"no vmcore preset {name!r} (have {', '.join(PRESETS)})")
    found = find_vmcore(name)
    if found:
        return found
    with cache_lock(f"vmcore-{name}"):
        found = find_vmcore(name)
        if found:
            return found
        work = vmcores_root() / f"{name}.capturing"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        release, res = PRESETS[name](work / "run")
        results = res.run_dir / "results"
        if not (res.captured and (results / "vmcore").is_file()):
            raise BedError(f"capturing vmcore {name} failed: {res.describe()}")
        folder = vmcores_root() / f"{name}-{release}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for item in ("vmcore", "pattern.txt", "stage2.json"):
            shutil.move(str(results / item), str(folder / item))
        shutil.copy(res.serial_log, folder / "serial.log")
        (folder / "READY").write_text(release + "\n")
        shutil.rmtree(work)
        return KeptVmcore(folder)


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["x86_64-1g"]:
        print(get_vmcore(arg).folder)
