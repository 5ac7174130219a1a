"""setup_data items: the boot protocol's linked list for what does not fit the zero page.

kexec-tools puts each item at the lowest free page at or above 1 MiB in the window and
prepends it to the list, so the last one added is the head. pykexec does the same: an
e820 extension when the capture map has more than 128 entries, and a fresh RNG seed so
the new kernel does not start with the entropy the old one may have leaked.
"""

from __future__ import annotations

from typing import Callable, Sequence, Tuple

from pykexec.arch.x86.zeropage import e820_ext_payload, setup_data_item, split_e820
from pykexec.core.layout import Layout
from pykexec.arch.x86 import bootparams as bp

SETUP_DATA_MIN_ADDR = 0x100000
RNG_SEED_BYTES = 32


def place_setup_data(layout: Layout, e820: Sequence[Tuple[int, int, int]],
                     random_bytes: Callable[[int], bytes], head: int = 0) -> int:
    """Place the setup_data items bottom-up and return the list's head address.
    `head`: an item placed before (SETUP_EFI), which the new items link to."""
    items = []
    _, overflow = split_e820(list(e820))
    if overflow:
        items.append((bp.SETUP_E820_EXT, e820_ext_payload(overflow),
                      f"SETUP_E820_EXT: {len(overflow)} e820 entries beyond the zero page's 128"))
    items.append((bp.SETUP_RNG_SEED, random_bytes(RNG_SEED_BYTES),
                  "SETUP_RNG_SEED: fresh entropy for the new kernel"))
    for typ, payload, source in items:
        blob = setup_data_item(head, typ, payload)
        head = layout.add(blob, "setup_data", source, low=SETUP_DATA_MIN_ADDR, top_down=False)
    return head
