"""Flattened device tree (FDT, "DTB"): read, edit and write, declared with construct.

The format is the devicetree specification's (v0.4, chapter 5), all big endian:

    header (40 bytes)          magic 0xd00dfeed, sizes and offsets of the three blocks
    memory reservation map     (address, size) u64 pairs ending with (0, 0), 8-byte aligned
    structure block            u32 tokens: BEGIN_NODE name, PROP len nameoff value,
                               END_NODE, NOP, END; names and values padded to 4 bytes
    strings block              the property names, NUL-terminated, shared by offset

`Fdt.parse` gives a tree of `Node`s (properties in file order, as bytes); the editing API
works on paths ("/chosen", "/memory@40000000"); `Fdt.pack` writes version 17 with the
blocks in dtc's order and alignment. Like libfdt's read-write functions (what kexec-tools
edits with), a parsed tree keeps its strings block (new names are appended; a name reuses
any earlier NUL-terminated occurrence, also as a suffix, as dtc and libfdt look them up)
and its FDT_NOP tokens where they were (the kernel NOPs out `rng-seed` after reading it),
and edits go where libfdt puts them: so a tree read from dtc's output packs back to the
same bytes, and the machine's tree edited as kexec-tools edits it packs to kexec-tools'
bytes. Why our own code: PyPI's `fdt` is unmaintained
since 2022 and `pylibfdt` needs swig to build; the format is small enough for a
declaration like the project's other layouts.
"""

from __future__ import annotations

import bisect
import re

from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from construct import Const, ConstructError, Int32ub, Int64ub, Struct

from pykexec.abi.fields import field_offset
from pykexec.errors import PykexecError

FDT_MAGIC = 0xD00DFEED
FDT_VERSION = 17
FDT_LAST_COMP_VERSION = 16
FDT_BEGIN_NODE = 1
FDT_END_NODE = 2
FDT_PROP = 3
FDT_NOP = 4
FDT_END = 9

FdtHeader = Struct(
    "magic" / Const(FDT_MAGIC, Int32ub),
    "totalsize" / Int32ub,
    "off_dt_struct" / Int32ub,
    "off_dt_strings" / Int32ub,
    "off_mem_rsvmap" / Int32ub,
    "version" / Int32ub,
    "last_comp_version" / Int32ub,
    "boot_cpuid_phys" / Int32ub,        # version >= 2
    "size_dt_strings" / Int32ub,        # version >= 3
    "size_dt_struct" / Int32ub,         # version >= 17
)
HEADER_SIZE = FdtHeader.sizeof()
ReserveEntry = Struct("address" / Int64ub, "size" / Int64ub)

# The structure block is a run of tokens, each one Word, 4-byte aligned: FDT_BEGIN_NODE is
# followed by the node's name (NUL-terminated, padded), FDT_PROP by PropHead and the value
# (padded; the padding is kept as read: libfdt does not clear it and the kernel keeps it),
# the others by nothing. A tree has 10^2-10^5 tokens: they are read and written with
# int.from_bytes/to_bytes on these declarations' sizes and offsets, construct's per-token
# parse being 20 times slower.
Word = Int32ub
PropHead = Struct("len" / Word, "nameoff" / Word)
WORD = Word.sizeof()
TOKEN_ALIGN = WORD
PROP_LEN_AT = WORD + field_offset(PropHead, "len")
PROP_NAMEOFF_AT = WORD + field_offset(PropHead, "nameoff")
PROP_VALUE_AT = WORD + PropHead.sizeof()
PROP_HEAD_SIZE = PropHead.sizeof()

RSVMAP_ALIGN = 8
STRUCT_ALIGN = 4
MAX_DEPTH = 64          # the kernel's unflatten (FDT_MAX_DEPTH) refuses deeper trees
MAX_NAME = 1024         # a property name longer than this is damage (the spec allows 31)

Value = Union[bytes, str, int, Sequence[int]]


class FdtError(PykexecError, ValueError):
    """A device tree that cannot be read, or an edit that cannot be made (one line)."""


# Where a run of FDT_NOP tokens sits in a node: before a property, before a child node,
# or before the node's FDT_END_NODE.
NopSlot = Tuple[str, str]       # ("prop", name) | ("node", name) | ("end", "")
END_SLOT: NopSlot = ("end", "")


@dataclass(eq=False)
class Node:
    name: str                                            # "" for the root, "cpu@0"
    properties: Dict[str, bytes] = field(default_factory=dict)
    children: List["Node"] = field(default_factory=list)
    nops: Dict[NopSlot, int] = field(default_factory=dict)   # FDT_NOP words kept in place
    # Non-zero padding after a value, as read (not part of the tree: equality ignores it).
    padding: Dict[str, bytes] = field(default_factory=dict)

    def __eq__(self, other) -> bool:
        """The same tree, property and child order included (dicts alone ignore order)."""
        if not isinstance(other, Node):
            return NotImplemented
        return (self.name == other.name and self.nops == other.nops
                and list(self.properties.items()) == list(other.properties.items())
                and self.children == other.children)

    def _slot_after(self, slot: NopSlot) -> NopSlot:
        """The slot that follows `slot` once its item is gone (where libfdt's splice leaves
        the NOPs that stood before a deleted property or node)."""
        kind, name = slot
        if kind == "prop":
            props = list(self.properties)
            at = props.index(name) + 1
            if at < len(props):
                return ("prop", props[at])
        else:
            at = next(i for i, c in enumerate(self.children) if c.name == name) + 1
            if at < len(self.children):
                return ("node", self.children[at].name)
            return END_SLOT
        return ("node", self.children[0].name) if self.children else END_SLOT

    def _move_nops(self, slot: NopSlot, to: NopSlot) -> None:
        count = self.nops.pop(slot, 0)
        if count:
            self.nops[to] = self.nops.get(to, 0) + count

    def child(self, name: str) -> Optional["Node"]:
        """The child called `name`; without a unit address, the one child whose name
        before "@" is `name` (libfdt's rule)."""
        for c in self.children:
            if c.name == name:
                return c
        if "@" not in name:
            found = [c for c in self.children if c.name.split("@", 1)[0] == name]
            if len(found) == 1:
                return found[0]
        return None

    def walk(self, path: str = "") -> Iterator[Tuple[str, "Node"]]:
        """(path, node) for this node and every descendant, depth first, in file order."""
        here = path or "/"
        yield here, self
        for c in self.children:
            yield from c.walk(f"{path}/{c.name}")


def encode(value: Value) -> bytes:
    """A property value: bytes as is, a str NUL-terminated, ints as 32-bit cells."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode() + b"\0"
    if isinstance(value, int):
        value = [value]
    return b"".join(Int32ub.build(v) for v in value)


def cells(values: Iterable[int], count: int) -> bytes:
    """Numbers of `count` 32-bit cells each (an address or size with #address-cells = 2)."""
    out = b""
    for v in values:
        if v < 0 or v >> (32 * count):
            raise FdtError(f"{v:#x} does not fit in {count} cell(s)")
        out += v.to_bytes(4 * count, "big")
    return out


def decode_cells(data: bytes, count: int) -> List[int]:
    """The numbers of a property made of `count`-cell values."""
    size = 4 * count
    if count <= 0 or len(data) % size:
        raise FdtError(f"{len(data)} bytes are not a whole number of {count}-cell values")
    return [int.from_bytes(data[i:i + size], "big") for i in range(0, len(data), size)]


def _split(path: str) -> List[str]:
    if not path.startswith("/"):
        raise FdtError(f"node path {path!r} does not start with /")
    return [p for p in path.split("/") if p]


@dataclass
class Fdt:
    root: Node = field(default_factory=lambda: Node(""))
    reserved: List[Tuple[int, int]] = field(default_factory=list)   # /memreserve/ entries
    boot_cpuid_phys: int = 0
    trailing_nops: int = 0          # FDT_NOP words between the root's end and FDT_END
    # A parsed tree keeps its strings block and adds a new name when it is set (libfdt);
    # a tree built here gets its block when packed, in dtc's order.
    strings: bytes = field(default=b"", compare=False, repr=False)
    name_offsets: Dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    keep_strings: bool = field(default=False, compare=False, repr=False)

    # --- reading --------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, name: str = "device tree") -> "Fdt":
        """Read a DTB (version 16 or later; `name` names it in errors)."""
        try:
            head = FdtHeader.parse(data)
        except ConstructError:
            raise FdtError(f"{name}: not a flattened device tree (no 0xd00dfeed header)") from None
        if head.last_comp_version > FDT_VERSION or head.version < FDT_LAST_COMP_VERSION:
            raise FdtError(f"{name}: device tree version {head.version} (compatible with "
                           f"{head.last_comp_version}) is not supported")
        if head.totalsize > len(data):
            raise FdtError(f"{name}: header says {head.totalsize} bytes, the file has {len(data)}")
        struct_size = head.size_dt_struct if head.version >= 17 else head.totalsize - head.off_dt_struct
        for what, off, size in (("structure block", head.off_dt_struct, struct_size),
                                ("strings block", head.off_dt_strings, head.size_dt_strings)):
            if off < HEADER_SIZE or off + size > head.totalsize:
                raise FdtError(f"{name}: {what} {off:#x}+{size:#x} lies outside the "
                               f"{head.totalsize:#x} bytes of the tree")
        fdt = cls(boot_cpuid_phys=head.boot_cpuid_phys)
        off = head.off_mem_rsvmap
        if off < HEADER_SIZE:     # libfdt's fdt_check_header rule
            raise FdtError(f"{name}: the memory reservation map at {off:#x} lies inside the "
                           f"header")
        while True:
            if off + ReserveEntry.sizeof() > head.totalsize:
                raise FdtError(f"{name}: the memory reservation map has no end entry")
            entry = ReserveEntry.parse(data[off:off + ReserveEntry.sizeof()])
            off += ReserveEntry.sizeof()
            if entry.address == 0 and entry.size == 0:
                break
            fdt.reserved.append((entry.address, entry.size))
        strings = data[head.off_dt_strings:head.off_dt_strings + head.size_dt_strings]
        block = data[head.off_dt_struct:head.off_dt_struct + struct_size]
        fdt.strings = bytes(strings)
        fdt.keep_strings = True
        fdt.root, fdt.trailing_nops = _read_structure(block, fdt.strings, fdt.name_offsets, name)
        return fdt

    # --- editing --------------------------------------------------------------------------

    def node(self, path: str) -> Node:
        """The node at `path`; FdtError if there is none."""
        n = self.root
        for part in _split(path):
            nxt = n.child(part)
            if nxt is None:
                raise FdtError(f"device tree has no node {path}")
            n = nxt
        return n

    def find(self, path: str) -> Optional[Node]:
        try:
            return self.node(path)
        except FdtError:
            return None

    def get(self, path: str, prop: str) -> Optional[bytes]:
        """The value of property `prop` of node `path`, None if absent (node or property)."""
        n = self.find(path)
        return None if n is None else n.properties.get(prop)

    def get_string(self, path: str, prop: str) -> Optional[str]:
        v = self.get(path, prop)
        if v is None:
            return None
        if not v.endswith(b"\0"):
            raise FdtError(f"{path}:{prop} is not a NUL-terminated string")
        return v[:-1].decode("utf-8", "replace")

    def get_cells(self, path: str, prop: str, count: int = 1) -> Optional[List[int]]:
        v = self.get(path, prop)
        return None if v is None else decode_cells(v, count)

    def set(self, path: str, prop: str, value: Value) -> None:
        """Set `prop` of node `path`: a replaced property keeps its place, a new one goes
        first (before any NOPs there), as libfdt's fdt_setprop puts it (so our edits order
        a tree as kexec-tools')."""
        node = self.node(path)
        if self.keep_strings and prop not in self.name_offsets:
            key = prop.encode() + b"\0"
            at = self.strings.find(key)
            if at < 0:
                at = len(self.strings)
                self.strings += key
            self.name_offsets[prop] = at
        node.padding.pop(prop, None)
        if prop in node.properties:
            node.properties[prop] = encode(value)
        else:
            node.properties = {prop: encode(value), **node.properties}

    def delete(self, path: str, prop: str) -> bool:
        """Remove `prop` from node `path`; whether it was there. NOPs before it stay where
        they were, before whatever follows (libfdt's fdt_delprop)."""
        node = self.node(path)
        if prop not in node.properties:
            return False
        node._move_nops(("prop", prop), node._slot_after(("prop", prop)))
        del node.properties[prop]
        node.padding.pop(prop, None)
        return True

    def add_node(self, path: str) -> Node:
        """The node at `path`, created if missing: as the first child of its parent, where
        libfdt's fdt_add_subnode puts it."""
        parts = _split(path)
        if not parts:
            return self.root
        parent = self.node("/" + "/".join(parts[:-1]))
        existing = next((c for c in parent.children if c.name == parts[-1]), None)
        if existing is not None:
            return existing
        new = Node(parts[-1])
        # libfdt skips the parent's properties and NOPs: NOPs before the old first child
        # (or before the end) now stand before the new one.
        first = ("node", parent.children[0].name) if parent.children else END_SLOT
        parent._move_nops(first, ("node", new.name))
        parent.children.insert(0, new)
        return new

    def delete_node(self, path: str) -> bool:
        parts = _split(path)
        if not parts:
            raise FdtError("cannot delete the root node")
        parent = self.find("/" + "/".join(parts[:-1]))
        target = parent.child(parts[-1]) if parent else None
        if target is None:
            return False
        parent._move_nops(("node", target.name), parent._slot_after(("node", target.name)))
        parent.children.remove(target)
        return True

    def root_cells(self) -> Tuple[int, int]:
        """The root's (#address-cells, #size-cells), with the specification's defaults (2, 1)."""
        a = self.get_cells("/", "#address-cells")
        s = self.get_cells("/", "#size-cells")
        return (a[0] if a else 2, s[0] if s else 1)

    # --- writing --------------------------------------------------------------------------

    def pack(self, pad: int = 0) -> bytes:
        """The DTB: version 17, blocks in dtc's order, `pad` free bytes at the end."""
        strings = bytearray(self.strings)
        offsets: Dict[str, int] = dict(self.name_offsets)

        def nameoff(prop: str) -> int:
            if prop not in offsets:
                key = prop.encode() + b"\0"
                at = strings.find(key)
                if at < 0:
                    at = len(strings)
                    strings.extend(key)
                offsets[prop] = at
            return offsets[prop]

        parts: List[bytes] = []
        put = parts.append
        nop = _word(FDT_NOP)
        begin, prop_tok, end_node = _word(FDT_BEGIN_NODE), _word(FDT_PROP), _word(FDT_END_NODE)

        def emit(n: Node) -> None:
            raw = n.name.encode() + b"\0"
            put(begin + raw + bytes(-len(raw) % TOKEN_ALIGN))
            for prop, value in n.properties.items():
                put(nop * n.nops.get(("prop", prop), 0))
                pad = n.padding.get(prop)
                if pad is None or len(pad) != -len(value) % TOKEN_ALIGN:
                    pad = bytes(-len(value) % TOKEN_ALIGN)
                put(prop_tok + _prop_head(len(value), nameoff(prop)) + value + pad)
            for c in n.children:
                put(nop * n.nops.get(("node", c.name), 0))
                emit(c)
            put(nop * n.nops.get(END_SLOT, 0))
            put(end_node)

        emit(self.root)
        put(nop * self.trailing_nops)
        put(_word(FDT_END))
        structure = b"".join(parts)
        rsvmap = b"".join(ReserveEntry.build(dict(address=a, size=s))
                          for a, s in [*self.reserved, (0, 0)])
        off_rsvmap = _align(HEADER_SIZE, RSVMAP_ALIGN)
        off_struct = _align(off_rsvmap + len(rsvmap), STRUCT_ALIGN)
        off_strings = off_struct + len(structure)
        total = off_strings + len(strings) + pad
        header = FdtHeader.build(dict(
            totalsize=total, off_dt_struct=off_struct, off_dt_strings=off_strings,
            off_mem_rsvmap=off_rsvmap, version=FDT_VERSION,
            last_comp_version=FDT_LAST_COMP_VERSION, boot_cpuid_phys=self.boot_cpuid_phys,
            size_dt_strings=len(strings), size_dt_struct=len(structure)))
        out = bytearray(total)
        out[:HEADER_SIZE] = header
        out[off_rsvmap:off_rsvmap + len(rsvmap)] = rsvmap
        out[off_struct:off_strings] = structure
        out[off_strings:off_strings + len(strings)] = strings
        return bytes(out)


def _align(value: int, to: int) -> int:
    return -(-value // to) * to


def _word(value: int) -> bytes:
    return value.to_bytes(WORD, "big")


def _prop_head(length: int, nameoff: int) -> bytes:
    """PropHead's bytes (its fields placed at their declared offsets)."""
    head = bytearray(PROP_HEAD_SIZE)
    for at, value in ((PROP_LEN_AT, length), (PROP_NAMEOFF_AT, nameoff)):
        head[at - WORD:at] = _word(value)
    return bytes(head)


def _read_structure(block: bytes, strings: bytes, name_offsets: Dict[str, int],
                    name: str) -> Tuple[Node, int]:
    """The node tree of a structure block and the NOP words after its root (one root; ends
    with FDT_END); NOP runs are kept in the slots of `Node.nops`. Time linear in the block:
    each byte is read once, and a property's name ends at the first NUL after its offset,
    found by bisection in the strings block's NUL positions (at most MAX_NAME bytes)."""
    stack: List[Node] = []
    root: Optional[Node] = None
    nuls = [m.start() for m in re.finditer(b"\0", strings)]
    names: Dict[int, str] = {}
    pending = 0                     # NOP words not yet given a slot
    after_root = 0
    size = len(block)
    pos = 0

    def settle(slot: NopSlot) -> None:
        nonlocal pending
        if pending:
            node = stack[-1]
            node.nops[slot] = node.nops.get(slot, 0) + pending
            pending = 0

    def bad() -> FdtError:
        return FdtError(f"{name}: bad token at structure offset {start:#x}")

    while True:
        start = pos
        if pos + WORD > size:
            raise FdtError(f"{name}: the structure block ends without FDT_END")
        token = int.from_bytes(block[pos:pos + WORD], "big")
        pos += WORD
        if token == FDT_NOP:
            if root is not None and not stack:
                after_root += 1
            else:
                pending += 1
        elif token == FDT_BEGIN_NODE:
            end = block.find(b"\0", pos)
            if end < 0:
                raise bad()
            try:
                node = Node(block[pos:end].decode("utf-8"))
            except UnicodeDecodeError:
                raise bad() from None
            pos = _align(end + 1, TOKEN_ALIGN)
            if stack:
                if len(stack) >= MAX_DEPTH:
                    raise FdtError(f"{name}: nodes nested deeper than {MAX_DEPTH} levels at "
                                   f"structure offset {start:#x}")
                settle(("node", node.name))
                stack[-1].children.append(node)
            elif root is None:
                if pending:
                    raise FdtError(f"{name}: FDT_NOP before the root node")
                root = node
            else:
                raise FdtError(f"{name}: a second root node at structure offset {start:#x}")
            stack.append(node)
        elif token == FDT_PROP:
            if start + PROP_VALUE_AT > size:
                raise bad()
            length = int.from_bytes(block[start + PROP_LEN_AT:start + PROP_LEN_AT + WORD], "big")
            off = int.from_bytes(block[start + PROP_NAMEOFF_AT:start + PROP_NAMEOFF_AT + WORD],
                                 "big")
            value_at = start + PROP_VALUE_AT
            pos = _align(value_at + length, TOKEN_ALIGN)
            if pos > size:
                raise bad()
            if not stack:
                raise FdtError(f"{name}: a property outside any node at structure offset {start:#x}")
            prop = names.get(off)
            if prop is None:
                at = bisect.bisect_left(nuls, off)
                if off >= len(strings) or at == len(nuls):
                    raise FdtError(f"{name}: property name offset {off:#x} lies outside "
                                   f"the strings block")
                if nuls[at] - off > MAX_NAME:
                    raise FdtError(f"{name}: property name at strings offset {off:#x} is longer "
                                   f"than {MAX_NAME} bytes")
                prop = names[off] = strings[off:nuls[at]].decode("utf-8", "replace")
                name_offsets.setdefault(prop, off)
            settle(("prop", prop))
            node = stack[-1]
            node.properties[prop] = block[value_at:value_at + length]
            pad = block[value_at + length:pos]
            if any(pad):
                node.padding[prop] = pad
            else:
                node.padding.pop(prop, None)
        elif token == FDT_END_NODE:
            if not stack:
                raise FdtError(f"{name}: FDT_END_NODE without a node at structure offset {start:#x}")
            settle(END_SLOT)
            stack.pop()
        elif token == FDT_END:
            if stack or root is None:
                raise FdtError(f"{name}: FDT_END inside an open node")
            return root, after_root
        else:
            raise FdtError(f"{name}: unknown token {token:#x} at structure offset {start:#x}")
