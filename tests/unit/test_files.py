"""pykexec.core.files: the one reader of regular files, as a table of policies and files."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from pykexec.core.files import (FileTooLarge, NotRegularFile, ReadPolicy, file_kind,
                                open_regular, read_regular, read_upto)

DATA = bytes(range(256)) * 40   # 10240 bytes


def _file(tmp_path, name="f", data=DATA):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("policy, size, expected", [
    (ReadPolicy(len(DATA)), len(DATA), DATA),                                   # exactly the limit
    (ReadPolicy(len(DATA), step=7), len(DATA), DATA),                           # many small reads
    (ReadPolicy(100, head_only=True), len(DATA), DATA[:100]),                   # a head
    (ReadPolicy(100, head_only=True, trust_size=False), len(DATA), DATA[:100]),
    (ReadPolicy(len(DATA), trust_size=False, step=1000), len(DATA), DATA),
    (ReadPolicy(1 << 20), 0, b""),                                              # empty
    (ReadPolicy(1 << 20, head_only=True), 3, DATA[:3]),                         # shorter than the head
])
def test_read_regular(tmp_path, policy, size, expected):
    assert read_regular(_file(tmp_path, data=DATA[:size]), policy) == expected


@pytest.mark.parametrize("trust_size, size_known", [(True, True), (False, False)])
def test_a_longer_file_is_refused(tmp_path, trust_size, size_known):
    """By fstat's size before any read when it is trusted; else once the read passes the limit."""
    with pytest.raises(FileTooLarge) as info:
        read_regular(_file(tmp_path), ReadPolicy(100, trust_size=trust_size))
    assert info.value.errno == errno.EFBIG and info.value.limit == 100
    assert info.value.size == (len(DATA) if size_known else None)


def test_a_trusted_size_is_not_read_past(tmp_path):
    """trust_size reads what fstat says and no more (a file growing meanwhile is cut there)."""
    path = _file(tmp_path)
    fd, info = open_regular(path)
    os.close(fd)
    assert info.st_size == len(DATA)
    assert read_regular(path, ReadPolicy(1 << 20)) == DATA


def test_not_regular_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFile) as info:
        read_regular(str(tmp_path / "fifo"), ReadPolicy(10))   # refused, never waited on
    assert info.value.errno == errno.EINVAL and info.value.kind == "a FIFO"
    assert info.value.strerror == "not a regular file"
    with pytest.raises(NotRegularFile) as info:
        read_regular(str(tmp_path), ReadPolicy(10))
    assert info.value.errno == errno.EISDIR and info.value.strerror == "Is a directory"
    assert info.value.kind == "a directory"
    with pytest.raises(NotRegularFile) as info:
        read_regular("/dev/zero", ReadPolicy(10, head_only=True))
    assert info.value.kind == "a character device"


def test_symbolic_links(tmp_path):
    path = _file(tmp_path)
    os.symlink(path, tmp_path / "link")
    assert read_regular(str(tmp_path / "link"), ReadPolicy(1 << 20)) == DATA
    with pytest.raises(OSError) as info:
        read_regular(str(tmp_path / "link"), ReadPolicy(1 << 20, follow_symlinks=False))
    assert info.value.errno == errno.ELOOP


def test_read_upto_positional_leaves_the_offset(tmp_path):
    fd, _ = open_regular(_file(tmp_path))
    try:
        assert read_upto(fd, 5000, step=1000, offset=0) == DATA[:5000]
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        assert read_upto(fd, 3, offset=10) == DATA[10:13]
        assert read_upto(fd, 1 << 20) == DATA          # plain reads move it, to end of file
    finally:
        os.close(fd)


def test_file_kind(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        assert file_kind(os.stat(tmp_path / "sock").st_mode) == "a socket"
    finally:
        sock.close()
    os.symlink("nowhere", tmp_path / "dangling")
    assert file_kind(os.lstat(tmp_path / "dangling").st_mode) == "a symbolic link"
    assert file_kind(os.stat("/dev/null").st_mode) == "a character device"
