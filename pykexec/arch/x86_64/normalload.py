"""x86_64's normal load (-l, -f): the shared x86 steps with the 64-bit purgatory, anywhere
in RAM."""

from __future__ import annotations

from pykexec.arch.x86.normalload import X86NormalLoad
from pykexec.arch.x86.purgatory_setup import X86_64


class NormalLoad(X86NormalLoad):
    purgatory_kind = X86_64
