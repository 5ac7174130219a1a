"""ELF e_machine values and the machines that run them: a table like elf.h's, kept free of
construct so that light paths (`pykexec -v`, the kexec flag names) can use it, and below the
architectures so that the machine layer can tell a machine folder's architecture from its
/proc/kcore header or kallsyms addresses, and check a recorded `uname -m` against them. A new
architecture adds its row here too."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

# the kexec_load arch values are these shifted (abi.kexec)
EM_386 = 3
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_X86_64 = 62
EM_AARCH64 = 183
EM_NAMES = {EM_386: "i386", EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}  # as `uname -m`
EM_DESCRIPTIONS = {EM_386: "i386 (EM_386)", EM_X86_64: "x86_64 (EM_X86_64)",
                   EM_AARCH64: "aarch64 (EM_AARCH64)", EM_ARM: "arm (EM_ARM)",
                   EM_PPC64: "ppc64 (EM_PPC64)", EM_S390: "s390 (EM_S390)"}


class MachineNames(NamedTuple):
    """The `uname -m` names of one kernel ELF machine."""

    family: str               # the name a message gives the architecture
    uname: str                # what such a kernel's `uname -m` says (Debian's build)
    names: Tuple[str, ...]    # every `uname -m` of the family
    address_digits: int       # hex digits of a /proc/kallsyms address (pointer width)


ELF_MACHINE_NAMES = {
    EM_X86_64: MachineNames("x86_64", "x86_64", ("x86_64",), 16),
    EM_386: MachineNames("i386", "i686", ("i386", "i486", "i586", "i686"), 8),
}


def family_of(uname: str) -> str:
    """The family name of a `uname -m` (the names of one kernel machine are one architecture
    for a loader); a name the table does not know is its own family."""
    return next((m.family for m in ELF_MACHINE_NAMES.values() if uname in m.names), uname)


def uname_by_address_digits(digits: int) -> Optional[str]:
    """The `uname -m` of the first kernel machine whose addresses have `digits` hex digits."""
    return next((m.uname for m in ELF_MACHINE_NAMES.values() if m.address_digits == digits),
                None)
