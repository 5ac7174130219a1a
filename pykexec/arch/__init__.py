"""Architectures: each one a module that plugs its image formats, crash-memory rules and
purgatory into the load pipeline, as one `ARCH` object satisfying
`pykexec.arch.interfaces.Arch`. Adding one means adding a module and a line here.

Generic code finds an architecture here by what it has in hand (the machine's `uname -m`,
a plan's arch name, an ELF e_machine) and never compares a name itself. Arch modules are
imported only when asked for, so `kexec -v` and `-h` load none (only the option tables,
registered by module for that reason).
"""

from __future__ import annotations

import importlib
import os
from typing import Dict, Optional, Tuple, Union

from pykexec.errors import LoadError, PykexecError

# `uname -m` names -> the module whose ARCH handles them (or, for tests, the object itself)
MODULES: Dict[str, Union[str, object]] = {}
# The kexec syscall numbers of machines pykexec has no loader for yet: a kexec_file_load
# (the kernel loads the image) or an unload still works there.
_SYSCALLS_ONLY: Dict[str, Tuple[int, Optional[int]]] = {}
# `uname -m` names -> the module whose TABLE holds that Arch's options (its `options`),
# imported without the Arch itself so that `-h` and `-v` load no image format
OPTION_MODULES: Dict[str, str] = {}
# A machine folder that does not say what it is (no snapshot.json) is taken for this one.
DEFAULT_MACHINE = "x86_64"


def register(machine_names: Tuple[str, ...], arch: Union[str, object],
             options: Optional[str] = None) -> None:
    """`arch` (a module path exposing ARCH, or an Arch object) handles these machines;
    `options`, the module path of its option table (None: the Arch's `options`)."""
    for name in machine_names:
        MODULES[name] = arch
        if options is None:
            OPTION_MODULES.pop(name, None)
        else:
            OPTION_MODULES[name] = options


def unregister(machine_names: Tuple[str, ...]) -> None:
    for name in machine_names:
        MODULES.pop(name, None)
        OPTION_MODULES.pop(name, None)


register(("x86_64",), "pykexec.arch.x86_64", options="pykexec.arch.x86.options")
register(("i386", "i486", "i586", "i686"), "pykexec.arch.i386",
         options="pykexec.arch.x86.options")
register(("aarch64",), "pykexec.arch.arm64", options="pykexec.arch.arm64.options")


def _resolve(target):
    return importlib.import_module(target).ARCH if isinstance(target, str) else target


def find_machine(machine_name: str):
    """The Arch for a `uname -m` name, or None."""
    target = MODULES.get(machine_name)
    return None if target is None else _resolve(target)


def arch_for(machine_name: str):
    """The Arch for a `uname -m` name; LoadError (one line) when pykexec has no loader."""
    arch = find_machine(machine_name)
    if arch is None:
        raise LoadError(f"pykexec has no loader for {machine_name} machines "
                        f"(knows: {', '.join(sorted(MODULES))})")
    return arch


def registered():
    """Every registered Arch, once each, in registration order."""
    seen = []
    for target in MODULES.values():
        arch = _resolve(target)
        if all(arch is not other for other in seen):
            seen.append(arch)
    return tuple(seen)


def by_name(name: str):
    """The Arch whose plans say `arch: name`, or None."""
    return next((a for a in registered() if a.name == name), None)


def by_elf_machine(e_machine: int):
    """The Arch whose kernels and core headers carry this e_machine, or None."""
    return next((a for a in registered() if a.elf_machine == e_machine), None)


def machine_arch(machine):
    """The Arch that plans for `machine` (its recorded `uname -m`, else the default)."""
    return arch_for(machine.machine_arch or DEFAULT_MACHINE)


def syscall_numbers(machine_name: str, process_32bit: bool):
    """(kexec_load, kexec_file_load or None) for a process on this running kernel, or None
    when pykexec does not know the machine."""
    arch = find_machine(machine_name)
    if arch is None:
        return _SYSCALLS_ONLY.get(machine_name)
    if process_32bit and arch.compat_syscall_numbers is not None:
        return arch.compat_syscall_numbers
    return arch.syscall_numbers


def _arch_or_default(machine):
    """The machine's Arch where pykexec knows it, else the default one: what decides the
    command line and the option checks before planning (planning itself refuses an unknown
    or contradictory machine, later, where a kexec_file_load may still go first)."""
    try:
        arch = find_machine(machine.machine_arch or DEFAULT_MACHINE)
    except PykexecError:
        arch = None
    return arch if arch is not None else arch_for(DEFAULT_MACHINE)


def user_cmdline(request, machine) -> str:
    """The new kernel's command line as the user asked for it (--reuse-cmdline, --append)."""
    return _arch_or_default(machine).user_cmdline(request, machine)


def machine_core_header(machine, machine_name: str, backup_start, elfclass=None):
    """The elfcorehdr a crash load by the named architecture would pass on `machine`
    (`elfclass` forces the ELF class as --elf32/--elf64-core-headers do); for views and
    tests. ElfCoreError for an architecture pykexec has no crash rules for."""
    from pykexec.abi.elf import ELFCLASS32, ELFCLASS64
    from pykexec.core.elfcore import ElfCoreError, core_header_for
    arch = find_machine(machine_name)
    if arch is None:
        raise ElfCoreError(f"unsupported crashdump architecture: {machine_name}")
    forced = {ELFCLASS32: ["--elf32-core-headers"], ELFCLASS64: ["--elf64-core-headers"]}
    info = arch.crash_elf_info(machine, parse_args(forced.get(elfclass, [])))
    return core_header_for(info, backup_start)


def option_refusal(request, machine):
    """Why the machine's architecture refuses this load's arch options (one line), or None."""
    return _arch_or_default(machine).option_refusal(request)


def plan_load(request, machine, **kwargs):
    """Build the plan for `request` on `machine` with that machine's architecture."""
    return machine_arch(machine).plan_load(request, machine, **kwargs)


def optional_hook(arch, name: str):
    """What an architecture's optional view hook gives (plan_decoder, dump_reader,
    image_explainer, relocations), or None when there is no architecture or no such hook:
    an architecture needs none of them to load, and views then show generic facts."""
    hook = getattr(arch, name, None) if arch is not None else None
    return hook() if hook is not None else None


def image_explainers():
    """Each architecture's explainer of its kernel image formats (inspect), once each."""
    found = (optional_hook(a, "image_explainer") for a in registered())
    return tuple(dict.fromkeys(e for e in found if e is not None))


# --- the command line: the generic options and every registered architecture's ------------
# kexec-tools takes the options of the one architecture it was built for. pykexec plans for
# any registered one and reads the machine only after argv, so it accepts the union of
# their tables (x86_64 and i386 share x86's). An option of another architecture than the
# machine's is for that machine's Arch to refuse when it plans (`option_refusal`, raising
# request.ForeignOptionError: kexec's "unrecognized option", exit 1); an option several
# tables declare keeps its argument as given, for the machine's Arch to read.

def _options_of(machine_name: str):
    module = OPTION_MODULES.get(machine_name)
    return (importlib.import_module(module).TABLE if module
            else _resolve(MODULES[machine_name]).options)


def option_tables():
    """The registered architectures' option tables, once each, in registration order."""
    tables = []
    for machine_name in MODULES:
        table = _options_of(machine_name)
        if all(table is not other for other in tables):
            tables.append(table)
    return tuple(tables)


def option_table():
    """Every option pykexec takes, in -h and man page order (pykexec.request.Option)."""
    from pykexec.request import compose
    return compose(option_tables())


def parse_args(argv):
    """kexec's argv into a Request, with the registered architectures' options."""
    from pykexec import request
    return request.parse_args(argv, option_tables())


def usage_text(program: str = "kexec") -> str:
    """`-h`'s text."""
    from pykexec.request import usage_text as text
    return text(program, option_table())


def reuse_initrd_refusal() -> str:
    """Why --reuseinitrd dies: kexec-tools' arch hook of the machine it runs on (the
    default architecture's where pykexec has no loader for it)."""
    machine_name = os.uname().machine
    if machine_name not in MODULES:
        machine_name = DEFAULT_MACHINE
    return _options_of(machine_name).reuse_initrd_refusal
