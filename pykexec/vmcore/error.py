"""The one error type of `pykexec.vmcore`: its message is the line a user sees."""

from pykexec.errors import PykexecError


class VmcoreError(PykexecError, ValueError):
    """A dump that cannot be read as asked: the message names the file and the problem."""
