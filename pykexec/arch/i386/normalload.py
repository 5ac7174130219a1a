"""i386's normal load (-l, -f): the shared x86 steps with the 32-bit purgatory.

A 32-bit kernel is entered with paging off, so everything stays below 4 GiB, and
purgatory below 2 GiB as kexec-tools' i386 loader places it; the bzImage format keeps the
kernel and initrd within the direct map and the header's initrd_addr_max.
"""

from __future__ import annotations

from pykexec.arch.i386.crashload import FOUR_GIB, PURGATORY_MAX_ADDR
from pykexec.arch.x86.normalload import X86NormalLoad
from pykexec.arch.x86.purgatory_setup import I386


class NormalLoad(X86NormalLoad):
    purgatory_kind = I386
    address_limit = FOUR_GIB
    purgatory_high = PURGATORY_MAX_ADDR + 1
