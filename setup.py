"""Build hook: compile the purgatory from source with gcc as part of building pykexec.

Project metadata lives in pyproject.toml; this file only adds a build_py step that
runs pykexec/purgatory/build.py:build_purgatory for each purgatory the architectures
declare (pykexec/arch/*/purgatory_spec.py):

* regular builds (``pip install .``, wheels): into ``<build_lib>/pykexec/_purgatory/``,
  so the object ships inside the wheel;
* editable installs (``pip install -e .``, PEP 660): setuptools runs build_py with
  ``editable_mode`` set and imports the package from the source tree, so the object
  is written to ``pykexec/_purgatory/`` in the tree (gitignored).

There is no prebuilt blob: without gcc and binutils the build fails with a clear error.
A purgatory its spec marks optional (one built by a cross compiler on other hosts) is
skipped where that compiler is missing; loads for its architecture are then refused with
the reason (pykexec.purgatory.build.missing_toolchain).

The wheel is therefore not pure Python: it carries machine code (the x86 purgatory
objects), so bdist_wheel tags it for the build machine's architecture. The objects are
freestanding (no libc, not loaded into the Python process: pykexec copies them into the
kexec segments), so any Linux C library will do: the tag is
``py3-none-manylinux_2_5_<arch>.manylinux1_<arch>.musllinux_1_1_<arch>``, i.e. any
Python 3, no ABI, any glibc or musl Linux on that architecture.
"""

import importlib
import os
import sys
import sysconfig
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _purgatory_builder():
    # Import from the source tree: pykexec's dependencies need not be installed yet, and
    # pykexec.purgatory.build (with pykexec/__init__ and pykexec.errors) uses only the
    # standard library.
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module("pykexec.purgatory.build")


class build_py_with_purgatory(build_py):
    """build_py that also compiles arch/<arch>/purgatory into pykexec/_purgatory/<arch>.o
    (and its record <arch>.json, parsed with pyelftools: a build requirement)."""

    def _purgatory_outputs(self):
        builder = _purgatory_builder()
        if getattr(self, "editable_mode", False):
            out_dir = HERE / "pykexec" / "_purgatory"
        else:
            out_dir = Path(self.build_lib) / "pykexec" / "_purgatory"
        # A distribution package for one architecture ships only the objects this host's
        # own tools build (Debian: debian/rules); a cross-built one would be a binary of
        # another architecture in it.
        native_only = os.environ.get("PYKEXEC_PURGATORY_NATIVE_ONLY") == "1"
        outputs = []
        for spec in builder.declared_specs():
            if native_only and builder.tool_prefix(spec):
                self.announce(f"not building the {spec.arch} purgatory: cross-built here and "
                              "PYKEXEC_PURGATORY_NATIVE_ONLY=1", level=3)
                continue
            reason = builder.missing_toolchain(spec) if spec.optional else None
            if reason:  # loads for that architecture are refused with this reason
                self.announce(f"skipping the {spec.arch} purgatory: {reason}", level=3)
                continue
            outputs.append((spec, out_dir / f"{spec.arch}.o"))
        return builder, outputs

    def run(self):
        super().run()
        builder, outputs = self._purgatory_outputs()
        for spec, path in outputs:
            self.announce(f"building {spec.arch} purgatory -> {path}", level=2)
            builder.build_purgatory(spec, path, root=HERE)

    def get_outputs(self, include_bytecode=1):
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            builder, objects = self._purgatory_outputs()
            for _, path in objects:     # the object and its parsed record (build.write_record)
                outputs.extend((str(path), str(builder.record_path(path))))
        return outputs


def _bdist_wheel_class():
    try:  # setuptools >= 70.1 (pyproject.toml asks for >= 77)
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:  # older setuptools (Debian 12's, for the .deb) with the wheel package
        try:
            from wheel.bdist_wheel import bdist_wheel
        except ImportError:
            return None

    class bdist_wheel_with_machine_code(bdist_wheel):
        """A platform wheel: it holds the purgatory objects (x86 machine code)."""

        def get_tag(self):
            machine = sysconfig.get_platform().split("-", 1)[-1]  # linux-x86_64 -> x86_64
            if machine == "x86_64" and sys.maxsize <= 2**32:
                machine = "i686"  # a 32-bit Python on a 64-bit kernel
            platforms = [f"manylinux_2_5_{machine}", f"manylinux1_{machine}",
                         f"musllinux_1_1_{machine}"]
            return "py3", "none", ".".join(platforms)

    return bdist_wheel_with_machine_code


class DistributionWithMachineCode(Distribution):
    """Not pure: installs into platlib, and the wheel's root is platlib, not .data/purelib."""

    def has_ext_modules(self):
        return True


commands = {"build_py": build_py_with_purgatory}
if _bdist_wheel_class() is not None:
    commands["bdist_wheel"] = _bdist_wheel_class()
setup(cmdclass=commands, distclass=DistributionWithMachineCode)
