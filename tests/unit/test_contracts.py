"""The package's architecture is checked, not just described: import-linter runs the
contracts declared in pyproject.toml ([tool.importlinter]) over pykexec, and the same
contracts are shown to catch a violation planted in a copy of the package."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint(cwd, pythonpath):
    require(os.path.exists(LINT), "import-linter (pip install -e .[test])")
    env = dict(os.environ, PYTHONPATH=pythonpath)
    return subprocess.run([LINT, "--config", os.path.join(cwd, "pyproject.toml"),
                           "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_package_keeps_its_contracts():
    proc = _lint(ROOT, ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 3 kept, 0 broken" in proc.stdout, proc.stdout


@pytest.mark.parametrize("module, planted, contract", [
    ("pykexec/core/ranges.py", "import pykexec.views.show", "layers import only downward"),
    ("pykexec/views/show.py", "import pykexec.host.syscall", "Views never import the host"),
    ("pykexec/machine/snapshot.py", "import pykexec.arch.x86_64",
     "Nothing outside pykexec.arch imports"),
])
def test_a_planted_violation_breaks_its_contract(tmp_path, module, planted, contract):
    shutil.copytree(os.path.join(ROOT, "pykexec"), tmp_path / "pykexec",
                    ignore=shutil.ignore_patterns("__pycache__", "_purgatory"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path / "pyproject.toml")
    with open(tmp_path / module, "a") as f:
        f.write(f"\n{planted}  # planted by the test\n")
    proc = _lint(str(tmp_path), str(tmp_path))
    assert proc.returncode != 0, proc.stdout
    broken = proc.stdout[proc.stdout.index("Broken contracts"):]
    assert contract in broken and module.replace("/", ".")[:-3] in broken, proc.stdout


def test_every_architecture_package_is_in_the_no_arch_contract():
    """A new pykexec/arch/<name>/ must join the forbidden list, or generic code could
    import it unnoticed (docs/design.md, "Adding an architecture")."""
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        contracts = tomllib.load(f)["tool"]["importlinter"]["contracts"]
    forbidden = next(c for c in contracts if c["id"] == "no-arch-outside-arch")
    arch_dir = os.path.join(ROOT, "pykexec", "arch")
    packages = {f"pykexec.arch.{d}" for d in os.listdir(arch_dir)
                if os.path.isfile(os.path.join(arch_dir, d, "__init__.py"))}
    assert packages == set(forbidden["forbidden_modules"])
