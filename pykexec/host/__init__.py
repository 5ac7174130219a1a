"""Talking to the running kernel: kexec syscalls and their errors."""
