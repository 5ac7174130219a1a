"""x86_64: image formats, crash rules and purgatory plugged into the load pipeline.

`plan_load(request, machine)` reads the kernel, asks each image format whether it is
its file (the kernel's kexec_file_ops probe/load split), and lets that format build the
plan. Formats are probed in kexec-tools' order, ELF before bzImage.
"""

from __future__ import annotations

import os
from typing import Callable

from pykexec.abi.elf import EM_X86_64
from pykexec.arch.x86 import with_entry_override
from pykexec.arch.x86.inputs import choose_format, read_inputs
from pykexec.machine import Machine
from pykexec.core.plan import Plan
from pykexec.request import Request

NAME = "x86_64"


def formats():
    from pykexec.arch.x86_64 import bzimage64, elf_x86_64
    return (elf_x86_64, bzimage64)


def plan_load(request: Request, machine: Machine,
              random_bytes: Callable[[int], bytes] = os.urandom) -> Plan:
    inputs = read_inputs(request, machine, random_bytes)
    plan = choose_format(inputs, formats(), NAME).load(inputs)
    return with_entry_override(plan, request, machine, 64)


# --- What views and vmcore ask of x86_64 (abi helper; pykexec.arch.interfaces) -----------
name = NAME
elf_machine = EM_X86_64


def plan_decoder():
    from pykexec.arch.x86 import planfacts
    return planfacts


def dump_reader():
    from pykexec.arch.x86.vmcore import X86_64
    return X86_64


def image_explainer():
    from pykexec.arch.x86 import explain
    return explain


def relocations():
    from pykexec.arch.x86.relocations import X86_64_RELOCATIONS
    return X86_64_RELOCATIONS
