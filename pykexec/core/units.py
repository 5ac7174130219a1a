"""Sizes and ranges written for people, one way for every report."""

from __future__ import annotations


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB', 4096 -> '4 KiB', 100 -> '100 B'."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024 or unit == "EiB":
            if value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def hex_range(start: int, end: int) -> str:
    """Half-open [start, end) written the /proc/iomem way: first-last inclusive."""
    return f"{start:#x}-{max(end - 1, start):#x}"
