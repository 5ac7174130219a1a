"""The request: a kexec command line parsed once into an immutable value.

kexec's argv is not a set of independent options but an ordered state machine: `-p -u`
unloads the crash kernel while `-u -p` unloads and then loads, `-l` after `-p` keeps the
crash flag, the last `--append` wins, and options may follow the kernel path. The
standard library's `getopt.gnu_getopt` gives exactly getopt_long's permutation and
unique-prefix rules, so the options are walked in order here and folded into a Request;
nothing after this module looks at argv again.
"""

from __future__ import annotations

import getopt
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

# kexec_load flags
KEXEC_ON_CRASH = 0x1
KEXEC_PRESERVE_CONTEXT = 0x2
KEXEC_UPDATE_ELFCOREHDR = 0x4

SHORT_OPTIONS = "h?vdfixyluet:pscaS"

# (long name, takes an argument, help text). Generic, x86 arch and x86 loader options, as
# kexec-tools accepts them all in one table so a loader option is never taken for the kernel.
OPTIONS: Tuple[Tuple[str, bool, str], ...] = (
    ("help", False, "print this help and exit"),
    ("version", False, "print the version and exit"),
    ("debug", False, "print debugging information (the plan, the syscall)"),
    ("force", False, "load and execute at once, without shutdown(8)"),
    ("no-checks", False, "purgatory skips the SHA-256 check of the segments"),
    ("no-ifdown", False, "with -e/-f: do not take network interfaces down"),
    ("no-sync", False, "with -e/-f/-l: do not sync filesystems"),
    ("load", False, "load a kernel to boot with -e"),
    ("unload", False, "unload the loaded kernel (with -p: the crash kernel)"),
    ("exec", False, "boot the loaded kernel now"),
    ("type", True, "force the kernel file type"),
    ("load-panic", False, "load a capture kernel, booted on panic"),
    ("kexec-file-syscall", False, "use kexec_file_load"),
    ("kexec-syscall", False, "use kexec_load"),
    ("kexec-syscall-auto", False, "try kexec_file_load, fall back to kexec_load"),
    ("status", False, "exit 1 if the kernel (with -p/default: the crash kernel) is loaded, else 0"),
    ("mem-min", True, "lowest physical address for segments"),
    ("mem-max", True, "highest physical address for segments"),
    ("reuseinitrd", False, "reuse the initrd of the running kernel"),
    ("load-preserve-context", False, "load a kernel that can jump back (needs --mem-max)"),
    ("load-jump-back-helper", False, "load the jump-back helper"),
    ("entry", True, "override the entry point"),
    ("print-ckr-size", False, "print the size of the crash kernel region and exit"),
    ("hotplug", False, "let the kernel update the elfcorehdr on CPU/memory hotplug"),
    ("no-cma", False, "kexec_file_load: do not place segments in CMA"),
    ("force-dtb", False, "kexec_file_load: pass the current DTB"),
    ("exec-live-update", False, "Xen live update: boot the loaded image"),
    ("load-live-update", False, "Xen live update: load an image"),
    # x86 arch options
    ("reset-vga", False, "purgatory resets the VGA adapter"),
    ("serial", True, "purgatory serial port (ttyS0, ttyS1 or 0xPORT)"),
    ("serial-baud", True, "purgatory serial baud rate"),
    ("console-vga", False, "purgatory messages on the VGA text console"),
    ("console-serial", False, "purgatory messages on the serial console"),
    ("elf32-core-headers", False, "ELF32 core headers (i386; x86_64 warns and keeps ELF64)"),
    ("elf64-core-headers", False, "ELF64 core headers"),
    ("pass-memmap-cmdline", False, "also pass the capture memory map as memmap= parameters"),
    ("noefi", False, "do not pass EFI data to the new kernel"),
    ("reuse-video-type", False, "reuse the running kernel's video type"),
    # x86 loader options
    ("command-line", True, "the new kernel's command line (same as --append)"),
    ("append", True, "the new kernel's command line (the last one given wins)"),
    ("reuse-cmdline", False, "start from the running kernel's command line"),
    ("initrd", True, "initial ramdisk"),
    ("ramdisk", True, "initial ramdisk (same as --initrd)"),
    ("real-mode", False, "bzImage: enter the kernel in real mode"),
    ("entry-32bit", False, "bzImage64: enter the kernel through its 32-bit entry"),
    ("args-linux", False, "ELF kernel: pass Linux boot parameters"),
    ("args-elf", False, "ELF kernel: pass ELF boot notes (default for ELF)"),
    ("args-none", False, "ELF kernel: jump straight to its entry"),
    ("module", True, "multiboot module"),
    ("dtb", True, "bzImage: device tree blob as setup_data"),
    # pykexec's own
    ("sysroot", True, "read machine facts under this folder instead of /"),
    ("dry-run", False, "do everything but the syscall, and print the plan"),
    ("save-plan", True, "write the plan folder here"),
    ("json", False, "with --dry-run: print the plan as JSON"),
    ("svg", True, "draw where every segment goes into this SVG file"),
)
LONG_OPTIONS = [name + ("=" if arg else "") for name, arg, _ in OPTIONS]
SHORT_TO_LONG = {"h": "help", "?": "?", "v": "version", "d": "debug", "f": "force",
                 "i": "no-checks", "x": "no-ifdown", "y": "no-sync", "l": "load", "u": "unload",
                 "e": "exec", "t": "type", "p": "load-panic", "s": "kexec-file-syscall",
                 "c": "kexec-syscall", "a": "kexec-syscall-auto", "S": "status"}
# Options that only make sense for a load; kexec refuses them when nothing is loaded.
LOADER_OPTIONS = {"command-line", "append", "reuse-cmdline", "initrd", "ramdisk", "real-mode",
                  "entry-32bit", "args-linux", "args-elf", "args-none", "module", "dtb"}


class UsageError(Exception):
    """A command-line mistake: kexec prints usage and exits 1."""


@dataclass(frozen=True)
class Request:
    do_load: bool = True
    do_exec: bool = False
    do_shutdown: bool = True
    do_sync: bool = True
    do_ifdown: bool = False
    do_unload: bool = False
    do_status: bool = False
    has_opt_load: bool = False
    kexec_flags: int = 0
    syscall_mode: str = "load"        # "load" (kexec_load), "file", "auto"
    kernel: Optional[str] = None
    initrd: Optional[str] = None
    append: Optional[str] = None
    reuse_cmdline: bool = False
    args_mode: Optional[str] = None   # "linux", "elf", "none"; None: the format's default
    core_header_class: Optional[int] = None  # 32 or 64; None: the architecture's default
    debug: bool = False
    skip_checks: bool = False
    no_ifdown: bool = False
    no_sync: bool = False
    file_type: Optional[str] = None
    mem_min: int = 0
    mem_max: Optional[int] = None
    entry: int = 0
    console_serial: bool = False
    console_vga: bool = False
    reset_vga: bool = False
    serial_base: int = 0x3F8
    serial_baud: int = 0
    pass_memmap_cmdline: bool = False
    noefi: bool = False
    real_mode: bool = False
    entry_32bit: bool = False
    print_ckr_size: bool = False
    show_help: bool = False
    show_version: bool = False
    hotplug: bool = False
    sysroot: str = "/"
    dry_run: bool = False
    save_plan: Optional[str] = None
    json: bool = False
    svg: Optional[str] = None
    unsupported: Tuple[str, ...] = ()  # options accepted by kexec that pykexec cannot honour here
    loader_options_seen: Tuple[str, ...] = ()

    @property
    def crash(self) -> bool:
        return bool(self.kexec_flags & KEXEC_ON_CRASH)


def _number(opt: str, value: str) -> int:
    """strtoul(value, 0): 0x hex, leading 0 octal, else decimal; trailing junk is an error."""
    text = value.strip()
    try:
        if text.lower().startswith("0x"):
            return int(text[2:], 16)
        if len(text) > 1 and text.startswith("0"):
            return int(text[1:], 8)
        return int(text, 10)
    except ValueError:
        raise UsageError(f"Bad option value in --{opt}={value}") from None


def _serial_base(value: str) -> int:
    named = {"ttys0": 0x3F8, "ttys1": 0x2F8}
    if value.lower() in named:
        return named[value.lower()]
    try:
        port = int(value, 16) if value.lower().startswith("0x") else int(value, 0)
    except ValueError:
        port = -1
    if not 0 <= port < 0x10000:
        raise UsageError(f"Bad serial port base '{value}'")
    return port


def _serial_baud(value: str) -> int:
    try:
        baud = int(value, 10)
    except ValueError:
        baud = 0
    if not (9600 <= baud <= 115200 and 115200 % baud == 0):
        raise UsageError(f"Bad serial port baud rate '{value}'")
    return baud


def parse_args(argv: List[str]) -> Request:
    """Parse kexec-style arguments (without the program name) into a Request."""
    try:
        opts, rest = getopt.gnu_getopt(argv, SHORT_OPTIONS, LONG_OPTIONS)
    except getopt.GetoptError as err:
        raise UsageError(str(err)) from None
    r = Request()
    loader_seen: List[str] = []
    unsupported: List[str] = []
    for opt, value in opts:
        name = opt[2:] if opt.startswith("--") else SHORT_TO_LONG[opt[1:]]
        if name in LOADER_OPTIONS:
            loader_seen.append(name)
        if name == "?":
            raise UsageError("unknown option -?")
        elif name == "help":
            r = replace(r, show_help=True)
            break
        elif name == "version":
            r = replace(r, show_version=True)
            break
        elif name == "print-ckr-size":
            # kexec acts on it during parsing; later options are never read.
            r = replace(r, print_ckr_size=True)
            break
        elif name == "debug":
            r = replace(r, debug=True)
        elif name == "force":
            r = replace(r, do_load=True, do_shutdown=False, do_sync=True, do_ifdown=True, do_exec=True)
        elif name == "no-checks":
            r = replace(r, skip_checks=True)
        elif name == "no-ifdown":
            r = replace(r, no_ifdown=True)
        elif name == "no-sync":
            r = replace(r, no_sync=True)
        elif name == "load":
            r = replace(r, has_opt_load=True, do_load=True, do_exec=False, do_shutdown=False)
        elif name == "load-panic":
            r = replace(r, do_load=True, do_exec=False, do_shutdown=False, do_sync=False,
                        kexec_flags=KEXEC_ON_CRASH)
        elif name == "unload":
            r = replace(r, do_load=False, do_shutdown=False, do_sync=False, do_unload=True)
        elif name == "exec":
            r = replace(r, do_load=False, do_shutdown=False, do_sync=True, do_ifdown=True, do_exec=True)
        elif name == "status":
            r = replace(r, do_status=True)
        elif name == "type":
            r = replace(r, file_type=value)
        elif name == "kexec-file-syscall":
            r = replace(r, syscall_mode="file")
        elif name == "kexec-syscall":
            r = replace(r, syscall_mode="load")
        elif name == "kexec-syscall-auto":
            r = replace(r, syscall_mode="auto")
        elif name in ("mem-min", "mem-max", "entry"):
            number = _number(name, value)
            r = replace(r, **{name.replace("-", "_"): number})
        elif name in ("command-line", "append"):
            r = replace(r, append=value)
        elif name == "reuse-cmdline":
            r = replace(r, reuse_cmdline=True)
        elif name in ("initrd", "ramdisk"):
            r = replace(r, initrd=value)
        elif name in ("args-linux", "args-elf", "args-none"):
            r = replace(r, args_mode=name[5:])
        elif name == "elf32-core-headers":
            r = replace(r, core_header_class=32)
        elif name == "elf64-core-headers":
            r = replace(r, core_header_class=64)
        elif name == "console-serial":
            r = replace(r, console_serial=True)
        elif name == "console-vga":
            r = replace(r, console_vga=True)
        elif name == "reset-vga":
            r = replace(r, reset_vga=True)
        elif name == "serial":
            r = replace(r, serial_base=_serial_base(value))
        elif name == "serial-baud":
            r = replace(r, serial_baud=_serial_baud(value))
        elif name == "pass-memmap-cmdline":
            r = replace(r, pass_memmap_cmdline=True)
        elif name == "noefi":
            r = replace(r, noefi=True)
        elif name == "real-mode":
            r = replace(r, real_mode=True)
        elif name == "entry-32bit":
            r = replace(r, entry_32bit=True)
        elif name == "hotplug":
            r = replace(r, hotplug=True)
        elif name == "sysroot":
            r = replace(r, sysroot=value)
        elif name == "dry-run":
            r = replace(r, dry_run=True)
        elif name == "save-plan":
            r = replace(r, save_plan=value)
        elif name == "json":
            r = replace(r, json=True)
        elif name == "svg":
            r = replace(r, svg=value)
        else:
            unsupported.append("--" + name)
    if r.no_ifdown:
        r = replace(r, do_ifdown=False)
    if r.no_sync:
        r = replace(r, do_sync=False)
    if r.do_status:
        flags = r.kexec_flags
        if flags == 0 and not r.has_opt_load:
            flags = KEXEC_ON_CRASH
        r = replace(r, kexec_flags=flags, do_load=False, do_unload=False, do_exec=False,
                    do_shutdown=False, do_sync=False, do_ifdown=False)
    if not r.do_load and not (r.show_help or r.show_version or r.print_ckr_size):
        bogus = [o for o in loader_seen]
        if bogus:
            raise UsageError(f"option --{bogus[0]} needs a kernel to load")
    kernel = rest[0] if rest else None
    return replace(r, kernel=kernel, unsupported=tuple(unsupported),
                   loader_options_seen=tuple(loader_seen))


def usage_text(program: str = "pykexec") -> str:
    lines = [f"Usage: {program} [OPTION]... [kernel]",
             "Load a new kernel to boot now (-l, -e), or a capture kernel to boot on panic (-p).", ""]
    short_of = {v: k for k, v in SHORT_TO_LONG.items()}
    for name, arg, text in OPTIONS:
        short = f"-{short_of[name]}, " if name in short_of else "    "
        spec = f"--{name}" + ("=VALUE" if arg else "")
        lines.append(f"  {short}{spec:<28} {text}")
    return "\n".join(lines) + "\n"
