"""Where the running arm64 kernel lives in virtual and physical memory, from its VMCOREINFO.

The crash dump needs two mappings in its ELF core header: the linear map of RAM (every
PT_LOAD's p_vaddr) and the kernel image (one PT_LOAD, where the kernel's own symbols such
as the printk ring buffer live). The kernel states everything needed in VMCOREINFO, which
/proc/kcore carries as a PT_NOTE since Linux 4.19:

* `NUMBER(VA_BITS)`: the linear map starts at PAGE_OFFSET = 2^64 - 2^VA_BITS (since 5.4,
  when the kernel image moved to the upper half; before, 2^64 - 2^(VA_BITS - 1));
* `NUMBER(PHYS_OFFSET)`: the physical address the linear map's first byte maps
  (memstart_addr; 0 or below RAM under KASLR), so vaddr = paddr - PHYS_OFFSET + PAGE_OFFSET;
* `NUMBER(kimage_voffset)`: kernel image vaddr - paddr;
* `SYMBOL(_stext)`, `KERNELOFFSET`: the image's text and its KASLR displacement.

The image's extent [_text, _end) is the kcore PT_LOAD holding _stext (kcore's KCORE_TEXT
entry; without one, [_stext, end of "Kernel data")); it is checked against /proc/iomem's "Kernel code" (which starts at _stext's, or
in old kernels _text's, physical address) and "Kernel data" (which ends at _end's), and
against kallsyms' _text when the kernel shows it. kexec-tools 2.0.25 instead needs _text
in /proc/kallsyms (absent without CONFIG_KALLSYMS_ALL, as on Debian 12) and writes a
kernel-text header with garbage addresses and page_offset 0 without it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Dict, Optional

from pykexec.arch.interfaces import KernelTextMap
from pykexec.machine import EXIT_LOAD_FAILED, Machine, MachineError
from pykexec.machine.symbols import KCORE_HEADERS_SIZE

ADDRESS_MASK = (1 << 64) - 1
VMCOREINFO_NOTE = "VMCOREINFO"
KIMAGE_MAX = 1 << 30          # a kernel image with its BSS is far smaller
# the keys a crash load cannot do without
REQUIRED = ("NUMBER(VA_BITS)", "NUMBER(kimage_voffset)", "NUMBER(PHYS_OFFSET)",
            "SYMBOL(_stext)")


def parse_vmcoreinfo(text: str) -> Dict[str, str]:
    """VMCOREINFO's KEY=value lines as a dict (the first of a repeated key wins)."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and key not in out:
            out[key] = value.strip()
    return out


def vmcoreinfo_number(info: Dict[str, str], key: str) -> int:
    """A NUMBER()/SYMBOL()/KERNELOFFSET value: SYMBOL and KERNELOFFSET are bare hex,
    NUMBER decimal or 0x-prefixed hex (the kernel prints both)."""
    value = info[key]
    if key.startswith("NUMBER("):
        return int(value, 0) & ADDRESS_MASK if value.lower().startswith(("0x", "-0x")) \
            else int(value, 10) & ADDRESS_MASK
    return int(value, 16) & ADDRESS_MASK


def linear_map_base(va_bits: int, stext: int) -> int:
    """PAGE_OFFSET: 2^64 - 2^VA_BITS since 5.4 (the image above the linear map), else
    2^64 - 2^(VA_BITS - 1); an image in the lower half of the kernel's space says which."""
    upper_half = ADDRESS_MASK ^ ((1 << (va_bits - 1)) - 1)
    if stext < upper_half:
        return upper_half
    return ADDRESS_MASK ^ ((1 << va_bits) - 1)


def kcore_vmcoreinfo(machine: Machine) -> Optional[str]:
    """The VMCOREINFO note's text from /proc/kcore's PT_NOTE, or None without one."""
    def read():
        data = machine.file_bytes("proc/kcore", KCORE_HEADERS_SIZE)
        if not data:
            return None
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile
        try:
            for segment in ELFFile(io.BytesIO(data)).iter_segments("PT_NOTE"):
                for note in segment.iter_notes():
                    if note["n_name"] == VMCOREINFO_NOTE:
                        desc = note["n_desc"]
                        return desc.decode("ascii", "replace") if isinstance(desc, bytes) \
                            else str(desc)
        except (ELFError, ValueError, KeyError, UnicodeDecodeError, OSError) as err:
            raise MachineError(f"{machine.path('proc/kcore')}: unreadable PT_NOTE ({err})",
                               machine.path("proc/kcore"), exit_status=EXIT_LOAD_FAILED) from None
        return None
    return machine.cached("arm64 kcore vmcoreinfo", read)


@dataclass(frozen=True)
class KernelMap:
    """The running kernel's mappings as the core header and the dump reader use them."""

    va_bits: int
    page_offset: int          # PAGE_OFFSET: the linear map's first virtual address
    phys_offset: int          # PHYS_OFFSET: what PAGE_OFFSET maps (mod 2^64)
    kimage_voffset: int
    kernel_offset: int        # KERNELOFFSET (KASLR), 0 when not given
    text: KernelTextMap       # [_text, _end) of the image

    @property
    def linear_delta(self) -> int:
        """What a PT_LOAD's p_vaddr adds to its p_paddr: PAGE_OFFSET - PHYS_OFFSET (mod 2^64),
        the core header's page_offset."""
        return (self.page_offset - self.phys_offset) & ADDRESS_MASK

    def linear_vaddr(self, paddr: int) -> int:
        return (paddr + self.linear_delta) & ADDRESS_MASK


def _fail(machine: Machine, rel: str, why: str) -> MachineError:
    return MachineError(f"{machine.path(rel)}: {why}", machine.path(rel),
                        exit_status=EXIT_LOAD_FAILED)


def kernel_map(machine: Machine) -> KernelMap:
    """The running kernel's mappings; MachineError (one line) when they cannot be known or
    the machine's files contradict each other (a core header would then mislead)."""
    return machine.cached("arm64 kernel_map", lambda: _kernel_map(machine))


def _kernel_map(machine: Machine) -> KernelMap:
    text = kcore_vmcoreinfo(machine)
    if text is None:
        raise _fail(machine, "proc/kcore", "no VMCOREINFO note (Linux 4.19 or later has one): "
                    "the kernel's VA_BITS, PHYS_OFFSET and kimage_voffset are unknown")
    info = parse_vmcoreinfo(text)
    missing = [k for k in REQUIRED if k not in info]
    if missing:
        raise _fail(machine, "proc/kcore", f"VMCOREINFO lacks {', '.join(missing)}")
    try:
        va_bits = vmcoreinfo_number(info, "NUMBER(VA_BITS)")
        kimage_voffset = vmcoreinfo_number(info, "NUMBER(kimage_voffset)")
        phys_offset = vmcoreinfo_number(info, "NUMBER(PHYS_OFFSET)")
        stext = vmcoreinfo_number(info, "SYMBOL(_stext)")
        kernel_offset = int(info.get("KERNELOFFSET", "0"), 16)
    except ValueError as err:
        raise _fail(machine, "proc/kcore", f"VMCOREINFO has a bad number ({err})") from None
    if not 36 <= va_bits <= 52:
        raise _fail(machine, "proc/kcore", f"VMCOREINFO NUMBER(VA_BITS)={va_bits} is not an "
                    "arm64 virtual address size (36..52)")
    page_offset = linear_map_base(va_bits, stext)
    image = _image_extent(machine, stext, kimage_voffset)
    return KernelMap(va_bits, page_offset, phys_offset, kimage_voffset, kernel_offset, image)


def _image_extent(machine: Machine, stext: int, kimage_voffset: int) -> KernelTextMap:
    """[_text, _end) from kcore's text PT_LOAD, checked against iomem and kallsyms."""
    code = machine.iomem.find("Kernel code")
    data = machine.iomem.find("Kernel data")
    stext_paddr = (stext - kimage_voffset) & ADDRESS_MASK
    # the image's own entry, not the vmalloc area around it (kcore lists both)
    holding = [l for l in machine.kcore_loads
               if l.vaddr <= stext < l.vaddr + l.memsz and l.memsz <= KIMAGE_MAX]
    if not holding:
        # no image entry in kcore: from _stext to "Kernel data"'s end (_end), which holds
        # all the dump tools read (only the image's head before _stext is left out)
        if len(data) != 1 or data[0].range.end <= stext_paddr:
            raise _fail(machine, "proc/kcore", f"no PT_LOAD holds _stext {stext:#x} and "
                        "/proc/iomem has no 'Kernel data' after it: the kernel image's extent "
                        "is unknown")
        return KernelTextMap(stext_paddr, stext, data[0].range.end - stext_paddr)
    load = min(holding, key=lambda l: l.memsz)
    start, size = load.vaddr, load.memsz
    paddr = (start - kimage_voffset) & ADDRESS_MASK
    if len(code) == 1 and code[0].range.start not in (stext_paddr, paddr):
        raise _fail(machine, "proc/iomem", f"'Kernel code' starts at {code[0].range.start:#x}, "
                    f"but VMCOREINFO puts _stext at {stext_paddr:#x}")
    if len(data) == 1 and data[0].range.end != paddr + size:
        raise _fail(machine, "proc/iomem", f"'Kernel data' ends at {data[0].range.end:#x}, but "
                    f"kcore's image mapping ends at {paddr + size:#x}")
    text_sym = machine.symbol("_text")
    if text_sym and text_sym != start:
        raise _fail(machine, "proc/kallsyms", f"_text is {text_sym:#x}, but kcore's image "
                    f"mapping starts at {start:#x}")
    return KernelTextMap(paddr, start, size)
