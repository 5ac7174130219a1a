"""ELF e_machine values and their names (elf.h), kept free of construct so that light
paths (`pykexec -v`, the kexec flag names) can use them."""

# the kexec_load arch values are these shifted (abi.kexec)
EM_386 = 3
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_X86_64 = 62
EM_AARCH64 = 183
EM_NAMES = {EM_386: "i386", EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}  # as `uname -m`
EM_DESCRIPTIONS = {EM_386: "i386 (EM_386)", EM_X86_64: "x86_64 (EM_X86_64)",
                   EM_AARCH64: "aarch64 (EM_AARCH64)", EM_ARM: "arm (EM_ARM)",
                   EM_PPC64: "ppc64 (EM_PPC64)", EM_S390: "s390 (EM_S390)"}
