"""What the x86 relocation types in the purgatory objects mean (pykexec.purgatory.elfrel
applies them). Each type: (width in bytes, pc-relative, range rule)."""

from __future__ import annotations

from pykexec.purgatory.elfrel import relocation_set

X86_64_RELOCATIONS = relocation_set(("EM_X86_64",), 64, "ENUM_RELOC_TYPE_x64", {
    "R_X86_64_NONE": (0, False, "wrap"),
    "R_X86_64_64": (8, False, "wrap"),
    # ld reports "relocation truncated to fit" for these; so do we.
    "R_X86_64_PC32": (4, True, "signed"),
    "R_X86_64_PLT32": (4, True, "signed"),  # no PLT in a static image: same as PC32
    "R_X86_64_32": (4, False, "unsigned"),
    "R_X86_64_32S": (4, False, "signed"),
})

I386_RELOCATIONS = relocation_set(("EM_386", "EM_486"), 32, "ENUM_RELOC_TYPE_i386", {
    "R_386_NONE": (0, False, "wrap"),
    # 32-bit address space: arithmetic is modulo 2**32, as on the CPU.
    "R_386_32": (4, False, "wrap"),
    "R_386_PC32": (4, True, "wrap"),
    "R_386_PLT32": (4, True, "wrap"),
})
