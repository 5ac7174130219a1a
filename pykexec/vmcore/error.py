"""The one error type of `pykexec.vmcore`: its message is the line a user sees."""


class VmcoreError(ValueError):
    """A dump that cannot be read as asked: the message names the file and the problem."""
