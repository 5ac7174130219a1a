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
# decodes what is generic and leaves the rest. (Named as on the seam branch, whose Arch
# objects replace these modules: by_name/by_elf_machine/registered are the same there.)

def registered():
    """Every architecture, once each."""
    return tuple(importlib.import_module(m) for m in dict.fromkeys(MODULES.values()))


def by_name(name: str):
    """The architecture whose plans say `arch: name`, or None."""
    return next((a for a in registered() if a.name == name), None)


def by_elf_machine(e_machine: int):
    """The architecture whose kernels and core headers carry this e_machine, or None."""
    return next((a for a in registered() if a.elf_machine == e_machine), None)


def image_explainers():
    """Each architecture's explainer of its kernel image formats (inspect), once each."""
    return tuple(dict.fromkeys(a.image_explainer() for a in registered()
                               if hasattr(a, "image_explainer")))
