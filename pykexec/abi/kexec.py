"""The kexec syscalls' generic ABI (include/uapi/linux/kexec.h, linux/reboot.h), declared once.

Flags of kexec_load and kexec_file_load, the arch field of kexec_load's flags, and the
reboot magic that boots a loaded kernel. An architecture's own arch value is declared by
that architecture (`kexec_arch_value(its EM_*)`); the name table below only decodes the
values a recorded plan may carry, as kexec.h lists them.
"""

from __future__ import annotations

from typing import List

from pykexec.abi.machines import EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_S390, EM_X86_64

# kexec_load flags
KEXEC_ON_CRASH = 0x1
KEXEC_PRESERVE_CONTEXT = 0x2
KEXEC_UPDATE_ELFCOREHDR = 0x4       # crash hotplug, as x86 kernels (6.5+) test it
KEXEC_CRASH_HOTPLUG_SUPPORT = 0x8   # crash hotplug, the generic bit (6.10+, other arches)
CRASH_HOTPLUG_FLAGS = KEXEC_UPDATE_ELFCOREHDR | KEXEC_CRASH_HOTPLUG_SUPPORT
KEXEC_FLAG_NAMES = {KEXEC_ON_CRASH: "KEXEC_ON_CRASH",
                    KEXEC_PRESERVE_CONTEXT: "KEXEC_PRESERVE_CONTEXT",
                    KEXEC_UPDATE_ELFCOREHDR: "KEXEC_UPDATE_ELFCOREHDR",
                    KEXEC_CRASH_HOTPLUG_SUPPORT: "KEXEC_CRASH_HOTPLUG_SUPPORT"}

# kexec_load's arch field: the high 16 bits, an ELF e_machine value (0: the kernel's own)
KEXEC_ARCH_MASK = 0xFFFF0000
KEXEC_ARCH_SHIFT = 16
KEXEC_ARCH_DEFAULT = 0
KEXEC_ARCH_NAMES = {0: "KEXEC_ARCH_DEFAULT", EM_386: "KEXEC_ARCH_386",
                    EM_X86_64: "KEXEC_ARCH_X86_64", EM_AARCH64: "KEXEC_ARCH_AARCH64",
                    EM_ARM: "KEXEC_ARCH_ARM", EM_PPC64: "KEXEC_ARCH_PPC64",
                    EM_S390: "KEXEC_ARCH_S390"}

# kexec_file_load flags
KEXEC_FILE_UNLOAD = 0x1
KEXEC_FILE_ON_CRASH = 0x2
KEXEC_FILE_NO_INITRAMFS = 0x4
KEXEC_FILE_DEBUG = 0x8
KEXEC_FILE_NO_CMA = 0x10
KEXEC_FILE_FORCE_DTB = 0x20
# the bits a plan's report names (NO_CMA and FORCE_DTB are shown as a number, as before)
KEXEC_FILE_FLAG_NAMES = {KEXEC_FILE_UNLOAD: "KEXEC_FILE_UNLOAD",
                         KEXEC_FILE_ON_CRASH: "KEXEC_FILE_ON_CRASH",
                         KEXEC_FILE_NO_INITRAMFS: "KEXEC_FILE_NO_INITRAMFS",
                         KEXEC_FILE_DEBUG: "KEXEC_FILE_DEBUG"}

# reboot(2): the command that jumps into the loaded kernel
LINUX_REBOOT_CMD_KEXEC = 0x45584543


def kexec_arch_value(e_machine: int) -> int:
    """kexec_load's arch bits for an architecture whose kernels have `e_machine`."""
    return e_machine << KEXEC_ARCH_SHIFT


def decode_flags(flags: int, file_load: bool) -> List[str]:
    """The names of `flags` (kexec_load: KEXEC_* then the arch; file load: KEXEC_FILE_*),
    unknown bits last as one hex number."""
    table = KEXEC_FILE_FLAG_NAMES if file_load else KEXEC_FLAG_NAMES
    names = [name for bit, name in table.items() if flags & bit]
    rest = flags & ~sum(table)
    if not file_load:
        arch = (flags & KEXEC_ARCH_MASK) >> KEXEC_ARCH_SHIFT
        names.append(KEXEC_ARCH_NAMES.get(arch, f"KEXEC_ARCH({arch})"))
        rest &= ~KEXEC_ARCH_MASK
    if rest:
        names.append(f"{rest:#x}")
    return names
