"""The fuzz harness can fail: over time, over memory, an escaping exception, a bad refusal."""

from __future__ import annotations

import os
import time

import pytest

from tests.fuzz import harness


def _sleep():
    time.sleep(30)


def _c_loop():
    # one C call that never returns to the interpreter: only a signal's default action stops it
    set(range(1 << 62))


def _big():
    return len(bytearray(64 << 20))


def _boom():
    raise KeyError("boom")


def test_over_time_is_stopped():
    with pytest.raises(harness.OverTime):
        harness.in_child(_sleep, seconds=1)


def test_a_runaway_c_loop_is_stopped():
    started = time.time()
    with pytest.raises((harness.OverTime, harness.OverMemory)):
        harness.in_child(_c_loop, seconds=3)
    assert time.time() - started < 60


def test_memory_peak_is_measured():
    assert harness.in_child(_big, peak=128 << 20) == 64 << 20
    with pytest.raises(harness.OverMemory):
        harness.in_child(_big, peak=16 << 20)


def test_an_exception_in_the_child_comes_back():
    with pytest.raises(harness.ChildFailed, match="KeyError: 'boom'"):
        harness.in_child(_boom)


def outcome(code, err, plan_dir=None):
    return harness.Outcome(["-p", "k"], code, "", err, [], plan_dir)


@pytest.mark.parametrize("code,err", [
    (255, "pykexec: a\npykexec: b\n"),                        # two lines
    (255, ""),                                                 # none
    (255, "pykexec: internal error: KeyError: 'x' (run with --debug for details)\n"),
    (1, "Traceback (most recent call last):\n  ...\nKeyError: 1\n"),
])
def test_a_bad_refusal_is_caught(code, err):
    with pytest.raises(AssertionError):
        harness.judge(outcome(code, err), "/nonexistent")


def test_a_good_refusal_passes():
    harness.judge(outcome(255, "pykexec: /k: not a kernel\n"), "/nonexistent")


def test_success_without_a_plan_is_caught(tmp_path):
    with pytest.raises(AssertionError, match="without a saved plan"):
        harness.judge(outcome(0, "", str(tmp_path / "none")), "/nonexistent")
