"""The x86_64 kernel's text mapping and direct-map base, found from the machine's
/proc/iomem ("Kernel code"), /proc/kcore program headers and /proc/kallsyms (_stext), as
kexec-tools finds them for the core header's kernel-text PT_LOAD and its RAM PT_LOADs.

Functions of a `Machine` (which reads only the generic files); each result is kept in
the machine's cache, so a load asks kcore and kallsyms once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pykexec.core.ranges import Range, align_down, align_up
from pykexec.arch.x86.abi import START_KERNEL_MAP
from pykexec.machine import EXIT_LOAD_FAILED, Machine, MachineError

X86_64_PAGE_OFFSET = 0xFFFF888000000000  # direct map base without KASLR
X86_64_START_KERNEL_MAP = START_KERNEL_MAP
X86_64_KERNEL_TEXT_SIZE = 512 << 20
KERNEL_VADDR_ALIGN = 1 << 20
PAGE_OFFSET_ALIGN = 1 << 30  # KASLR moves the direct map in PUD (1 GiB) steps


@dataclass(frozen=True)
class KernelText:
    """x86_64 kernel text mapping for the elfcorehdr's kernel-text PT_LOAD.

    `paddr` is the `Kernel code` start from /proc/iomem; `vaddr` and `size` come from the
    kcore PT_LOAD holding `_stext` (vaddr rounded down to 1 MiB, size up to a page);
    `page_offset` is the direct-map base (KASLR aware) used for the RAM PT_LOADs.
    """

    paddr: int
    vaddr: int
    size: int
    page_offset: int
    stext: Optional[int] = None  # _stext from kallsyms, None when hidden or missing


def kcore_page_offset(loads, default: int = X86_64_PAGE_OFFSET) -> int:
    """The lowest kcore PT_LOAD vaddr rounded down to 1 GiB (the KASLR direct-map base).

    Follows kexec-tools literally: a zero candidate is replaced by the next one, and
    `default` stays when the result is zero.
    """
    lowest = 0
    for load in loads:
        v = load.vaddr & ~(PAGE_OFFSET_ALIGN - 1) & ((1 << 64) - 1)
        if lowest == 0 or lowest > v:
            lowest = v
    return lowest if lowest else default


def kernel_text_mapping(loads, stext: Optional[int], page_size: int = 4096):
    """(vaddr, size) of the kernel text mapping among kcore PT_LOADs, or None.

    The PT_LOAD containing `_stext` when known (non-zero), else the first one inside
    [__START_KERNEL_map, +512 MiB); vaddr rounded down to 1 MiB, size to the end of the
    PT_LOAD rounded up to a page.
    """
    def mapping(load):
        vaddr = align_down(load.vaddr, KERNEL_VADDR_ALIGN)
        return vaddr, align_up(load.vaddr + load.memsz - vaddr, page_size)

    if stext:
        for load in loads:
            if load.vaddr <= stext < load.vaddr + load.memsz:
                return mapping(load)
    for load in loads:
        if (load.vaddr >= X86_64_START_KERNEL_MAP
                and load.vaddr + load.memsz <= X86_64_START_KERNEL_MAP + X86_64_KERNEL_TEXT_SIZE):
            return mapping(load)
    return None


def kernel_code(machine: Machine) -> Range:
    """The single "Kernel code" /proc/iomem range (the kernel's physical text)."""
    nodes = machine.iomem.find("Kernel code")
    if len(nodes) != 1:
        raise MachineError(f"Cannot determine kernel physical load addr: "
                           f"{machine.path('proc/iomem')} has {len(nodes)} 'Kernel code' "
                           f"lines, expected exactly one", machine.path("proc/iomem"),
                           exit_status=EXIT_LOAD_FAILED)
    return nodes[0].range


def page_offset(machine: Machine) -> int:
    """x86_64 direct-map base: from kcore (KASLR) when readable, else 0xffff888000000000."""
    return machine.cached("x86_64 page_offset", lambda: kcore_page_offset(machine.kcore_loads))


def kernel_text(machine: Machine) -> KernelText:
    """The x86_64 kernel text mapping (kexec-tools 3.6); MachineError when unknown."""
    return machine.cached("x86_64 kernel_text", lambda: _find_kernel_text(machine))


def _find_kernel_text(machine: Machine) -> KernelText:
    paddr = kernel_code(machine).start
    loads = machine.kcore_loads
    try:
        stext = machine.symbol("_stext")
    except MachineError:
        stext = None  # kexec-tools carries on without kallsyms (the fixed window below)
    found = kernel_text_mapping(loads, stext)
    if found is None:
        raise MachineError(f"Can't find kernel text map area from kcore "
                           f"({machine.path('proc/kcore')})", machine.path("proc/kcore"),
                           exit_status=EXIT_LOAD_FAILED)
    vaddr, size = found
    return KernelText(paddr=paddr, vaddr=vaddr, size=size,
                      page_offset=kcore_page_offset(loads), stext=stext or None)
