"""i386: the 32-bit x86 kernel of the 2006 kdump document, loaded for a crash dump or for a
normal kexec (-l, -e).

What differs from x86_64 is all here: the 32-bit boot protocol entry (startup_32, with
esi = boot_params, from this project's i386 purgatory), the i386 crash-memory rules
(ranges split at the 0x38000000 direct-map limit, highmem without virtual addresses,
ELF32 core headers unless memory above 4 GiB needs ELF64, EM_386, page offset
0xc0000000), and the syscall (kexec_load 283, arch value KEXEC_ARCH_DEFAULT as Debian's
i386 kexec-tools sends it). The boot protocol pieces (setup header, zero page, e820,
setup_data) and the crash segments (backup, elfcorehdr, capture map) are x86's.

Formats, probed in kexec-tools' i386 order: an ELF vmlinux (elf-x86, with --args-linux
or --args-none) before a bzImage.
"""

from __future__ import annotations

from pykexec.abi.elf import EM_386
from pykexec.abi.kexec import KEXEC_ARCH_DEFAULT
from pykexec.arch.x86.crashmem import I386_PAGE_OFFSET, LOWMEM_LIMIT_I386
from pykexec.arch.x86.family import X86Arch
from pykexec.arch.x86.options import x86_options

NAME = "i386"
# Debian's i386 kexec sends KEXEC_ARCH_DEFAULT, which the kernel takes as its own arch.


class I386(X86Arch):
    lowmem_limit = LOWMEM_LIMIT_I386   # highmem above it has no virtual address

    def core_class(self, machine, request) -> int:
        """pykexec's rule: ELF64 only for RAM above 4 GiB, or as forced (crashload)."""
        from pykexec.arch.i386.crashload import core_header_class
        return core_header_class(machine, x86_options(request).core_header_class)

    def page_offset(self, machine) -> int:
        return I386_PAGE_OFFSET

    # what views and vmcore ask of i386 (pykexec.arch.interfaces)
    def dump_reader(self):
        from pykexec.arch.x86.vmcore import I386 as reader
        return reader

    def relocations(self):
        from pykexec.arch.x86.relocations import I386_RELOCATIONS
        return I386_RELOCATIONS


ARCH = I386(NAME, ("i386", "i486", "i586", "i686"), KEXEC_ARCH_DEFAULT, EM_386, 32,
            ("pykexec.arch.i386.elf_x86", "pykexec.arch.i386.bzimage"),
            syscall_numbers=(283, None), crash_load="pykexec.arch.i386.crashload:CrashLoad",
            normal_load="pykexec.arch.i386.normalload:NormalLoad")
