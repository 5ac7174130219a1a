"""AArch64 binutils for the arm64 purgatory tests: the cross tools on another host, the
host's own on arm64 (the same choice the purgatory build makes), and GNU ld as the
oracle for our relocation of an object at a chosen base."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Tuple, Union

from elftools.elf.elffile import ELFFile

from pykexec.arch.arm64.purgatory_spec import ARM64
from pykexec.purgatory.build import tool_prefix
from pykexec.purgatory.elfrel import LoadedObject, RelocatableObject
from tests.conftest import require

PREFIX = tool_prefix(ARM64)


def tool(name: str) -> str:
    return PREFIX + name


def need(*names: str) -> None:
    missing = [tool(n) for n in names if shutil.which(tool(n)) is None]
    require(not missing, f"needs {', '.join(missing)} (Debian: {ARM64.cross_package or 'binutils'})")


def assemble(tmp_path: Path, source: str, name: str = "t") -> bytes:
    need("as")
    src = tmp_path / f"{name}.s"
    obj = tmp_path / f"{name}.o"
    src.write_text(textwrap.dedent(source))
    subprocess.run([tool("as"), "-o", str(obj), str(src)], check=True, capture_output=True)
    return obj.read_bytes()


def ld_link(tmp_path: Path, obj_bytes: bytes, where: Union[LoadedObject, Tuple[RelocatableObject, int]],
            *, entry: str = "_start", name: str = "ld", check: bool = True
            ) -> subprocess.CompletedProcess:
    """Link `obj_bytes` with GNU ld, every allocated section where our layout puts it:
    `where` is the loaded object, or (parsed object, base) for a base our relocation
    refuses. The result's `elf` attribute is the linked ELFFile (when ld succeeded)."""
    sections, base = (where.sections, where.base) if isinstance(where, LoadedObject) else \
        (where[0].sections, where[1])
    need("ld")
    obj = tmp_path / f"{name}-in.o"
    obj.write_bytes(obj_bytes)
    lines = ["SECTIONS {"]
    for p in sorted(sections, key=lambda p: (p.nobits, p.offset)):
        lines.append(f"  {p.name} {base + p.offset:#x} : {{ *({p.name}) }}")
    lines.append("  /DISCARD/ : { *(.note.GNU-stack) *(.comment) *(.note.gnu.property) }")
    lines.append("}")
    script = tmp_path / f"{name}.lds"
    script.write_text("\n".join(lines) + "\n")
    out = tmp_path / f"{name}.elf"
    proc = subprocess.run(
        [tool("ld"), "-static", "-nostdlib", "-no-pie", "--build-id=none", "-z", "norelro",
         "-z", "noexecstack", "--no-warn-rwx-segments", "-e", entry, "-T", str(script),
         "-o", str(out), str(obj)],
        check=check, capture_output=True, text=True)
    proc.elf = ELFFile(open(out, "rb")) if proc.returncode == 0 else None
    return proc


def assert_same_as_ld(ld_elf: ELFFile, loaded: LoadedObject) -> int:
    """Every allocated section of ld's output has our address and our bytes; returns how
    many sections with contents were compared."""
    compared = 0
    for p in loaded.sections:
        if p.size == 0:
            continue  # ld drops empty output sections
        section = ld_elf.get_section_by_name(p.name)
        assert section is not None, p.name
        assert section["sh_addr"] == loaded.base + p.offset, p.name
        if p.nobits:
            assert section["sh_type"] == "SHT_NOBITS" and section["sh_size"] == p.size
            continue
        assert section.data() == loaded.data[p.offset:p.offset + p.size], \
            f"{p.name} at base {loaded.base:#x} differs from GNU ld"
        compared += 1
    assert compared
    return compared
