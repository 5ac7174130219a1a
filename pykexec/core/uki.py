"""Unified kernel images (UKI): a PE file whose sections carry the kernel and its defaults.

systemd's UAPI "Unified Kernel Image" specification names the sections: `.linux` the
kernel image, `.initrd` an initrd, `.cmdline` the command line (`.osrel`, `.uname`,
`.dtb`, `.splash`, ... are not for a loader). The EFI stub around them (systemd-stub) boots
them under firmware; a kexec loader unwraps them instead.

What pykexec does with a UKI, for every syscall (kexec-tools 2.0.30 unwraps it for
kexec_file_load only, and ignores `.cmdline`; docs/differences.md):
- `.linux` is the kernel, probed by the architecture's formats as any kernel file;
- `.initrd` is the initrd unless `--initrd`/`--ramdisk` names one;
- `.cmdline` is the command line unless `--append`/`--command-line` or `--reuse-cmdline`
  gives one.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from construct import ConstructError

from pykexec.abi.pe import CoffHeader, DosHeader, SectionHeader
from pykexec.errors import FatalLoadError

LINUX_SECTION = ".linux"
INITRD_SECTION = ".initrd"
CMDLINE_SECTION = ".cmdline"
SECTION_SIZE = SectionHeader.sizeof()
COFF_SIZE = CoffHeader.sizeof()


class UkiError(FatalLoadError):
    """A PE file with a `.linux` section that cannot be unwrapped; the message names it."""


class UkiSection(NamedTuple):
    name: str
    offset: int        # in the file
    size: int          # the section's real size (VirtualSize)


class Uki(NamedTuple):
    """What a loader takes from a UKI; `sections` lists every section, for views."""

    linux: bytes
    initrd: Optional[bytes]
    cmdline: Optional[str]
    sections: Tuple[UkiSection, ...]

    def cmdline_for(self, request) -> Optional[str]:
        """The .cmdline text when this load takes it: the user gave no command line."""
        return self.cmdline if uses_embedded_cmdline(request) else None

    def initrd_for(self, request) -> Optional[bytes]:
        """The .initrd bytes when this load takes them: the user named no initrd."""
        return self.initrd if uses_embedded_initrd(request) else None


def _sections(data: bytes) -> Optional[Tuple[UkiSection, ...]]:
    """The section table of a PE file, or None when `data` is no PE file (or a truncated
    one: then it is not a UKI either, and the formats will say what it is)."""
    try:
        pe_offset = DosHeader.parse(data).pe_offset
        coff = CoffHeader.parse(data[pe_offset:pe_offset + COFF_SIZE])
    except ConstructError:
        return None
    table = pe_offset + COFF_SIZE + coff.size_of_optional_header
    if table + coff.number_of_sections * SECTION_SIZE > len(data):
        return None
    out = []
    for i in range(coff.number_of_sections):
        at = table + i * SECTION_SIZE
        head = SectionHeader.parse(data[at:at + SECTION_SIZE])
        name = head.name.rstrip(b"\0").decode("latin-1")
        # VirtualSize is the section's size; SizeOfRawData only rounds it up in the file.
        # A section larger than its file bytes would be zero-filled by a PE loader; no
        # kernel, initrd or command line is stored so: its size is then the raw data's.
        out.append(UkiSection(name, head.pointer_to_raw_data,
                              min(head.virtual_size, head.size_of_raw_data)
                              if head.virtual_size else head.size_of_raw_data))
    return tuple(out)


HEAD_SIZE = 1 << 16    # enough of a file for its PE section table (which precedes the data)


def is_uki_head(head: bytes) -> bool:
    """The file that starts with `head` (HEAD_SIZE bytes of it) is a PE file with `.linux`."""
    sections = _sections(head)
    return sections is not None and any(s.name == LINUX_SECTION for s in sections)


def parse_uki(data: bytes, path: str) -> Optional[Uki]:
    """The UKI in `data`, or None when it is not one (no PE file, or no `.linux` section).
    UkiError when a section it needs lies outside the file or is repeated."""
    sections = _sections(data)
    if sections is None or not any(s.name == LINUX_SECTION for s in sections):
        return None
    found = {}
    for s in sections:
        if s.name not in (LINUX_SECTION, INITRD_SECTION, CMDLINE_SECTION):
            continue
        if s.name in found:
            raise UkiError(f"{path}: the unified kernel image has two {s.name} sections")
        if s.offset + s.size > len(data):
            raise UkiError(f"{path}: the unified kernel image's {s.name} section "
                           f"({s.offset:#x}+{s.size:#x}) runs past the end of the file "
                           f"({len(data):#x})")
        found[s.name] = data[s.offset:s.offset + s.size]
    if not found[LINUX_SECTION]:
        raise UkiError(f"{path}: the unified kernel image's {LINUX_SECTION} section is empty")
    cmdline = found.get(CMDLINE_SECTION)
    text = None
    if cmdline is not None:
        # systemd's tools write the text without a NUL; some add one or a newline
        text = cmdline.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return Uki(found[LINUX_SECTION], found.get(INITRD_SECTION), text, sections)


def uses_embedded_cmdline(request) -> bool:
    """The user gave no command line of their own (--append/--command-line, --reuse-cmdline)."""
    return request.append is None and not request.reuse_cmdline


def uses_embedded_initrd(request) -> bool:
    return request.initrd is None


def section_label(path: str, section: str) -> str:
    """How a segment cut from a UKI names its source."""
    return f"{path} ({section} section)"


def uki_note(inputs) -> dict:
    """The plan's note on a UKI: its sections, and which defaults the load took."""
    uki, request = inputs.uki, inputs.request
    return {
        "sections": [{"name": s.name, "offset": s.offset, "size": s.size} for s in uki.sections],
        "cmdline_from": CMDLINE_SECTION if uki.cmdline_for(request) is not None else "options",
        "initrd_from": INITRD_SECTION if uki.initrd_for(request) is not None else "options",
    }
