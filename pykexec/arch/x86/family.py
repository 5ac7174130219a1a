"""The x86 architectures as `pykexec.arch.interfaces.Arch` objects.

x86_64 and i386 share the plan pipeline (read the inputs once, probe the formats in
order, let the chosen one lay the load out, apply --entry) and the command line a loader
builds; they differ in the values given to `X86Arch` and in `crash_elf_info`, which each
architecture's module overrides.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import replace
from typing import Callable, Optional, Tuple

from pykexec.arch.x86 import crashfacts
from pykexec.arch.interfaces import CrashElfInfo, KernelTextMap
from pykexec.arch.x86.options import NAMES as X86_NAMES, REFUSED as X86_REFUSED
from pykexec.arch.x86.options import TABLE as X86_OPTIONS, x86_options
from pykexec.request import ForeignOptionError


class X86Arch:
    """One x86 architecture; the values are its facts, the methods the shared pipeline."""

    def __init__(self, name: str, machine_names: Tuple[str, ...], kexec_arch: int,
                 elf_machine: int, address_bits: int, format_modules: Tuple[str, ...],
                 syscall_numbers: Tuple[int, Optional[int]],
                 compat_syscall_numbers: Optional[Tuple[int, Optional[int]]] = None,
                 crash_load: str = "", normal_load: Optional[str] = None,
                 file_load_modules: Tuple[str, ...] = ("pykexec.arch.x86_64.bzimage64",)):
        self.name = name
        self.options = X86_OPTIONS   # the x86 arch and loader options
        self.machine_names = machine_names
        self.kexec_arch = kexec_arch
        self.elf_machine = elf_machine
        self.address_bits = address_bits
        self.syscall_numbers = syscall_numbers
        self.compat_syscall_numbers = compat_syscall_numbers
        self._format_modules = format_modules
        # "module:Class" of the load steps (pykexec.arch.x86.load) for -p and for the
        # other loads (None: crash loads only; the crash steps refuse the others)
        self.crash_load = crash_load
        self.normal_load = normal_load
        # The formats a running x86 kernel's kexec_file_load takes (its kexec_file_ops):
        # a bzImage with a 64-bit entry. (A 32-bit kernel has no kexec_file_load at all;
        # the call then fails with ENOSYS before any file is looked at.)
        self._file_load_modules = file_load_modules

    def __repr__(self) -> str:
        return f"<Arch {self.name}>"

    def formats(self):
        """Image formats in probe order (imported on first use)."""
        return tuple(importlib.import_module(m) for m in self._format_modules)

    def plan_load(self, request, machine, random_bytes: Callable[[int], bytes] = os.urandom):
        from pykexec.arch.x86 import with_entry_override
        from pykexec.arch.x86.inputs import choose_format, read_inputs
        inputs = read_inputs(request, machine, self, self.user_cmdline(request, machine),
                             random_bytes)
        plan = choose_format(inputs, self.formats(), self.name).load(inputs)
        if inputs.uki is not None:
            from pykexec.core.uki import uki_note
            plan = replace(plan, notes={**plan.notes, "uki": uki_note(inputs)})
        return with_entry_override(plan, request, machine, self.address_bits)

    def user_cmdline(self, request, machine) -> str:
        from pykexec.core.cmdline import user_cmdline
        return user_cmdline(request, machine)

    def option_refusal(self, request) -> Optional[str]:
        for name, _ in request.arch_options:
            if name in X86_REFUSED:
                return X86_REFUSED[name]
            if name not in X86_NAMES:
                raise ForeignOptionError(name, "x86")
        options = x86_options(request)
        if (options.real_mode or options.entry_32bit) and request.syscall_mode != "load":
            # kexec-tools fails these in file mode without falling back; pykexec's kexec_load
            # loaders refuse them too (purgatory has only the 64-bit entry)
            return ("--real-mode / --entry-32bit: kexec_file_load has no 16-bit or 32-bit "
                    "entry, and pykexec's purgatory only the 64-bit entry")
        if options.pass_memmap_cmdline and request.crash:
            return ("--pass-memmap-cmdline is not supported by pykexec: the capture kernel "
                    "gets its memory map through boot_params e820")
        return None

    def file_load_refusal(self, kernel: bytes) -> Optional[str]:
        whys = []
        for fmt in (importlib.import_module(m) for m in self._file_load_modules):
            why = fmt.probe(kernel)
            if why is None:
                return None
            whys.append(why)
        return f"the kernel loads only a bzImage with a 64-bit entry ({'; '.join(whys)})"

    # What the core header needs, from the architecture's module: the ELF class for this
    # request, the kernel-text PT_LOAD (or None), the direct map's base and end.
    lowmem_limit: Optional[int] = None

    def core_class(self, machine, request) -> int:  # pragma: no cover - every arch has one
        raise NotImplementedError

    def kernel_text(self, machine) -> Optional[KernelTextMap]:
        return None

    def page_offset(self, machine) -> int:  # pragma: no cover - every arch has one
        raise NotImplementedError

    # what views ask of an x86 architecture (pykexec.arch.interfaces)
    # inspect's note on a vmlinux entered at a physical address (the 64-bit boot entry)
    vmlinux_entry_note = "startup_64 for an x86_64 vmlinux"

    def plan_decoder(self):
        from pykexec.arch.x86 import planfacts
        return planfacts

    def image_explainer(self):
        from pykexec.arch.x86 import explain
        return explain

    def crash_elf_info(self, machine, request) -> CrashElfInfo:
        kernel_text = self.kernel_text(machine)
        vmcoreinfo = machine.vmcoreinfo
        return CrashElfInfo(
            elf_class=self.core_class(machine, request), elf_machine=self.elf_machine,
            page_offset=self.page_offset(machine), kernel_text=kernel_text,
            lowmem_limit=self.lowmem_limit, nr_cpus=machine.nr_cpus_conf,
            cpu_notes=tuple((n.cpu, n.paddr, n.size) for n in crashfacts.cpu_notes(machine, self.name)),
            vmcoreinfo=(vmcoreinfo.paddr, vmcoreinfo.size) if vmcoreinfo else None,
            crash_ranges=crashfacts.crash_memory_ranges(machine, self.name),
            backup=crashfacts.backup_area(machine, self.name))
