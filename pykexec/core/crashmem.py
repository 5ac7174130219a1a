"""Moved to pykexec.arch.x86.crashmem (x86 knowledge lives under arch/). Kept only until
pykexec.machine stops importing it here (the machine split moves those callers)."""

from pykexec.arch.x86.crashmem import *  # noqa: F401,F403
from pykexec.arch.x86.crashmem import (I386_PAGE_OFFSET, LOWMEM_LIMIT_I386,  # noqa: F401
                                       lowmem_limit_for)
