"""`pykexec vmcore`: read, explain and save the dump a crashed kernel leaves behind.

One concept a module:
  dump.py        Vmcore: open an ELF vmcore, PT_LOADs, notes, read physical and kernel
                 virtual memory (its docstring is the API)
  vmcoreinfo.py  VmcoreInfo: the VMCOREINFO note with symbol/offset/size/length/number
  notes.py       strict PT_NOTE iteration
  arch.py        the dump reader for a machine, from the architecture registry (register
                 decode, address translation; each architecture's own under pykexec/arch/)
  error.py       VmcoreError: every user-facing problem, one line naming the file
"""

from pykexec.vmcore.dump import DEFAULT_VMCORE, Load, Vmcore  # noqa: F401
from pykexec.vmcore.error import VmcoreError  # noqa: F401
from pykexec.vmcore.vmcoreinfo import VmcoreInfo  # noqa: F401
