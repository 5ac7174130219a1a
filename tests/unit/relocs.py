"""The relocation sets the x86 purgatories use, for tests that load objects directly."""

from pykexec.arch.x86.relocations import I386_RELOCATIONS, X86_64_RELOCATIONS

X86_RELOCATIONS = (X86_64_RELOCATIONS, I386_RELOCATIONS)

from pykexec.arch.x86.purgatory_spec import I386, X86_64  # noqa: E402

SPECS = {"x86_64": X86_64, "i386": I386}
