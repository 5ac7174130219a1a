"""pykexec: a Python kexec loader (kexec-tools compatible), built for kdump."""

__version__ = "0.1.0"
