"""Architectures: each one a module that plugs its image formats, crash-memory rules and
purgatory into the load pipeline. Adding one means adding a module and a line here."""

from __future__ import annotations

import importlib

from pykexec.errors import LoadError

MODULES = {
    "x86_64": "pykexec.arch.x86_64",
    **dict.fromkeys(("i386", "i486", "i586", "i686"), "pykexec.arch.i386"),
}


def arch_module(machine_arch: str):
    name = MODULES.get(machine_arch)
    if name is None:
        raise LoadError(f"pykexec has no loader for {machine_arch} machines "
                        f"(knows: {', '.join(sorted(MODULES))})")
    return importlib.import_module(name)


def plan_load(request, machine, **kwargs):
    """Build the plan for `request` on `machine` with that machine's architecture."""
    return arch_module(machine.machine_arch or "x86_64").plan_load(request, machine, **kwargs)
