"""i386: the 32-bit x86 kernel of the 2006 kdump document, loaded for a crash dump.

What differs from x86_64 is all here: the 32-bit boot protocol entry (startup_32, with
esi = boot_params, from this project's i386 purgatory), the i386 crash-memory rules
(ranges split at the 0x38000000 direct-map limit, highmem without virtual addresses,
ELF32 core headers unless memory above 4 GiB needs ELF64, EM_386, page offset
0xc0000000), and the syscall (kexec_load 283, arch value KEXEC_ARCH_DEFAULT as Debian's
i386 kexec-tools sends it). The boot protocol pieces (setup header, zero page, e820,
setup_data) and the crash segments (backup, elfcorehdr, capture map) are x86's.

Formats, probed in kexec-tools' i386 order: an ELF vmlinux (elf-x86, with --args-linux
or --args-none) before a bzImage.
"""

from __future__ import annotations

import os
from typing import Callable

from pykexec.abi.elf import EM_386
from pykexec.arch.x86 import with_entry_override
from pykexec.arch.x86.inputs import choose_format, read_inputs
from pykexec.machine import Machine
from pykexec.core.plan import Plan
from pykexec.request import Request

NAME = "i386"


def formats():
    from pykexec.arch.i386 import bzimage, elf_x86
    return (elf_x86, bzimage)


def plan_load(request: Request, machine: Machine,
              random_bytes: Callable[[int], bytes] = os.urandom) -> Plan:
    inputs = read_inputs(request, machine, random_bytes)
    plan = choose_format(inputs, formats(), NAME).load(inputs)
    return with_entry_override(plan, request, machine, 32)


# --- What views and vmcore ask of i386 (abi helper; pykexec.arch.interfaces) -------------
name = NAME
elf_machine = EM_386


def plan_decoder():
    from pykexec.arch.x86 import planfacts
    return planfacts


def dump_reader():
    from pykexec.arch.x86.vmcore import I386
    return I386


def image_explainer():
    from pykexec.arch.x86 import explain
    return explain


def relocations():
    from pykexec.arch.x86.relocations import I386_RELOCATIONS
    return I386_RELOCATIONS
