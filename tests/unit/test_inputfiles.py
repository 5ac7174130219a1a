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


def zstd_compress(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor(level=19).compress(data)


def zstd_frames(data: bytes) -> bytes:
    """Two zstd frames, as a streaming compressor may write a kernel."""
    half = len(data) // 2
    return zstd_compress(data[:half]) + zstd_compress(data[half:])


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, zstd_compress, zstd_frames],
                         ids=["gzip", "xz", "zstd", "zstd-2-frames"])
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


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, zstd_compress, zstd_frames],
                         ids=["gzip", "xz", "zstd", "zstd-2-frames"])
@pytest.mark.parametrize("keep", [0.6, -4], ids=["60%", "all-but-4-bytes"])
def test_damaged_compressed_data_is_not_a_kernel(tmp_path, compress, keep):
    """A cut file is refused, never read as a shorter kernel (zstd's stream reader would
    return the bytes it has and stop). (A cut exactly between two frames is a whole file
    of one frame: no format can tell, so the cuts here fall inside a frame.)"""
    data = compress(bytes(range(256)) * 4000)
    cut = data[:int(len(data) * keep)] if keep > 0 else data[:keep]
    (tmp_path / "cut.z").write_bytes(cut)
    with pytest.raises(InputFileError, match="cut.z: cannot determine the file type") as err:
        read_kernel(str(tmp_path / "cut.z"), 2 * MIB, "RAM")
    assert err.value.exit_status == 255


def test_a_zstd_bomb_stops_at_the_limit_in_bounded_memory(tmp_path):
    """256 MiB of zeros in a few KiB of zstd: refused at the limit, memory bounded by the
    limit plus one input step's worth of output."""
    import zstandard
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 * MIB))
    assert len(bomb) < 64 * 1024
    (tmp_path / "bomb.zst").write_bytes(bomb)
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError, match=r"bomb.zst: the kernel decompresses \(zstd\) "
                                                 r"to more than the 0x400000 bytes"):
            read_kernel(str(tmp_path / "bomb.zst"), 4 * MIB, "RAM")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB + 3 * 32 * MIB


def test_zstd_without_the_module_is_one_line(tmp_path, monkeypatch):
    import sys
    (tmp_path / "k.zst").write_bytes(zstd_compress(bytes(4096)))
    monkeypatch.setitem(sys.modules, "zstandard", None)     # import fails
    with pytest.raises(InputFileError, match="k.zst: the kernel is zstd-compressed and the "
                                             "Python module zstandard is missing"):
        read_kernel(str(tmp_path / "k.zst"), MIB, "RAM")
