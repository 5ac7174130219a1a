"""Shared test policy: in CI a test that cannot run is a failure, never a silent skip."""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition, reason):
    """Skip (outside CI, with the reason) or fail (in CI) when `condition` is false."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root():
    require(os.geteuid() == 0, "needs root (mount namespaces, /dev/kvm-less QEMU is fine)")
