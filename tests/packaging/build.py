"""Build pykexec's distributions as a user or CI would, outside the repository.

`source_copy(dest)` exports the repository's tracked files (HEAD plus uncommitted changes
to tracked files, as `git stash create` records them) with `git archive`; builds run in
that copy, so nothing lands in the checkout. `build_python(dest)` runs `python -m build`
(the sdist, then the wheel from the unpacked sdist: the sdist builds from source);
`build_deb(dest)` runs `dpkg-buildpackage -us -uc -b` and lintian.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"
# Debian's tools with Debian's python3 first: a pyenv or virtualenv python on PATH would
# take pybuild's `python3.11 -m build`.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(RuntimeError):
    pass


def _run(argv: List[str], cwd: Path, log: Path, env: Dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(argv)}\n{proc.stdout}\n")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise BuildError(f"{' '.join(argv)} failed ({proc.returncode}); log {log}:\n{tail}")
    return proc.stdout


def tree_id() -> str:
    """The commit `git archive` exports: HEAD, or a stash commit with uncommitted edits."""
    stash = subprocess.run(["git", "stash", "create"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.strip()
    if stash:
        return stash
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()


def source_copy(dest: Path) -> Path:
    """The tracked tree exported into dest/pykexec-VERSION (a fresh folder)."""
    src = dest / f"pykexec-{VERSION}"
    if src.exists():
        shutil.rmtree(src)
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", f"--prefix=pykexec-{VERSION}/", tree_id()],
                             cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return src


@dataclass
class PythonDists:
    sdist: Path
    wheel: Path
    output: str                 # python -m build's output (warnings included)


@dataclass
class DebianBuild:
    debs: Dict[str, Path] = field(default_factory=dict)   # package name -> .deb
    changes: Path = Path()
    output: str = ""            # dpkg-buildpackage's output
    lintian: str = ""           # lintian's output on the .changes (empty when clean)


def build_python(dest: Path) -> PythonDists:
    src = source_copy(dest)
    out = dest / "dist"
    log = dest / "build.log"
    text = _run([sys.executable, "-m", "build", "--outdir", str(out), str(src)], dest, log)
    sdists = list(out.glob("pykexec-*.tar.gz"))
    wheels = list(out.glob("pykexec-*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        raise BuildError(f"python -m build made {sdists + wheels} in {out}")
    return PythonDists(sdists[0], wheels[0], text)


def build_deb(dest: Path) -> DebianBuild:
    src = source_copy(dest)
    log = dest / "dpkg-buildpackage.log"
    env = dict(os.environ, PATH=SYSTEM_PATH)
    env.pop("PYTHONPATH", None)
    result = DebianBuild()
    result.output = _run(["dpkg-buildpackage", "-us", "-uc", "-b"], src, log, env)
    for deb in dest.glob("*.deb"):
        result.debs[deb.name.split("_")[0]] = deb
    changes = list(dest.glob("pykexec_*.changes"))
    if len(changes) != 1:
        raise BuildError(f"dpkg-buildpackage made no .changes in {dest}")
    result.changes = changes[0]
    lint = subprocess.run(["lintian", "--pedantic", "--info", str(result.changes)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # lintian complains about root on stderr; only tags (X: package: tag ...) count
    result.lintian = "\n".join(line for line in lint.stdout.splitlines()
                               if line[:2] in ("E:", "W:", "I:", "P:", "X:", "O:"))
    return result
