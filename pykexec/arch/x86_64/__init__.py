"""x86_64: image formats, crash rules and purgatory plugged into the load pipeline.

`ARCH.plan_load(request, machine)` reads the kernel, asks each image format whether it is
its file (the kernel's kexec_file_ops probe/load split), and lets that format build the
plan. Formats are probed in kexec-tools' order, ELF before bzImage.
"""

from __future__ import annotations

from pykexec.abi.elf import ELFCLASS64, EM_X86_64
from pykexec.arch.interfaces import KernelTextMap
from pykexec.arch.x86 import kerneltext
from pykexec.arch.x86.abi import KEXEC_ARCH_X86_64
from pykexec.arch.x86.family import X86Arch

NAME = "x86_64"


class X86_64(X86Arch):
    def core_class(self, machine, request) -> int:
        # always ELF64: kernel addresses do not fit ELF32 (--elf32-core-headers warns)
        return ELFCLASS64

    def kernel_text(self, machine) -> KernelTextMap:
        kt = kerneltext.kernel_text(machine)
        return KernelTextMap(kt.paddr, kt.vaddr, kt.size)

    def page_offset(self, machine) -> int:
        return kerneltext.page_offset(machine)   # kcore's (KASLR) direct-map base

    # what views and vmcore ask of x86_64 (pykexec.arch.interfaces)
    def dump_reader(self):
        from pykexec.arch.x86.vmcore import X86_64 as reader
        return reader

    def relocations(self):
        from pykexec.arch.x86.relocations import X86_64_RELOCATIONS
        return X86_64_RELOCATIONS


ARCH = X86_64(
    NAME, ("x86_64",), KEXEC_ARCH_X86_64, EM_X86_64, 64,
    ("pykexec.arch.x86_64.elf_x86_64", "pykexec.arch.x86_64.bzimage64"),
    syscall_numbers=(246, 320),
    # A 32-bit process goes through the kernel's compat (i386) table: kexec_load is 283
    # there, its segments are 32-bit, there is no kexec_file_load, and the arch value must
    # still be KEXEC_ARCH_X86_64 (the compat entry refuses KEXEC_ARCH_DEFAULT).
    compat_syscall_numbers=(283, None),
    crash_load="pykexec.arch.x86_64.crashload:CrashLoad",
    normal_load="pykexec.arch.x86_64.normalload:NormalLoad")
