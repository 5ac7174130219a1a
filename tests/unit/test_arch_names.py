"""An architecture lives in its own folders: no module outside pykexec/arch/<name>/ (and
the folders of its family, for x86_64 and i386 that share pykexec/arch/x86/) and
arch/<name>/ mentions it by name, in code, strings or comments. That is what makes
docs/design.md's "Adding an architecture" true: a new one touches no generic module."""

import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "pykexec")

# The names an architecture goes by (uname -m, Debian, ELF, kexec), and the pykexec/arch/
# folders allowed to use them.
ARCHES = {
    "x86 family": (r"x86(?:[_-]64)?|amd64|i[3-6]86|ia32|EM_386|EM_X86_64",
                   ("x86", "x86_64", "i386")),
    "arm64": (r"arm64|aarch64|EM_AARCH64", ("arm64",)),
}

# Places outside pykexec/arch/ that may still name an architecture, each with its reason.
ALLOWED = {
    "pykexec/arch/__init__.py": "the registry: one line per architecture",
    "pykexec/abi/machines.py": "elf.h's e_machine table: it names machines as elf.h does",
    "pykexec/abi/elf.py": "re-exports abi.machines' e_machine values for the ELF layouts",
    "pykexec/abi/kexec.py": "kexec.h's KEXEC_ARCH_* names, to decode a recorded plan's flags",
}


def _python_files():
    for folder, _, names in os.walk(PACKAGE):
        if "__pycache__" in folder or "_purgatory" in folder:
            continue
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, ROOT), path


def _mentions(pattern, folders):
    word = re.compile(rf"(?<![A-Za-z0-9])(?:{pattern})(?![A-Za-z0-9])", re.I)
    found = []
    for rel, path in _python_files():
        parts = rel.split(os.sep)
        if parts[:2] == ["pykexec", "arch"] and len(parts) > 3 and parts[2] in folders:
            continue
        if rel in ALLOWED:
            continue
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if word.search(line):
                    found.append(f"{rel}:{lineno}: {line.strip()}")
    return found


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_no_generic_module_names_the_architecture(arch):
    pattern, folders = ARCHES[arch]
    found = _mentions(pattern, folders)
    assert not found, f"{len(found)} mentions of {arch} outside its folders:\n" + "\n".join(found)


def test_every_architecture_folder_is_known_here():
    """A new pykexec/arch/<name>/ must say its names here, or the test above misses it."""
    folders = {d for d in os.listdir(os.path.join(PACKAGE, "arch"))
               if os.path.isdir(os.path.join(PACKAGE, "arch", d)) and d != "__pycache__"}
    known = {f for _, fs in ARCHES.values() for f in fs}
    assert folders == known


def test_the_check_finds_a_mention(tmp_path, monkeypatch):
    planted = tmp_path / "pykexec" / "core"
    planted.mkdir(parents=True)
    (planted / "plan.py").write_text("# the aarch64 way\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", str(tmp_path / "pykexec"))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    assert _mentions(*ARCHES["arm64"]) == ["pykexec/core/plan.py:1: # the aarch64 way"]
