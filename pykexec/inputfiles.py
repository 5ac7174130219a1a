"""Reading the files a user names (kernel, initrd): one error line naming the file."""

from __future__ import annotations

from pykexec.errors import LoadError


def read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise LoadError(f"{path}: cannot read the {what}: {err.strerror}") from None
