"""The one input reader (pykexec.core.inputfiles): what it refuses, and that it refuses before
reading (no blocking open, no read of a file that cannot fit, bounded decompression)."""

from __future__ import annotations

import gzip
import lzma
import os
import signal
import tracemalloc
import zlib

import pytest

from pykexec.core import inputfiles
from pykexec.core.inputfiles import InputFileError, open_input, read_input, read_kernel

MIB = 1 << 20


@pytest.fixture
def no_reads(monkeypatch):
    """Any read of file data fails the test: a refusal must come from fstat alone."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the reader read file data before refusing")
    for name in ("read", "pread", "preadv", "readv"):
        monkeypatch.setattr(os, name, forbidden)


@pytest.fixture
def alarm():
    """A blocking open would hang the test: fail it after 5 s instead."""
    def timeout(signum, frame):
        raise AssertionError("the reader blocked")
    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_a_regular_file_is_read_whole(tmp_path):
    path = tmp_path / "initrd"
    path.write_bytes(bytes(range(256)) * 1000)
    assert read_input(str(path), "initrd", 1 << 20, "RAM") == bytes(range(256)) * 1000


def test_a_fifo_without_writer_is_refused_at_once(tmp_path, alarm, no_reads):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputFileError, match="fifo: Cannot read the kernel: a FIFO") as err:
        read_input(str(tmp_path / "fifo"), "kernel", 1 << 30, "RAM")
    assert err.value.exit_status == 1


def test_dev_zero_is_refused_before_any_read(no_reads):
    with pytest.raises(InputFileError, match="/dev/zero: .*a character device"):
        read_input("/dev/zero", "initrd", 1 << 30, "RAM")


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(InputFileError, match="a directory, not a regular file"):
        open_input(str(tmp_path), "kernel")


def test_a_sparse_2gib_file_is_refused_by_its_size_without_reading(tmp_path, no_reads):
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(2 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError, match=r"sparse: the initrd is 0x80000000 bytes, "
                                                 r"more than the 0x10000000 bytes of the crash"):
            read_input(str(path), "initrd", 256 * MIB, "the crash region")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MIB


def test_an_empty_file_and_an_empty_name_are_refused_as_kexec_does(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(InputFileError, match="empty: Cannot read the initrd: the file is empty"):
        read_input(str(tmp_path / "empty"), "initrd", 1 << 20, "RAM")
    with pytest.raises(InputFileError, match="Cannot read the initrd: empty file name"):
        read_input("", "initrd", 1 << 20, "RAM")


def test_a_missing_file_has_the_callers_open_status(tmp_path):
    with pytest.raises(InputFileError) as err:
        open_input(str(tmp_path / "nope"), "kernel", open_status=255)
    assert err.value.exit_status == 255 and "nope: cannot open the kernel" in str(err.value)
    with pytest.raises(InputFileError) as err:
        open_input(str(tmp_path / "nope"), "kernel")
    assert err.value.exit_status == 1


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress], ids=["gzip", "xz"])
def test_a_compressed_kernel_is_read_decompressed(tmp_path, compress):
    kernel = bytes(range(256)) * 4096
    path = tmp_path / "vmlinuz.z"
    path.write_bytes(compress(kernel))
    assert read_kernel(str(path), 8 * MIB, "RAM") == kernel


def test_an_uncompressed_kernel_is_read_as_it_is(tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(b"MZ" + bytes(5000))
    assert read_kernel(str(path), MIB, "RAM") == b"MZ" + bytes(5000)


def test_a_decompression_bomb_stops_at_the_limit_in_bounded_memory(tmp_path):
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MIB)
    (tmp_path / "bomb.gz").write_bytes(b"".join(comp.compress(block) for _ in range(256))
                                       + comp.flush())
    assert os.path.getsize(tmp_path / "bomb.gz") < MIB   # 256 MiB inside
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError, match=r"bomb.gz: the kernel decompresses \(gzip\) "
                                                 r"to more than the 0x400000 bytes"):
            read_kernel(str(tmp_path / "bomb.gz"), 4 * MIB, "RAM")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB + 8 * inputfiles.CHUNK


def test_damaged_compressed_data_is_not_a_kernel(tmp_path):
    data = gzip.compress(bytes(range(256)) * 100)
    (tmp_path / "cut.gz").write_bytes(data[:len(data) // 2])
    with pytest.raises(InputFileError, match="cut.gz: cannot determine the file type") as err:
        read_kernel(str(tmp_path / "cut.gz"), MIB, "RAM")
    assert err.value.exit_status == 255
