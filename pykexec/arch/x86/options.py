"""x86's command-line options: kexec-tools' x86 arch options (purgatory console, core header
class, boot parameters) and its x86 loaders' options (bzImage and ELF), declared for the
generic parser (pykexec.request), and the value x86 code reads them from.

The parser keeps these options in `Request.arch_options` in the order given; `x86_options`
folds them into one `X86Options` (the last one given wins, as each used to overwrite a
field). A bad --serial or --serial-baud fails while argv is walked, with kexec-tools' exit
status 255 for its arch option pass.

Kept light (no construct, no dataclasses): `-h` and `-v` import it through the registry.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from pykexec.request import COMMON_LOADER_OPTIONS, ArchOptionError, Option, OptionTable

ARCH = "x86 (purgatory and boot parameters)"
LOADER = "kernel loaders (x86 bzImage and ELF)"


class X86Options(NamedTuple):
    """The x86 options a load reads (the refused ones, VGA, --module and --dtb, are refused
    before planning; --reuse-video-type changes nothing: screen_info is always copied)."""

    console_serial: bool = False
    serial_base: int = 0x3F8
    serial_baud: int = 0
    pass_memmap_cmdline: bool = False
    noefi: bool = False
    real_mode: bool = False
    entry_32bit: bool = False
    args_mode: Optional[str] = None          # "linux", "elf", "none"; None: the format's default
    core_header_class: Optional[int] = None  # 32 or 64; None: the architecture's default


def _serial_base(value: str) -> int:
    named = {"ttys0": 0x3F8, "ttys1": 0x2F8}
    if value.lower() in named:
        return named[value.lower()]
    try:
        port = int(value, 16) if value.lower().startswith("0x") else int(value, 0)
    except ValueError:
        port = -1
    if not 0 <= port < 0x10000:
        raise ArchOptionError(f"Bad serial port base '{value}'")
    return port


def _serial_baud(value: str) -> int:
    try:
        baud = int(value, 10)
    except ValueError:
        baud = 0
    if not (9600 <= baud <= 115200 and 115200 % baud == 0):
        raise ArchOptionError(f"Bad serial port baud rate '{value}'")
    return baud


def _always(value):
    return lambda _argument: value


# option -> (X86Options field it sets, the function of its argument giving the value)
FIELDS = {
    "serial": ("serial_base", _serial_base),
    "serial-baud": ("serial_baud", _serial_baud),
    "console-serial": ("console_serial", _always(True)),
    "elf32-core-headers": ("core_header_class", _always(32)),
    "elf64-core-headers": ("core_header_class", _always(64)),
    "pass-memmap-cmdline": ("pass_memmap_cmdline", _always(True)),
    "noefi": ("noefi", _always(True)),
    "real-mode": ("real_mode", _always(True)),
    "entry-32bit": ("entry_32bit", _always(True)),
    "args-linux": ("args_mode", _always("linux")),
    "args-elf": ("args_mode", _always("elf")),
    "args-none": ("args_mode", _always("none")),
}

_COMMON = {o.name: o._replace(group=LOADER) for o in COMMON_LOADER_OPTIONS}

OPTIONS = (
    Option("reset-vga", False, "purgatory resets the VGA adapter (refused: pykexec's purgatory "
                               "has no VGA code)", ARCH),
    Option("serial", True, "purgatory serial port (ttyS0, ttyS1 or 0xPORT)", ARCH, "PORT"),
    Option("serial-baud", True, "purgatory serial baud rate", ARCH, "BAUD"),
    Option("console-vga", False, "purgatory messages on the VGA text console (refused: no VGA "
                                 "code)", ARCH),
    Option("console-serial", False, "purgatory messages on the serial console", ARCH),
    Option("elf32-core-headers", False, "ELF32 core headers (x86_64 warns and keeps ELF64)",
           ARCH),
    Option("elf64-core-headers", False, "ELF64 core headers", ARCH),
    Option("pass-memmap-cmdline", False, "-p: also pass the memory map as memmap= parameters "
                                         "(refused with -p; ignored otherwise)", ARCH),
    Option("noefi", False, "do not pass EFI runtime data to the new kernel", ARCH),
    Option("reuse-video-type", False, "reuse the running kernel's video type (pykexec always "
                                      "copies its screen_info)", ARCH),
    _COMMON["command-line"],
    _COMMON["append"],
    _COMMON["reuse-cmdline"],
    _COMMON["initrd"],
    _COMMON["ramdisk"],
    Option("real-mode", False, "bzImage: enter the kernel in real mode (refused: 64-bit entry "
                               "only)", LOADER),
    Option("entry-32bit", False, "bzImage64: enter through the 32-bit entry (refused: 64-bit "
                                 "entry only)", LOADER),
    Option("args-linux", False, "ELF kernel: pass Linux boot parameters", LOADER),
    Option("args-elf", False, "ELF kernel: pass ELF boot notes (refused: use --args-linux)",
           LOADER),
    Option("args-none", False, "ELF kernel: jump straight to its entry, no purgatory (-l only)",
           LOADER),
    Option("module", True, "multiboot module (refused: no multiboot loader)", LOADER, "FILE"),
    Option("dtb", True, "bzImage: device tree blob as setup_data (refused: not implemented)",
           LOADER, "FILE"),
)

TABLE = OptionTable(
    OPTIONS,
    values={name: convert for name, (_field, convert) in FIELDS.items()},
    # kexec refuses a loader's option when nothing is loaded
    needs_kernel=(o.name for o in OPTIONS if o.group == LOADER),
    # refused by X86Arch.option_refusal, for x86 machines only (another architecture may
    # take the same name, as --dtb)
    generic_help={
        "type": "force the kernel file type (bzImage64, elf-x86_64)",
        "reuseinitrd": "reuse the running kernel's initrd (refused: x86 cannot, as in "
                       "kexec-tools)",
    },
    reuse_initrd_refusal="--reuseinitrd is not implemented on x86 (as in kexec-tools): pass "
                         "the initrd again with --initrd")


# Options pykexec refuses on an x86 machine, and why.
REFUSED = {
    "reset-vga": "pykexec's purgatory has no VGA code (no --reset-vga)",
    "console-vga": "pykexec's purgatory has no VGA code (use --console-serial)",
    "module": "pykexec has no multiboot loader (--module is for multiboot kernels)",
    "dtb": "pykexec does not pass a device tree to x86 kernels (--dtb)",
}
NAMES = frozenset(o.name for o in OPTIONS)


def x86_options(request) -> X86Options:
    """The x86 options of `request`, the last one given winning. An option another
    architecture declares too (--serial) keeps its argument as given: it is read here
    (ArchOptionError, exit 255, when x86 cannot take it)."""
    return X86Options()._replace(**{
        FIELDS[name][0]: FIELDS[name][1](value) if isinstance(value, str) else value
        for name, value in request.arch_options if name in FIELDS})
