"""The man page and the bash completion are generated from the option table -h prints."""

import os
import shutil
import subprocess
import sys

import pytest

from pykexec.arch import option_table, usage_text

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(REPO, "scripts", "gen-docs")
OPTIONS = option_table()


def test_committed_man_page_and_completion_are_up_to_date():
    proc = subprocess.run([sys.executable, GEN, "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_option_is_in_help_man_page_and_completion():
    help_text = usage_text("kexec")
    with open(os.path.join(REPO, "docs/pykexec.8")) as f:
        man = f.read()
    with open(os.path.join(REPO, "docs/completion/kexec.bash")) as f:
        bash = f.read()
    for name, *_ in OPTIONS:
        assert f"--{name}" in help_text
        assert "\\-\\-" + name.replace("-", "\\-") in man, name
        assert f"--{name}" in bash, name
    assert "reuse-cmdline" in help_text     # LTP's ima_kexec.sh greps -h for it


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_completes_prefixes():
    script = (f"source {REPO}/docs/completion/kexec.bash; COMP_WORDS=(kexec --reuse); "
              "COMP_CWORD=1; _pykexec_kexec; printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout
    assert sorted(w.strip() for w in out.split("\n") if w.strip()) == \
        ["--reuse-cmdline", "--reuse-video-type", "--reuseinitrd"]
