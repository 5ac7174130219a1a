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


# --- Finding an architecture by what a file says (abi helper: views and vmcore) ----------
# A plan names its architecture; a core file or kernel states its ELF machine. Both lookups
# answer None for an architecture pykexec has no module for, so a reader of foreign files
# decodes what is generic and leaves the rest.

def arch_named(name: str):
    """The architecture module a plan's `arch` names, or None."""
    module = MODULES.get(name)
    return importlib.import_module(module) if module else None


def arch_for_elf_machine(e_machine: int):
    """The architecture module whose kernels carry `e_machine`, or None."""
    for module in dict.fromkeys(MODULES.values()):
        arch = importlib.import_module(module)
        if getattr(arch, "ELF_MACHINE", None) == e_machine:
            return arch
    return None


def image_explainers():
    """Each architecture's explainer of its kernel image formats (inspect), once each."""
    modules = (importlib.import_module(m) for m in dict.fromkeys(MODULES.values()))
    return tuple(dict.fromkeys(m.image_explainer() for m in modules
                               if hasattr(m, "image_explainer")))
