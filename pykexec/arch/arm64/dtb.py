"""The device tree the new arm64 kernel boots with: the machine's (or `--dtb FILE`'s) with
/chosen edited, and the console UART it names.

What a loader changes, in kexec-tools' order (its arm64 setup_2nd_dtb and dt-ops; libfdt
puts a new property first in its node, a replaced one keeps its place, and the tree keeps
its strings block and NOPs, so the result is kexec-tools' DTB byte for byte):

1. `bootargs` = the command line (left as it is when the command line is empty).
2. `kaslr-seed`, when the tree has one of 8 bytes: the running kernel wiped it to 0 after
   use (a non-zero one is refused, as kexec-tools refuses it); it gets 8 fresh random
   bytes (0 when the random source fails: the new kernel then runs without KASLR).
   `rng-seed`, when a tree still has one (the kernel NOPs it out of its own tree, so a
   `--dtb` file's): the same number of fresh bytes, never the stale ones (kexec-tools
   leaves it; see docs/differences.md).
3. Crash loads: `linux,elfcorehdr` = <address size> and `linux,usable-memory-range` =
   the crash regions, highest first (the low one last, as the kernel expects), each in the
   root's #address-cells/#size-cells (the kernel's defaults 1 and 1 when absent).
4. `linux,initrd-start` and `-end` as 64-bit values, or both removed when there is no
   initrd (the first kernel's would point at memory the new one does not own).

Every value has a size fixed by the tree and the arguments' presence, never by the
addresses: a loader packs once with zero addresses to learn the size, places the DTB,
and packs again.
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

from pykexec.arch.arm64.fdt import Fdt, FdtError, Node, cells, decode_cells
from pykexec.core.cmdline import as_bytes, from_bytes, printable

CHOSEN = "/chosen"
KASLR_SEED = "kaslr-seed"
KASLR_SEED_SIZE = 8
RNG_SEED = "rng-seed"
INITRD_START = "linux,initrd-start"
INITRD_END = "linux,initrd-end"
ELFCOREHDR = "linux,elfcorehdr"
USABLE_MEMORY = "linux,usable-memory-range"
INITRD_CELLS = 2                     # kexec-tools writes the initrd bounds as 64-bit values
ROOT_CELLS_DEFAULT = (1, 1)          # the kernel's (and kexec-tools') root defaults
MAX_BOOT_DTB = 2 << 20               # booting.rst: the DTB must not exceed 2 MiB
PL011_COMPATIBLE = "arm,pl011"


class DtbEdit(NamedTuple):
    """One property the loader changed, for plans and views (`shown` is display text)."""

    node: str
    property: str
    action: str                      # "set" | "delete"
    shown: str


class BootDtb(NamedTuple):
    data: bytes
    edits: Tuple[DtbEdit, ...]
    bootargs: str     # /chosen/bootargs in the new tree: the command line the kernel sees


def _show_cells(value: bytes) -> str:
    return "<" + " ".join(f"{v:#x}" for v in decode_cells(value, 1)) + ">"


def _root_cells(fdt: Fdt, source: str) -> Tuple[int, int]:
    out = []
    for prop, default in zip(("#address-cells", "#size-cells"), ROOT_CELLS_DEFAULT):
        value = fdt.get("/", prop)
        if value is None:
            out.append(default)
        elif len(value) != 4 or not 1 <= int.from_bytes(value, "big") <= 4:
            raise FdtError(f"{source}: the root's {prop} is not one cell of 1 to 4")
        else:
            out.append(int.from_bytes(value, "big"))
    return out[0], out[1]


def _range_cells(source: str, what: str, ranges: Sequence[Tuple[int, int]],
                 address_cells: int, size_cells: int) -> bytes:
    out = b""
    for addr, size in ranges:
        try:
            out += cells([addr], address_cells) + cells([size], size_cells)
        except FdtError:
            raise FdtError(f"{source}: {what} {addr:#x}+{size:#x} does not fit the root's "
                           f"#address-cells = {address_cells}, #size-cells = {size_cells}") from None
    return out


def boot_dtb(base: bytes, source: str, *, cmdline: str,
             initrd: Optional[Tuple[int, int]],
             elfcorehdr: Optional[Tuple[int, int]] = None,
             usable_memory: Tuple[Tuple[int, int], ...] = (),
             random_bytes: Callable[[int], bytes]) -> BootDtb:
    """The new kernel's DTB from `base` (named `source` in errors): see the module's
    docstring for the edits. `initrd` is (start, end) or None; `elfcorehdr` and each of
    `usable_memory` are (address, size). `random_bytes(n)` gives n fresh bytes (an OSError
    from it gives zeros, as kexec-tools does when getrandom fails)."""
    fdt = Fdt.parse(base, source)
    edits: List[DtbEdit] = []

    def chosen() -> Node:
        return fdt.add_node(CHOSEN)

    def put(prop: str, value: bytes, shown: str) -> None:
        chosen()
        fdt.set(CHOSEN, prop, value)
        edits.append(DtbEdit(CHOSEN, prop, "set", shown))

    def fresh(count: int) -> bytes:
        try:
            data = random_bytes(count)
        except OSError:
            return bytes(count)
        if len(data) != count:
            raise ValueError(f"random_bytes({count}) gave {len(data)} bytes")
        return data

    if cmdline:
        put("bootargs", as_bytes(cmdline) + b"\0", f'"{printable(cmdline)}"')
    address_cells, size_cells = _root_cells(fdt, source)
    core = _range_cells(source, "the ELF core header", [elfcorehdr] if elfcorehdr else [],
                        address_cells, size_cells)
    usable = _range_cells(source, "the usable memory range", sorted(usable_memory, reverse=True),
                          address_cells, size_cells)

    seed = fdt.get(CHOSEN, KASLR_SEED)
    if seed is not None and len(seed) == KASLR_SEED_SIZE:
        if any(seed):
            raise FdtError(f"{source}: /chosen/kaslr-seed is not 0 (the running kernel wipes "
                           f"it after use; a tree that still has one is not this boot's)")
        put(KASLR_SEED, fresh(KASLR_SEED_SIZE), f"{KASLR_SEED_SIZE} random bytes")
    stale = fdt.get(CHOSEN, RNG_SEED)
    if stale:
        put(RNG_SEED, fresh(len(stale)), f"{len(stale)} random bytes")

    if elfcorehdr is not None:
        put(ELFCOREHDR, core, _show_cells(core))
    if usable_memory:
        put(USABLE_MEMORY, usable, _show_cells(usable))

    if initrd is not None:
        start, end = initrd
        for prop, value in ((INITRD_START, start), (INITRD_END, end)):
            data = cells([value], INITRD_CELLS)
            put(prop, data, _show_cells(data))
    elif fdt.find(CHOSEN) is not None:
        for prop in (INITRD_START, INITRD_END):
            if fdt.delete(CHOSEN, prop):
                edits.append(DtbEdit(CHOSEN, prop, "delete", ""))

    data = fdt.pack()
    if len(data) > MAX_BOOT_DTB:
        raise FdtError(f"{source}: the new kernel's device tree is {len(data)} bytes, more "
                       f"than the {MAX_BOOT_DTB >> 20} MiB the arm64 boot protocol allows")
    kept = fdt.get(CHOSEN, "bootargs") or b""
    return BootDtb(data, tuple(edits), from_bytes(kept.split(b"\0", 1)[0]))


# --- the console ------------------------------------------------------------------------------

def _cells_of(node: Node, prop: str, default: int) -> int:
    value = node.properties.get(prop)
    if value is None:
        return default
    if len(value) != 4:
        raise FdtError(f"{prop} is not one cell")
    return int.from_bytes(value, "big")


def _node_path(fdt: Fdt, stdout_path: str) -> Optional[List[Node]]:
    """The nodes from the root to the one `stdout-path` names (a path or an alias)."""
    spec = stdout_path.split(":", 1)[0]
    if not spec.startswith("/"):
        alias = fdt.get_string("/aliases", spec) if fdt.find("/aliases") else None
        if alias is None or not alias.startswith("/"):
            return None
        spec = alias
    chain = [fdt.root]
    for part in (p for p in spec.split("/") if p):
        nxt = chain[-1].child(part)
        if nxt is None:
            return None
        chain.append(nxt)
    return chain


def console_uart(base: bytes) -> Optional[int]:
    """The physical MMIO base of the PL011 UART /chosen/stdout-path names, or None (no
    stdout-path, not a PL011, or an address that no bus `ranges` translates). An
    unreadable tree gives FdtError."""
    fdt = Fdt.parse(base)
    try:
        stdout = (fdt.get_string(CHOSEN, "stdout-path")
                  or fdt.get_string(CHOSEN, "linux,stdout-path"))
    except FdtError:
        return None             # not a string: no console named
    if not stdout:
        return None
    try:
        chain = _node_path(fdt, stdout)
    except FdtError:
        return None
    if chain is None or len(chain) < 2:
        return None
    uart = chain[-1]
    compatible = uart.properties.get("compatible", b"").split(b"\0")
    if PL011_COMPATIBLE.encode() not in compatible:
        return None
    try:
        parent = chain[-2]
        a = _cells_of(parent, "#address-cells", 2)
        s = _cells_of(parent, "#size-cells", 1)
        reg = uart.properties.get("reg", b"")
        if a < 1 or len(reg) < 4 * (a + s):
            return None
        address = int.from_bytes(reg[:4 * a], "big")
        # Up through each bus to the root: an absent `ranges` means no translation exists,
        # an empty one the identity, else the (child, parent, size) window holding it.
        for depth in range(len(chain) - 2, 0, -1):
            bus, above = chain[depth], chain[depth - 1]
            ranges = bus.properties.get("ranges")
            if ranges is None:
                return None
            if not ranges:
                continue
            ca = _cells_of(bus, "#address-cells", 2)
            cs = _cells_of(bus, "#size-cells", 1)
            pa = _cells_of(above, "#address-cells", 2)
            step = 4 * (ca + pa + cs)
            for at in range(0, len(ranges) - step + 1, step):
                child = int.from_bytes(ranges[at:at + 4 * ca], "big")
                mapped = int.from_bytes(ranges[at + 4 * ca:at + 4 * (ca + pa)], "big")
                size = int.from_bytes(ranges[at + 4 * (ca + pa):at + step], "big")
                if child <= address < child + size:
                    address = mapped + address - child
                    break
            else:
                return None
    except FdtError:
        return None
    return address


__all__ = ["BootDtb", "DtbEdit", "boot_dtb", "console_uart", "FdtError"]
