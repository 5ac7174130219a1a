"""The purgatory: this project's own freestanding code run between the kernels.

The sources live in ``arch/<arch>/purgatory/`` of the source tree and are compiled
with gcc into one relocatable object (``ld -r``) when the package is built
(``setup.py`` calls :func:`build_purgatory`), which installs it as
``pykexec/_purgatory/<arch>.o``.  :func:`purgatory_object` returns those bytes; in a
source checkout it builds (or rebuilds, when a source is newer) the object on demand.

Each architecture declares its purgatory (sources, flags) as a :class:`PurgatorySpec` in
``pykexec/arch/<family>/purgatory_spec.py`` (a module-level ``SPECS`` tuple);
:func:`declared_specs` finds those files by name. This module, and those files, import
nothing outside the standard library but pykexec's dependency-free modules: ``setup.py``
imports them before pykexec's dependencies are installed.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

from pykexec.errors import PykexecError

__all__ = [
    "FREESTANDING_CFLAGS",
    "PurgatoryBuildError",
    "PurgatorySpec",
    "build_purgatory",
    "declared_specs",
    "installed_path",
    "missing_toolchain",
    "tool_prefix",
    "toolchain",
    "purgatory_object",
    "purgatory_record",
    "record_path",
    "source_dir",
]

# Compiler flags every purgatory takes, whatever its architecture, and why. Purgatory
# runs with no OS and no libc, at an arbitrary physical address (possibly above 4 GiB),
# on a small stack of its own; the loader relocates the object itself. Each
# architecture's purgatory_spec.py adds its own flags (code model, ISA, registers).
FREESTANDING_CFLAGS: Tuple[str, ...] = (
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    # No hosted environment: no libc, no assumptions about library functions.
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    # Absolute code: no GOT/PLT. Debian's gcc would otherwise build PIE code with GOT
    # relocations (GOTPCREL, ADR_GOT_PAGE) the loader does not, and should not, implement.
    "-fno-PIC",
    "-fno-PIE",
    # The canary lives where nothing sets it up here (a TLS slot, or a symbol).
    "-fno-stack-protector",
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
    # Physical address 0 may be valid memory (a purgatory may copy from there).
    "-fno-delete-null-pointer-checks",
    # No .comment section: the object is the same whoever built it.
    "-fno-ident",
)

@dataclass(frozen=True)
class PurgatorySpec:
    """How to build one architecture's purgatory from ``arch/<arch>/purgatory``."""

    arch: str  # the folder under arch/ and the object's name in pykexec/_purgatory/
    sources: Tuple[str, ...]  # in link order; the first holds the entry point
    cflags: Tuple[str, ...]
    entry: str = "purgatory_start"
    ld_emulation: Optional[str] = None  # ld -m: the emulation of a 32-bit object on a 64-bit host
    # Where the host's own tools (CC/LD/NM, default gcc/ld/nm) build it: `uname -m` names;
    # () = every host. Elsewhere the cross tools <cross_prefix>gcc/ld/nm build it.
    native_machines: Tuple[str, ...] = ()
    cross_prefix: str = ""
    cross_package: str = ""  # the Debian package with those cross tools (for messages)
    optional: bool = False  # the package builds without it where its compiler is missing


_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # pykexec/
_SOURCE_ROOT = _PACKAGE_DIR.parent  # meaningful only in a source checkout


class PurgatoryBuildError(PykexecError, RuntimeError):
    """The purgatory object is not installed and cannot be built here."""


def declared_specs() -> Tuple[PurgatorySpec, ...]:
    """Every purgatory the architectures declare, in their order (the build's list)."""
    import importlib.util
    specs = []
    for path in sorted((_PACKAGE_DIR / "arch").glob("*/purgatory_spec.py")):
        name = f"_pykexec_purgatory_spec_{path.parent.name}"
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        specs.extend(module.SPECS)
    return tuple(specs)


def source_dir(spec: PurgatorySpec, root: Optional[Path] = None) -> Path:
    """Directory holding the purgatory sources of `spec` (in a source tree)."""
    return Path(root or _SOURCE_ROOT) / "arch" / spec.arch / "purgatory"


def installed_path(spec: PurgatorySpec) -> Path:
    """Where the built object lives inside the package (installed or in-tree)."""
    return _PACKAGE_DIR / "_purgatory" / f"{spec.arch}.o"


def record_path(obj: Path) -> Path:
    """The build's parsed record of the object `obj` (elfrel.RelocatableObject.to_record)."""
    return Path(obj).with_suffix(".json")


def write_record(obj: Path) -> Path:
    """Parse the object `obj` once (pyelftools) and keep the result next to it, so a load
    reads a few KiB of JSON instead of importing and running the ELF parser."""
    import json
    from pykexec.purgatory.elfrel import object_record
    record = object_record(Path(obj).read_bytes())
    out = record_path(obj)
    staged = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    staged.write_text(json.dumps(record, separators=(",", ":")))
    os.replace(staged, out)
    return out


# shlex, shutil, subprocess and tempfile are imported where a build needs them: a load
# with the installed object (the common case) never builds and need not pay for them.


def _tool(env_var: str, default: str) -> Sequence[str]:
    import shlex
    value = os.environ.get(env_var)
    return shlex.split(value) if value else [default]


def tool_prefix(spec: PurgatorySpec) -> str:
    """"" where the host's own tools build `spec`, else its cross tools' prefix."""
    import platform
    if spec.native_machines and platform.machine() not in spec.native_machines:
        return spec.cross_prefix
    return ""


def toolchain(spec: PurgatorySpec) -> Tuple[Sequence[str], Sequence[str], Sequence[str]]:
    """The compiler, linker and nm that build `spec` on this host."""
    prefix = tool_prefix(spec)
    if prefix:
        return [prefix + "gcc"], [prefix + "ld"], [prefix + "nm"]
    return _tool("CC", "gcc"), _tool("LD", "ld"), _tool("NM", "nm")


def missing_toolchain(spec: PurgatorySpec) -> Optional[str]:
    """Why `spec` cannot be built on this host (one line), or None when its tools are here."""
    import shutil
    for argv in toolchain(spec):
        if shutil.which(argv[0]) is None:
            install = (f"apt-get install {spec.cross_package}" if tool_prefix(spec) and spec.cross_package
                       else "apt-get install gcc binutils")
            return (f"cannot build the {spec.arch} purgatory: {argv[0]!r} not found; it is "
                    f"compiled from source ({install})")
    return None


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


def build_purgatory(spec: PurgatorySpec, output: Path, *, root: Optional[Path] = None) -> Path:
    """Compile ``arch/<spec.arch>/purgatory`` into the relocatable object `output`.

    Each source is compiled with the arch's flags (``CC``, default ``gcc``, or the spec's
    cross compiler on a host of another machine) and the objects are combined with
    ``ld -r -e <entry>`` (``LD``, default ``ld``, or the cross linker).  The result
    is checked to have no undefined symbols, then moved into place atomically.
    """
    import shutil
    import tempfile
    arch = spec.arch
    src = source_dir(spec, root)
    missing = [name for name in spec.sources if not (src / name).is_file()]
    if missing:
        raise PurgatoryBuildError(f"purgatory sources missing in {src}: {', '.join(missing)}")
    reason = missing_toolchain(spec)
    if reason:
        raise PurgatoryBuildError(reason)
    cc, ld, nm = toolchain(spec)
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
        undefined = _undefined_symbols(linked, nm)
        if undefined:
            raise PurgatoryBuildError(
                f"purgatory for {arch} has undefined symbols: {', '.join(undefined)}"
            )
        staged = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        shutil.copyfile(linked, staged)
        os.replace(staged, output)
    write_record(output)
    return output


def _undefined_symbols(path: Path, nm: Sequence[str]) -> Tuple[str, ...]:
    import subprocess
    try:
        proc = subprocess.run([*nm, "-u", str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=True)
    except FileNotFoundError:
        raise PurgatoryBuildError(f"cannot check the purgatory: {nm[0]!r} not found (binutils)") from None
    except subprocess.CalledProcessError as exc:
        raise PurgatoryBuildError(f"nm failed on {path}: {exc.stderr}") from None
    return tuple(line.split()[-1] for line in proc.stdout.splitlines() if line.strip())


def _sources_newer(spec: PurgatorySpec, obj: Path) -> bool:
    src = source_dir(spec)
    if not src.is_dir():
        return False  # installed package: no sources to compare with
    built = obj.stat().st_mtime
    # Every file in every folder a source comes from: headers included.
    folders = {(src / name).resolve().parent for name in spec.sources}
    return any(path.stat().st_mtime > built
               for folder in folders if folder.is_dir()
               for path in folder.iterdir() if path.is_file())


@functools.lru_cache(maxsize=None)
def purgatory_object(spec: PurgatorySpec) -> bytes:
    """The bytes of the relocatable purgatory object `spec` describes.

    Uses the object installed with the package.  In a source checkout (the package
    sits next to ``arch/``) a missing or out-of-date object is built first; where the
    tree is not writable it is built into a temporary directory instead.
    """
    obj = installed_path(spec)
    src = source_dir(spec)
    if obj.is_file() and not _sources_newer(spec, obj):
        return obj.read_bytes()
    if not src.is_dir():
        compilers = "gcc" + (f", or {spec.cross_prefix}gcc on other hosts" if spec.cross_prefix else "")
        raise PurgatoryBuildError(
            f"the {spec.arch} purgatory is not installed ({obj} is missing) and there are "
            f"no sources to build it from; reinstall pykexec (the build needs {compilers})"
        )
    try:
        build_purgatory(spec, obj)
    except PermissionError:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="pykexec-purgatory-") as tmp:
            return build_purgatory(spec, Path(tmp) / f"{spec.arch}.o").read_bytes()
    return obj.read_bytes()


def _main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pykexec.purgatory.build",
                                     description="Build a purgatory object from source.")
    specs = {spec.arch: spec for spec in declared_specs()}
    parser.add_argument("arch", choices=sorted(specs))
    parser.add_argument("-o", "--output", type=Path, help="default: the in-package location")
    args = parser.parse_args(argv)
    spec = specs[args.arch]
    out = build_purgatory(spec, args.output or installed_path(spec))
    print(out)
    return 0


@functools.lru_cache(maxsize=None)
def purgatory_record(spec: PurgatorySpec) -> Optional[dict]:
    """The build's record of the installed object, or None (not there or unreadable: the
    load then parses the object itself; from_record also checks it is of this object).
    A source checkout whose object predates records gets one written here."""
    import json
    obj = installed_path(spec)
    path = record_path(obj)
    if not path.is_file() and source_dir(spec).is_dir() and obj.is_file():
        try:
            write_record(obj)
        except OSError:
            return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    raise SystemExit(_main())
