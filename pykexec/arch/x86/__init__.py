"""What x86_64 and i386 share: the boot protocol (setup header, zero page, e820,
setup_data), the crash rules, and the command line a loader builds."""

from __future__ import annotations

from pykexec.cmdline import compose, reused_cmdline


def cmdline_for(request, machine) -> str:
    """The user's part of the new command line: --reuse-cmdline's text, then --append's."""
    reuse = reused_cmdline(machine.cmdline, request.crash) if request.reuse_cmdline else None
    return compose(reuse, request.append)
