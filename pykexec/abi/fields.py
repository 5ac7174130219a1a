"""Names and offsets of a construct Struct's fields, so code that needs one field's place
(a search, a report) takes it from the declaration instead of a literal."""

from __future__ import annotations

from typing import Tuple

from construct import Struct


def field_names(layout: Struct) -> Tuple[str, ...]:
    """The named fields of `layout`, in order (padding skipped)."""
    return tuple(sub.name for sub in layout.subcons if sub.name)


def field_offset(layout: Struct, name: str) -> int:
    """Byte offset of field `name` in `layout` (every field before it of fixed size)."""
    offset = 0
    for sub in layout.subcons:
        if sub.name == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(f"no field {name!r}")
