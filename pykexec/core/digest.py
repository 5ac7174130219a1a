"""What purgatory checks before it jumps: the SHA-256 of every other segment.

Purgatory hashes each region's memory in order and compares with the digest; the kernel
zero-fills memsz beyond bufsz, so the expected digest covers those zeros too.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Collection, Iterable, List, Tuple

from pykexec.core.plan import Segment

SHA256_REGIONS_MAX = 16


def hashed_segments(segments: Iterable[Segment], purgatory_base: int,
                    unhashed_kinds: Collection[str] = ()) -> List[Segment]:
    """The segments purgatory checks: all but itself (it is patched with the digest) and
    those of `unhashed_kinds`, which the kernel may rewrite after the load (the elfcorehdr
    under crash hotplug)."""
    return [s for s in segments if s.mem != purgatory_base and s.kind not in unhashed_kinds]


def sha256_regions(segments: Iterable[Segment]) -> Tuple[bytes, bytes, List[Tuple[int, int]]]:
    """(regions table bytes, digest, regions) for `segments` in ascending address order."""
    ordered = sorted(segments, key=lambda s: s.mem)
    if len(ordered) > SHA256_REGIONS_MAX:
        raise ValueError(f"{len(ordered)} segments to verify; purgatory holds {SHA256_REGIONS_MAX}")
    h = hashlib.sha256()
    regions = []
    zero = memoryview(bytes(1 << 20))   # views of one zero buffer: no slice copied
    for seg in ordered:
        h.update(seg.data)
        pad = seg.memsz - seg.bufsz
        while pad > 0:
            chunk = min(pad, len(zero))
            h.update(zero[:chunk])
            pad -= chunk
        regions.append((seg.mem, seg.memsz))
    table = b"".join(struct.pack("<QQ", mem, size) for mem, size in regions)
    table += bytes(16 * SHA256_REGIONS_MAX - len(table))
    return table, h.digest(), regions
