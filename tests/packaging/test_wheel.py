"""The wheel: built as a user would (`python -m build`: sdist, then the wheel from the
sdist), tagged for the machine, installed into a fresh virtualenv and run with no compiler.

The run's PATH is a folder of trap programs (gcc, cc, ld, as, nm, ...) that record that they
were called and fail, then the virtualenv's bin: a purgatory build would call one of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import require
from pykexec.purgatory.elfrel import RelocatableObject
from tests.unit.relocs import X86_RELOCATIONS
from tests.packaging.build import REPO

pytestmark = pytest.mark.packaging

EXAMPLES = REPO / "examples"
TOOLS = ("gcc", "cc", "c99", "ld", "ld.bfd", "as", "nm", "objcopy", "x86_64-linux-gnu-gcc",
         "i686-linux-gnu-gcc", "aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ld", "aarch64-linux-gnu-nm")


def test_build_prints_no_deprecation_warning(dists):
    assert not re.search(r"deprecat", dists.output, re.I), dists.output
    assert "SetuptoolsWarning" not in dists.output, dists.output


def test_sdist_holds_the_purgatory_sources_not_objects(dists):
    with tarfile.open(dists.sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("arch/x86_64/purgatory/entry64.S") for n in names), names
    assert any(n.endswith("arch/i386/purgatory/entry32.S") for n in names), names
    assert any(n.endswith("arch/arm64/purgatory/entry.S") for n in names), names
    assert any(n.endswith("arch/common/purgatory/sha256.c") for n in names), names
    assert not [n for n in names if n.endswith(".o")], names
    # python -m build made the wheel from this sdist: the sdist builds from source.


def test_the_wheel_carries_a_cross_built_purgatory_where_its_compiler_was(dists):
    """An optional purgatory (arm64's, cross-built on other hosts) is in the wheel exactly
    when the build found its compiler; loads for it are refused otherwise."""
    from pykexec.arch.arm64.purgatory_spec import ARM64
    from pykexec.purgatory.build import missing_toolchain
    with zipfile.ZipFile(dists.wheel) as whl:
        names = set(whl.namelist())
    built = missing_toolchain(ARM64) is None
    assert {"pykexec/_purgatory/arm64.o", "pykexec/_purgatory/arm64.json"} <= names if built \
        else not {n for n in names if "arm64.o" in n}


def test_wheel_is_a_platform_wheel_with_the_purgatory_objects(dists):
    from elftools.elf.elffile import ELFFile
    name = dists.wheel.name
    machine = os.uname().machine
    assert name.startswith("pykexec-0.1.0-py3-none-"), name
    assert f"manylinux_2_5_{machine}" in name and f"musllinux_1_1_{machine}" in name, name
    assert "any.whl" not in name
    with zipfile.ZipFile(dists.wheel) as whl:
        wheel_meta = whl.read("pykexec-0.1.0.dist-info/WHEEL").decode()
        metadata = whl.read("pykexec-0.1.0.dist-info/METADATA").decode()
        objects = {arch: whl.read(f"pykexec/_purgatory/{arch}.o") for arch in ("x86_64", "i386")}
        records = {arch: json.loads(whl.read(f"pykexec/_purgatory/{arch}.json"))
                   for arch in ("x86_64", "i386")}
        assert not [n for n in whl.namelist() if n.endswith(".pyc")]  # pip compiles on install
    assert "Root-Is-Purelib: false" in wheel_meta, wheel_meta
    assert "License-Expression: GPL-2.0-or-later" in metadata, metadata
    import io
    for arch, (machine_name, elfclass) in {"x86_64": ("EM_X86_64", 64), "i386": ("EM_386", 32)}.items():
        elf = ELFFile(io.BytesIO(objects[arch]))
        assert (elf["e_type"], elf["e_machine"], elf.elfclass) == ("ET_REL", machine_name, elfclass)
        # the build's parsed record, which loads use instead of parsing: of this very object
        recorded = RelocatableObject.from_record(objects[arch], records[arch],
                                                 relocations=X86_RELOCATIONS)
        parsed = RelocatableObject.from_bytes(objects[arch], relocations=X86_RELOCATIONS)
        assert recorded is not None
        assert recorded.layout(0x100000).data == parsed.layout(0x100000).data


def _trap_path(tmp_path: Path) -> tuple[Path, Path]:
    traps = tmp_path / "traps"
    traps.mkdir()
    called = tmp_path / "compiler-called"
    for tool in TOOLS:
        script = traps / tool
        script.write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {called}\nexit 127\n")
        script.chmod(0o755)
    return traps, called


def test_installed_wheel_works_without_a_compiler(installed, tmp_path):
    traps, called = _trap_path(tmp_path)
    bin_dir = installed / "bin"
    assert not [t for t in TOOLS if (bin_dir / t).exists()]
    env = {"PATH": f"{traps}:{bin_dir}", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "CC": str(traps / "gcc"), "LD": str(traps / "ld"), "NM": str(traps / "nm")}

    def run(*argv):
        proc = subprocess.run(list(argv), cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc.stdout

    where = run("python", "-c", "import pykexec.purgatory.build as p; print(p.__file__)")
    assert where.startswith(str(installed)), where
    # bytecode: pip compiled the modules for this interpreter at install time
    pyc = list((Path(where.strip()).parent / "__pycache__").glob("build.cpython-*.pyc"))
    assert pyc, where
    plan = run("pykexec", "-p", str(EXAMPLES / "kernels" / "stand-in-bzImage"),
               "--append=console=ttyS0 irqpoll", "--sysroot", str(EXAMPLES / "qemu-x86_64-1g-2cpu"),
               "--dry-run")
    assert re.search(r"^ *\d+ +purgatory +0x", plan, re.M), plan
    assert "stand-in-bzImage: bzImage" in run("pykexec", "inspect",
                                              str(EXAMPLES / "kernels" / "stand-in-bzImage"))
    if os.geteuid() == 0:   # a live snapshot reads root-only files (/proc/kcore, boot_params)
        run("pykexec", "snapshot", str(tmp_path / "snap"))
        assert (tmp_path / "snap" / "snapshot.json").is_file()
        assert (tmp_path / "snap" / "proc" / "iomem").is_file()
    else:
        require(False, "pykexec snapshot of the live machine needs root")
    assert not called.exists(), called.read_text()
