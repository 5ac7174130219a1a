"""The test bed's one way of building a cache entry: tests/bed/kernels.py `staged`.

A folder or file is built under a temporary name beside its destination and renamed onto
it only when the build succeeds; a failed build leaves nothing behind and keeps the old
entry, so a reader (another test worker) never sees half a build."""

import pytest

from tests.bed.kernels import staged


def test_folder_appears_whole_on_success(tmp_path):
    dest = tmp_path / "linux-image-6.1.0-50-arm64_6.1.176-1"   # dots: still a folder
    with staged(dest) as work:
        assert work.is_dir() and work.parent == tmp_path and not dest.exists()
        (work / "READY").write_text("x\n")
    assert (dest / "READY").read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [dest.name]


def test_folder_replaces_an_unfinished_one(tmp_path):
    dest = tmp_path / "root-abc"
    dest.mkdir()
    (dest / "half").write_text("left by a killed build")
    with staged(dest) as work:
        (work / "READY").write_text("new\n")
    assert sorted(p.name for p in dest.iterdir()) == ["READY"]


def test_failed_folder_build_leaves_nothing(tmp_path):
    dest = tmp_path / "kexec-tools-1_2.0.29-2"
    with pytest.raises(RuntimeError, match="make failed"):
        with staged(dest) as work:
            (work / "src").mkdir()
            raise RuntimeError("make failed")
    assert list(tmp_path.iterdir()) == []


def test_file_keeps_the_old_one_when_the_build_fails(tmp_path):
    dest = tmp_path / "initramfs-6.1.0-50-arm64-0123.cpio.gz"
    dest.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with staged(dest, file=True) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [dest.name]
    with staged(dest, file=True) as tmp:
        assert not tmp.exists() and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [dest.name]
