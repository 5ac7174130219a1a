"""`pykexec vmcore`: read, explain and save the dump a crashed kernel leaves behind.

One concept a module:
  dump.py        Vmcore: open an ELF vmcore, PT_LOADs, notes, read physical and kernel
                 virtual memory (its docstring is the API)
  vmcoreinfo.py  VmcoreInfo: the VMCOREINFO note with symbol/offset/size/length/number
  notes.py       strict PT_NOTE iteration
  arch.py        the Arch interface and registry (register decode, address translation)
  x86.py         x86_64 and i386
  error.py       VmcoreError: every user-facing problem, one line naming the file
"""

from pykexec.vmcore.dump import DEFAULT_VMCORE, Load, Vmcore  # noqa: F401
from pykexec.vmcore.error import VmcoreError  # noqa: F401
from pykexec.vmcore.vmcoreinfo import VmcoreInfo  # noqa: F401
