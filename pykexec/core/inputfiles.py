"""The one reader for the files a user names (kernel, initrd): regular files only, sized
before they are read, and never read beyond what the destination can hold.

Every input file goes through `open_input`: it opens without blocking (a FIFO with no
writer would otherwise hang the open), checks with fstat that the file is a regular,
non-empty file, and only then hands out the descriptor. `read_input` adds the size
limit the caller gives (the crash region for -p, RAM for a normal load), checked on
fstat's size before a single byte is read, so a 2 GiB sparse file is refused by its size.
A compressed kernel is decompressed (`decompressed_kernel`) in bounded steps and stops at
the same limit, so a decompression bomb costs at most the limit.

Exit statuses follow kexec-tools: a file kexec_load's reader cannot use is its die()
("Cannot open", "Cannot read": exit 1); a file kexec_file_load cannot open is -1 (255).
"""

from __future__ import annotations

import os
import stat
from typing import Iterator, Optional, Tuple

from pykexec.core.files import NotRegularFile, file_kind, open_regular, read_upto
from pykexec.errors import FatalLoadError

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"   # a zstd frame (RFC 8878); skippable frames are not kernels
CHUNK = 1 << 20   # decompression step: memory above the limit is at most one step
INPUT_STEP = 1 << 24   # read(2) size for kernels and initrds


class InputFileError(FatalLoadError):
    """An input file that cannot be used; the message names it. Exit 1 (kexec-tools' die)."""


def open_input(path: Optional[str], what: str, open_status: int = 1) -> int:
    """An O_RDONLY descriptor of the regular, non-empty file `path`.

    `open_status` is the exit status when the file cannot be opened at all (1 for
    kexec_load's reader, 255 for kexec_file_load's open); every other refusal is 1.
    """
    if not path:
        raise InputFileError(f"Cannot read the {what}: empty file name ({what} path '')")
    try:
        fd, st = open_regular(path)
    except NotRegularFile as err:
        raise InputFileError(f"{path}: Cannot read the {what}: {err.kind}, not a regular "
                             "file") from None
    except OSError as err:
        try:   # a socket cannot be opened at all: say what it is, as for the others
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise InputFileError(f"{path}: Cannot read the {what}: {file_kind(mode)}, not a "
                                 "regular file") from None
        error = InputFileError(f"{path}: cannot open the {what}: {err.strerror}")
        error.exit_status = open_status
        raise error from None
    try:
        if st.st_size == 0:
            raise InputFileError(f"{path}: Cannot read the {what}: the file is empty (size 0)")
        # Reads of a regular file never block; clear the flag for whoever reads next.
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def input_size(fd: int) -> int:
    return os.fstat(fd).st_size


def _too_big(path: str, what: str, size: int, limit: int, limit_what: str) -> InputFileError:
    return InputFileError(f"{path}: the {what} is {size:#x} bytes, more than the {limit:#x} "
                          f"bytes of {limit_what}")


def read_fd(fd: int, path: str, what: str, limit: int, limit_what: str) -> bytes:
    """All of the regular file behind `fd`, refused by its size before any read."""
    size = input_size(fd)
    if size > limit:
        raise _too_big(path, what, size, limit, limit_what)
    # positional reads: the descriptor may go on to kexec_file_load as it is. One read
    # allocates the result once and the kernel fills it (no chunks joined into a copy);
    # steps only for what a short read leaves.
    data = os.pread(fd, size, 0)
    if 0 < len(data) < size:
        data += read_upto(fd, size - len(data), INPUT_STEP, offset=len(data))
    if len(data) < size:
        raise InputFileError(f"{path}: Cannot read the {what}: it shrank to {len(data):#x} "
                             f"bytes while being read ({size:#x} expected)")
    return data


def read_input(path: Optional[str], what: str, limit: int, limit_what: str) -> bytes:
    """The whole of `path`, at most `limit` bytes (see the module doc)."""
    fd = open_input(path, what)
    try:
        return read_fd(fd, path, what, limit, limit_what)
    finally:
        os.close(fd)


def compression_of(head: bytes) -> Optional[str]:
    """"gzip", "xz" or "zstd" for a whole-file-compressed kernel (the formats kexec-tools
    HEAD reads; 2.0.25 reads gzip and xz only)."""
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head[:6] == XZ_MAGIC:
        return "xz"
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    return None


# zstd input step: a zstd block of a few bytes may stand for 128 KiB (an RLE block), so one
# step of 1 KiB yields at most about 32 MiB before the limit is checked again
ZSTD_INPUT_STEP = 1 << 10


def _decompressed_chunks(kind: str, data: bytes, path: str, what: str) -> Iterator[bytes]:
    """`data`'s decompressed bytes, a bounded piece at a time; EOFError when the data ends
    inside a stream (a cut file must not pass for a shorter kernel)."""
    import io
    if kind in ("gzip", "xz"):
        import gzip
        import lzma
        with (gzip.GzipFile(fileobj=io.BytesIO(data)) if kind == "gzip"
              else lzma.LZMAFile(io.BytesIO(data))) as src:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    return
                yield chunk
    try:
        import zstandard     # the zstd library Debian packages (python3-zstandard)
    except ImportError:
        raise InputFileError(f"{path}: the {what} is zstd-compressed and the Python module "
                             "zstandard is missing (apt install python3-zstandard)") from None
    view, pos = memoryview(data), 0
    frame = zstandard.ZstdDecompressor().decompressobj()
    while pos < len(view):
        piece = view[pos:pos + ZSTD_INPUT_STEP]
        pos += len(piece)
        yield frame.decompress(piece)
        if frame.eof:                 # a kernel compressed in several frames is one file
            rest = frame.unused_data
            if not rest and pos == len(view):
                return
            view, pos = memoryview(rest + view[pos:].tobytes()), 0
            frame = zstandard.ZstdDecompressor().decompressobj()
    raise EOFError("the zstd data ends inside a frame")


def decompress_bounded(data: bytes, kind: str, path: str, what: str, limit: int,
                       limit_what: str) -> bytes:
    """`data` decompressed in bounded steps, refused as soon as the output passes `limit`."""
    import lzma
    import zlib
    # zlib.error: a damaged deflate block inside a well-formed gzip header
    errors: tuple = (OSError, EOFError, lzma.LZMAError, ValueError, zlib.error)
    if kind == "zstd":
        try:
            import zstandard
            errors += (zstandard.ZstdError,)
        except ImportError:
            pass                      # _decompressed_chunks words the refusal
    out = bytearray()
    try:
        for chunk in _decompressed_chunks(kind, data, path, what):
            out += chunk
            if len(out) > limit:
                raise InputFileError(f"{path}: the {what} decompresses ({kind}) to more "
                                     f"than the {limit:#x} bytes of {limit_what}")
    except InputFileError:
        raise
    except errors as err:
        # kexec-tools then reads the file raw and no format knows it: "Cannot determine
        # the file type" (exit 255)
        error = InputFileError(f"{path}: cannot determine the file type of the {what}: damaged "
                               f"{kind} data ({err})")
        error.exit_status = 255
        raise error from None
    return bytes(out)


# The last kernel read, by (path, limits, file identity): a dry run reads the kernel both for
# kexec_file_load's check and for the plan; the second read of an unchanged file is free.
_last_kernel: Tuple[Optional[tuple], bytes] = (None, b"")


def read_kernel(path: Optional[str], limit: int, limit_what: str) -> bytes:
    """The kernel file, decompressed if it is a gzip, xz or zstd file (as kexec-tools'
    kexec_load path reads it), within `limit` bytes before and after decompression."""
    global _last_kernel
    try:
        st = os.stat(path)
        key = (path, limit, limit_what, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except (OSError, TypeError, ValueError):
        key = None                      # read_input words the refusal
    if key is not None and _last_kernel[0] == key:
        return _last_kernel[1]
    data = read_input(path, "kernel", limit, limit_what)
    kind = compression_of(data[:6])
    if kind is not None:
        data = decompress_bounded(data, kind, path, "kernel", limit, limit_what)
    _last_kernel = (key, data)
    return data


def input_limit(request, machine) -> Tuple[int, str]:
    """How many bytes an input file may have: what its destination can hold at most (the
    crash region for -p, clamped by --mem-min/--mem-max; all RAM otherwise)."""
    region = machine.crash_region if request.crash else None
    if region is not None:
        start = max(region.start, request.mem_min)
        end = region.end if request.mem_max is None else min(region.end, request.mem_max + 1)
        if end > start:
            return end - start, f"the crash region's window {start:#x}-{end - 1:#x}"
    return sum(r.size for r in machine.ram), "RAM"
