"""`-S` against Debian's kexec: the same flag-file contents, the same exit status."""

from __future__ import annotations

import os

import pytest

from pykexec.cli import run
from tests.bed.oracle import run_oracle
from tests.conftest import require, require_root
from tests.unit.test_status import SNAPSHOT, STATUS_TABLE, machine_with_flag

pytestmark = pytest.mark.differential


@pytest.mark.parametrize("name,content,status", STATUS_TABLE, ids=[t[0] for t in STATUS_TABLE])
def test_status_like_debian_kexec(tmp_path, name, content, status):
    require_root()
    require(os.path.isdir(SNAPSHOT), f"{SNAPSHOT}: guest snapshot missing")
    require(os.path.exists("/usr/sbin/kexec"), "Debian's kexec (kexec-tools) is not installed")
    machine = machine_with_flag(tmp_path, content, whole=True)
    theirs = run_oracle(machine, ["-S"]).exit_code
    assert run(["-S", "--sysroot", machine], program="kexec") == theirs == status
