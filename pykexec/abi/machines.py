"""The `uname -m` names of the machines whose kernels carry each ELF e_machine: a table
like elf.h's, so that a machine folder's recorded name can be checked against its
/proc/kcore header below the architectures (which the machine layer must not import).
The first name is the one a message uses."""

from __future__ import annotations

from pykexec.abi.elf import EM_386, EM_X86_64

UNAME_MACHINES = {
    EM_X86_64: ("x86_64",),
    EM_386: ("i386", "i486", "i586", "i686"),
}
