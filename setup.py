"""Build hook: compile the purgatory from source with gcc as part of building pykexec.

Project metadata lives in pyproject.toml; this file only adds a build_py step that
runs pykexec/purgatory.py:build_purgatory for each arch in BUILD_ARCHES:

* regular builds (``pip install .``, wheels): into ``<build_lib>/pykexec/_purgatory/``,
  so the object ships inside the wheel;
* editable installs (``pip install -e .``, PEP 660): setuptools runs build_py with
  ``editable_mode`` set and imports the package from the source tree, so the object
  is written to ``pykexec/_purgatory/`` in the tree (gitignored).

There is no prebuilt blob: without gcc and binutils the build fails with a clear error.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _purgatory_builder():
    # Load pykexec/purgatory.py by path: pykexec's dependencies need not be
    # installed yet, and the module uses only the standard library.
    spec = importlib.util.spec_from_file_location("_pykexec_purgatory_build", HERE / "pykexec" / "purgatory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it loads
    spec.loader.exec_module(module)
    return module


class build_py_with_purgatory(build_py):
    """build_py that also compiles arch/<arch>/purgatory into pykexec/_purgatory/<arch>.o."""

    def _purgatory_outputs(self):
        builder = _purgatory_builder()
        if getattr(self, "editable_mode", False):
            out_dir = HERE / "pykexec" / "_purgatory"
        else:
            out_dir = Path(self.build_lib) / "pykexec" / "_purgatory"
        return builder, [(arch, out_dir / f"{arch}.o") for arch in builder.BUILD_ARCHES]

    def run(self):
        super().run()
        builder, outputs = self._purgatory_outputs()
        for arch, path in outputs:
            self.announce(f"building {arch} purgatory -> {path}", level=2)
            builder.build_purgatory(arch, path, root=HERE)

    def get_outputs(self, include_bytecode=1):
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs.extend(str(path) for _, path in self._purgatory_outputs()[1])
        return outputs


setup(cmdclass={"build_py": build_py_with_purgatory})
