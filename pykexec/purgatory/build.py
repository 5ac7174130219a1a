"""The purgatory: this project's own freestanding code run between the kernels.

The sources live in ``arch/<arch>/purgatory/`` of the source tree and are compiled
with gcc into one relocatable object (``ld -r``) when the package is built
(``setup.py`` calls :func:`build_purgatory`), which installs it as
``pykexec/_purgatory/<arch>.o``.  :func:`purgatory_object` returns those bytes; in a
source checkout it builds (or rebuilds, when a source is newer) the object on demand.

This module must import nothing outside the standard library: ``setup.py`` loads it
by path before pykexec (or any dependency) is installed.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

from pykexec.errors import PykexecError

__all__ = [
    "ARCHES",
    "PurgatoryBuildError",
    "PurgatorySpec",
    "build_purgatory",
    "installed_path",
    "purgatory_object",
    "source_dir",
]

# Compiler flags for the x86_64 purgatory, and why.  The code runs with no OS, no
# libc, an identity map at an arbitrary physical address (possibly above 4 GiB) and
# a small stack of its own.
X86_64_CFLAGS: Tuple[str, ...] = (
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    # No hosted environment: no libc, no assumptions about library functions.
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    # Absolute code: no GOT/PLT; Debian's gcc would otherwise build PIE code with
    # GOTPCREL relocations the loader does not (and should not) implement.
    "-fno-PIC",
    "-fno-PIE",
    # The canary lives at %fs:0x28, which does not exist here.
    "-fno-stack-protector",
    # Symbol addresses may be anywhere in 64-bit space: no R_X86_64_32/32S.
    "-mcmodel=large",
    # A target for the baseline ISA, never the build host's.
    "-march=x86-64",
    "-mtune=generic",
    # No red zone below rsp: nothing may rely on memory under the stack pointer.
    "-mno-red-zone",
    # Only general-purpose registers: the FPU/SIMD state belongs to nobody here
    # (and CR0/CR4 may not even allow it).
    "-mno-mmx",
    "-mno-sse",
    "-mno-sse2",
    "-mno-avx",
    "-mgeneral-regs-only",
    "-Os",
    # No .eh_frame (and its relocations): nothing unwinds.
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    # Zero-initialised globals go to .data so the loader can preset them; a
    # variable in .bss (SHT_NOBITS) is zero-filled by the kernel instead.
    "-fno-zero-initialized-in-bss",
    # No SHN_COMMON symbols (the loader refuses them).
    "-fno-common",
    # Strings in plain .rodata, not SHF_MERGE sections a linker may shrink, so the
    # loaded image is exactly the object's bytes.
    "-fno-merge-constants",
    # Do not turn the copy/fill loops of string.c back into calls to themselves.
    "-fno-tree-loop-distribute-patterns",
    # Physical address 0 is valid memory (the backup source starts there).
    "-fno-delete-null-pointer-checks",
    # No CET notes or endbr64 (Ubuntu's gcc enables -fcf-protection by default).
    "-fcf-protection=none",
    "-fno-ident",
)


# The i386 purgatory: the same freestanding rules for 32-bit code.  It runs in flat
# protected mode with paging off, below 4 GiB, so plain absolute addressing is right.
I386_CFLAGS: Tuple[str, ...] = (
    "-m32",
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    "-fno-PIC",
    "-fno-PIE",
    "-fno-stack-protector",
    # Debian's 32-bit kernels need a 686 anyway; no later ISA.
    "-march=i686",
    "-mtune=generic",
    "-mno-mmx",
    "-mno-sse",
    "-mno-sse2",
    "-mgeneral-regs-only",
    "-Os",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-zero-initialized-in-bss",
    "-fno-common",
    "-fno-merge-constants",
    "-fno-tree-loop-distribute-patterns",
    "-fno-delete-null-pointer-checks",
    "-fcf-protection=none",
    "-fno-ident",
)


# The C core both x86 purgatories share (checks, backup copy, UART, SHA-256), compiled
# per architecture; each architecture adds its entry code and an "arch.h".
X86_SHARED_SOURCES = ("../../x86/purgatory/purgatory.c", "../../x86/purgatory/sha256.c",
                      "../../x86/purgatory/serial.c", "../../x86/purgatory/string.c")


@dataclass(frozen=True)
class PurgatorySpec:
    """How to build one architecture's purgatory from ``arch/<arch>/purgatory``."""

    arch: str
    sources: Tuple[str, ...]  # in link order; the first holds the entry point
    cflags: Tuple[str, ...]
    entry: str = "purgatory_start"
    ld_emulation: Optional[str] = None  # e.g. "elf_i386" for a 32-bit object


ARCHES = {
    "x86_64": PurgatorySpec(
        arch="x86_64",
        sources=("entry64.S", *X86_SHARED_SOURCES),
        cflags=X86_64_CFLAGS,
        ld_emulation="elf_x86_64",
    ),
    "i386": PurgatorySpec(
        arch="i386",
        sources=("entry32.S", *X86_SHARED_SOURCES),
        cflags=I386_CFLAGS,
        ld_emulation="elf_i386",
    ),
}

# Arches setup.py builds when the package is installed.
BUILD_ARCHES: Tuple[str, ...] = ("x86_64", "i386")

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # pykexec/
_SOURCE_ROOT = _PACKAGE_DIR.parent  # meaningful only in a source checkout


class PurgatoryBuildError(PykexecError, RuntimeError):
    """The purgatory object is not installed and cannot be built here."""


def _spec(arch: str) -> PurgatorySpec:
    try:
        return ARCHES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHES))
        raise PurgatoryBuildError(f"no purgatory for architecture {arch!r} (known: {known})") from None


def source_dir(arch: str, root: Optional[Path] = None) -> Path:
    """Directory holding the purgatory sources of `arch` (in a source tree)."""
    _spec(arch)
    return Path(root or _SOURCE_ROOT) / "arch" / arch / "purgatory"


def installed_path(arch: str) -> Path:
    """Where the built object lives inside the package (installed or in-tree)."""
    _spec(arch)
    return _PACKAGE_DIR / "_purgatory" / f"{arch}.o"


# shlex, shutil, subprocess and tempfile are imported where a build needs them: a load
# with the installed object (the common case) never builds and need not pay for them.


def _tool(env_var: str, default: str) -> Sequence[str]:
    import shlex
    value = os.environ.get(env_var)
    return shlex.split(value) if value else [default]


def _run(argv: Sequence[str], cwd: Path) -> None:
    import shlex
    import subprocess
    try:
        proc = subprocess.run(list(argv), cwd=str(cwd), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError:
        raise PurgatoryBuildError(
            f"cannot build the purgatory: {argv[0]!r} not found. The purgatory is "
            "compiled from source with gcc and GNU ld (binutils); install them "
            "(e.g. apt-get install gcc binutils) or set CC/LD."
        ) from None
    if proc.returncode != 0:
        raise PurgatoryBuildError(
            f"purgatory build step failed ({proc.returncode}): {shlex.join(argv)}\n{proc.stdout}"
        )


def build_purgatory(arch: str, output: Path, *, root: Optional[Path] = None) -> Path:
    """Compile ``arch/<arch>/purgatory`` into the relocatable object `output`.

    Each source is compiled with the arch's flags (``CC``, default ``gcc``) and the
    objects are combined with ``ld -r -e <entry>`` (``LD``, default ``ld``).  The result
    is checked to have no undefined symbols, then moved into place atomically.
    """
    import shutil
    import tempfile
    spec = _spec(arch)
    src = source_dir(arch, root)
    missing = [name for name in spec.sources if not (src / name).is_file()]
    if missing:
        raise PurgatoryBuildError(f"purgatory sources missing in {src}: {', '.join(missing)}")
    cc = _tool("CC", "gcc")
    ld = _tool("LD", "ld")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="pykexec-purgatory-") as tmp:
        tmpdir = Path(tmp)
        objects = []
        for name in spec.sources:
            obj = tmpdir / (Path(name).stem + ".o")
            # Relative source names keep the build directory out of the object.
            # -I.: the shared sources find this architecture's arch.h.
            _run([*cc, *spec.cflags, "-I.", "-c", name, "-o", str(obj)], cwd=src)
            objects.append(str(obj))
        linked = tmpdir / "linked" / f"{arch}.o"
        linked.parent.mkdir()
        emulation = ["-m", spec.ld_emulation] if spec.ld_emulation else []
        _run([*ld, *emulation, "-r", "-e", spec.entry, "-o", str(linked), *objects], cwd=src)
        undefined = _undefined_symbols(linked)
        if undefined:
            raise PurgatoryBuildError(
                f"purgatory for {arch} has undefined symbols: {', '.join(undefined)}"
            )
        staged = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        shutil.copyfile(linked, staged)
        os.replace(staged, output)
    return output


def _undefined_symbols(path: Path) -> Tuple[str, ...]:
    import subprocess
    nm = _tool("NM", "nm")
    try:
        proc = subprocess.run([*nm, "-u", str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=True)
    except FileNotFoundError:
        raise PurgatoryBuildError(f"cannot check the purgatory: {nm[0]!r} not found (binutils)") from None
    except subprocess.CalledProcessError as exc:
        raise PurgatoryBuildError(f"nm failed on {path}: {exc.stderr}") from None
    return tuple(line.split()[-1] for line in proc.stdout.splitlines() if line.strip())


def _sources_newer(arch: str, obj: Path) -> bool:
    src = source_dir(arch)
    if not src.is_dir():
        return False  # installed package: no sources to compare with
    built = obj.stat().st_mtime
    # Every file in every folder a source comes from: headers included.
    folders = {(src / name).resolve().parent for name in _spec(arch).sources}
    return any(path.stat().st_mtime > built
               for folder in folders if folder.is_dir()
               for path in folder.iterdir() if path.is_file())


@functools.lru_cache(maxsize=None)
def purgatory_object(arch: str = "x86_64") -> bytes:
    """The bytes of the relocatable purgatory object for `arch`.

    Uses the object installed with the package.  In a source checkout (the package
    sits next to ``arch/``) a missing or out-of-date object is built first; where the
    tree is not writable it is built into a temporary directory instead.
    """
    spec = _spec(arch)
    obj = installed_path(spec.arch)
    src = source_dir(spec.arch)
    if obj.is_file() and not _sources_newer(spec.arch, obj):
        return obj.read_bytes()
    if not src.is_dir():
        raise PurgatoryBuildError(
            f"the {arch} purgatory is not installed ({obj} is missing) and there are no "
            "sources to build it from; reinstall pykexec (the build needs gcc)"
        )
    try:
        build_purgatory(spec.arch, obj)
    except PermissionError:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="pykexec-purgatory-") as tmp:
            return build_purgatory(spec.arch, Path(tmp) / f"{arch}.o").read_bytes()
    return obj.read_bytes()


def _main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pykexec.purgatory.build",
                                     description="Build a purgatory object from source.")
    parser.add_argument("arch", nargs="?", default="x86_64", choices=sorted(ARCHES))
    parser.add_argument("-o", "--output", type=Path, help="default: the in-package location")
    args = parser.parse_args(argv)
    out = build_purgatory(args.arch, args.output or installed_path(args.arch))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
