"""docs/tutorial.md cannot rot: every command in it runs, and prints what the page shows.

See tests/docs/tutorial.py for how commands are marked and outputs compared.
"""

from __future__ import annotations

import re

import pytest

from tests.docs.tutorial import REPO, TUTORIAL, environment, mismatch, normalise, parse, run

# In a picture, the digests of the segments whose bytes are random on every run.
RANDOM_DIGEST = re.compile(r"(segment #\d+ (?:setup_data|purgatory) [^<]*?sha256 )[0-9a-f]{64}")


def test_the_tutorial_has_commands():
    commands = parse(TUTORIAL.read_text())
    assert len(commands) >= 15
    assert sum("pykexec" in c.text for c in commands) >= 10
    # every bundled machine appears in a command
    for machine in ("qemu-x86_64-1g-2cpu", "qemu-x86_64-4g-2cpu-high", "server-64g-2socket",
                    "kdump-2006-i386", "vmcore-1g-2cpu"):
        assert any(machine in c.text for c in commands), machine


def test_every_command_runs_and_prints_what_the_tutorial_shows(tmp_path):
    env = environment(tmp_path)
    failures = []
    for cmd in parse(TUTORIAL.read_text()):
        proc = run(cmd, tmp_path, env)
        if proc.returncode != 0:
            failures.append(f"docs/tutorial.md:{cmd.line}: `{cmd.text}` exited "
                            f"{proc.returncode}: {proc.stderr.strip()[-600:]}")
            continue
        problem = mismatch(normalise(cmd.shown, tmp_path),
                           normalise((proc.stdout + proc.stderr).splitlines(), tmp_path))
        if problem:
            failures.append(f"docs/tutorial.md:{cmd.line}: `{cmd.text}`: {problem}")
    # The committed pictures are what the tutorial's --svg commands draw now.
    for drawn in sorted((tmp_path / "tutorial").glob("*.svg")):
        committed = REPO / "docs" / "img" / drawn.name
        if not committed.is_file():
            failures.append(f"{drawn.name}: drawn by the tutorial, not in docs/img")
        elif (RANDOM_DIGEST.sub(r"\1<random>", drawn.read_text())
              != RANDOM_DIGEST.sub(r"\1<random>", committed.read_text())):
            failures.append(f"docs/img/{drawn.name} is not what the tutorial's command draws "
                            f"now: run scripts/update-tutorial --svg")
    assert not failures, "\n\n".join(failures)


def test_pictures_the_tutorial_shows_exist_and_are_made_by_its_commands():
    text = TUTORIAL.read_text()
    images = re.findall(r"!\[[^\]]*\]\((img/[^)]+\.svg)\)", text)
    assert images
    commands = " ".join(c.text for c in parse(text))
    for rel in images:
        assert (REPO / "docs" / rel).is_file(), rel
        # made by a --svg in the tutorial: the committed picture is what that command draws
        assert f"--svg=/tmp/tutorial/{rel.split('/')[-1]}" in commands, rel


@pytest.mark.parametrize("shown, real, ok", [
    (["a", "b"], ["a", "b"], True),
    (["a", "b"], ["a", "b", "c"], False),
    (["a", "...", "c"], ["a", "b", "c"], True),
    (["a", "..."], ["a", "b", "c"], True),
    (["...", "c"], ["a", "b", "c"], True),
    (["...", "b", "..."], ["a", "b", "c"], True),
    (["a", "...", "x"], ["a", "b", "c"], False),
    (["c", "...", "a"], ["a", "b", "c"], False),
    ([], [], True),
    ([], ["a"], False),
])
def test_comparison_rules(shown, real, ok):
    assert (mismatch(shown, real) == "") is ok
