"""The request: a kexec command line parsed once into an immutable value.

kexec's argv is not a set of independent options but an ordered state machine: `-p -u`
unloads the crash kernel while `-u -p` unloads and then loads, `-l` after `-p` keeps the
crash flag, the last `--append` wins, and options may follow the kernel path. The
standard library's `getopt.gnu_getopt` gives exactly getopt_long's permutation and
unique-prefix rules, so the options are walked in order here and folded into a Request;
nothing after this module looks at argv again.

The option table OPTIONS is the single source of `-h`, the man page (scripts/gen-docs
writes docs/pykexec.8) and the shell completion.
"""

from __future__ import annotations

import getopt

from pykexec.abi.kexec import (KEXEC_FILE_FORCE_DTB, KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH,
                               KEXEC_FILE_UNLOAD, KEXEC_ON_CRASH, KEXEC_PRESERVE_CONTEXT)
from pykexec.errors import PykexecError


SHORT_OPTIONS = "h?vdfixyluet:pscaS"

# Option groups, in -h and man page order.
GENERIC, ARCH, LOADER, PYKEXEC = "generic", "x86 (purgatory and boot parameters)", \
    "kernel loaders (x86 bzImage and ELF)", "pykexec's own"

# (long name, takes an argument, help text, group, argument name). Generic, x86 arch and
# x86 loader options, as kexec-tools accepts them all in one table so a loader option is
# never taken for the kernel.
OPTIONS: tuple[tuple[str, bool, str, str, str], ...] = (
    ("help", False, "print this help and exit", GENERIC, ""),
    ("version", False, "print the version and exit", GENERIC, ""),
    ("debug", False, "print debugging information (the plan, the syscalls)", GENERIC, ""),
    ("force", False, "load and boot the kernel at once, without shutdown(8) "
                     "(sync and interfaces down unless -y/-x)", GENERIC, ""),
    ("no-checks", False, "purgatory skips the SHA-256 check of the segments", GENERIC, ""),
    ("no-ifdown", False, "with -e/-f: do not take network interfaces down", GENERIC, ""),
    ("no-sync", False, "with -e/-f/-l: do not sync filesystems", GENERIC, ""),
    ("load", False, "load KERNEL to boot later with -e (then sync unless -y)", GENERIC, ""),
    ("unload", False, "unload the loaded kernel (with -p: the crash kernel)", GENERIC, ""),
    ("exec", False, "boot the loaded kernel now: sync, interfaces down, "
                    "reboot(LINUX_REBOOT_CMD_KEXEC)", GENERIC, ""),
    ("type", True, "force the kernel file type (bzImage64, elf-x86_64)", GENERIC, "TYPE"),
    ("load-panic", False, "load KERNEL as the capture kernel, booted on panic", GENERIC, ""),
    ("kexec-file-syscall", False, "use kexec_file_load only (the kernel parses and "
                                  "verifies the image)", GENERIC, ""),
    ("kexec-syscall", False, "use kexec_load only", GENERIC, ""),
    ("kexec-syscall-auto", False, "try kexec_file_load, fall back to kexec_load on "
                                  "ENOSYS/EINVAL/ENOEXEC/ENOTSUP (the default)", GENERIC, ""),
    ("status", False, "exit 1 if a kernel is loaded (the crash kernel unless -l), else 0",
     GENERIC, ""),
    ("mem-min", True, "lowest physical address for segments", GENERIC, "ADDR"),
    ("mem-max", True, "highest physical address for segments", GENERIC, "ADDR"),
    ("reuseinitrd", False, "reuse the running kernel's initrd (refused: x86 cannot, as in "
                           "kexec-tools)", GENERIC, ""),
    ("load-preserve-context", False, "load a kernel that can jump back (needs --mem-max, "
                                     "kexec_load and CONFIG_KEXEC_JUMP)", GENERIC, ""),
    ("load-jump-back-helper", False, "load the jump-back helper at --entry (in a kexec'd "
                                     "kernel; needs CONFIG_KEXEC_JUMP)", GENERIC, ""),
    ("entry", True, "override the entry point (the jump-back address for "
                    "--load-jump-back-helper)", GENERIC, "ADDR"),
    ("print-ckr-size", False, "print the size of the crash kernel region and exit", GENERIC, ""),
    ("hotplug", False, "let the kernel update the elfcorehdr on CPU/memory hotplug "
                       "(refused: not implemented)", GENERIC, ""),
    ("no-cma", False, "kexec_file_load: do not place segments in CMA", GENERIC, ""),
    ("force-dtb", False, "kexec_file_load: pass the current DTB", GENERIC, ""),
    ("exec-live-update", False, "Xen live update: boot the loaded image (Xen only)", GENERIC, ""),
    ("load-live-update", False, "Xen live update: load an image (Xen only)", GENERIC, ""),
    # x86 arch options
    ("reset-vga", False, "purgatory resets the VGA adapter (refused: pykexec's purgatory "
                         "has no VGA code)", ARCH, ""),
    ("serial", True, "purgatory serial port (ttyS0, ttyS1 or 0xPORT)", ARCH, "PORT"),
    ("serial-baud", True, "purgatory serial baud rate", ARCH, "BAUD"),
    ("console-vga", False, "purgatory messages on the VGA text console (refused: no VGA "
                           "code)", ARCH, ""),
    ("console-serial", False, "purgatory messages on the serial console", ARCH, ""),
    ("elf32-core-headers", False, "ELF32 core headers (x86_64 warns and keeps ELF64)", ARCH, ""),
    ("elf64-core-headers", False, "ELF64 core headers", ARCH, ""),
    ("pass-memmap-cmdline", False, "-p: also pass the memory map as memmap= parameters "
                                   "(refused with -p; ignored otherwise)", ARCH, ""),
    ("noefi", False, "do not pass EFI runtime data to the new kernel", ARCH, ""),
    ("reuse-video-type", False, "reuse the running kernel's video type (pykexec always "
                                "copies its screen_info)", ARCH, ""),
    # x86 loader options
    ("command-line", True, "the new kernel's command line (same as --append)", LOADER, "TEXT"),
    ("append", True, "the new kernel's command line (the last one given wins)", LOADER, "TEXT"),
    ("reuse-cmdline", False, "start from the running kernel's command line (without "
                             "BOOT_IMAGE, and crashkernel for -p)", LOADER, ""),
    ("initrd", True, "initial ramdisk", LOADER, "FILE"),
    ("ramdisk", True, "initial ramdisk (same as --initrd)", LOADER, "FILE"),
    ("real-mode", False, "bzImage: enter the kernel in real mode (refused: 64-bit entry "
                         "only)", LOADER, ""),
    ("entry-32bit", False, "bzImage64: enter through the 32-bit entry (refused: 64-bit "
                           "entry only)", LOADER, ""),
    ("args-linux", False, "ELF kernel: pass Linux boot parameters", LOADER, ""),
    ("args-elf", False, "ELF kernel: pass ELF boot notes (refused: use --args-linux)",
     LOADER, ""),
    ("args-none", False, "ELF kernel: jump straight to its entry, no purgatory (-l only)",
     LOADER, ""),
    ("module", True, "multiboot module (refused: no multiboot loader)", LOADER, "FILE"),
    ("dtb", True, "bzImage: device tree blob as setup_data (refused: not implemented)",
     LOADER, "FILE"),
    # pykexec's own
    ("sysroot", True, "read machine facts under this folder instead of /", PYKEXEC, "DIR"),
    ("dry-run", False, "do everything but the syscalls, and print the plan", PYKEXEC, ""),
    ("save-plan", True, "write the plan folder here", PYKEXEC, "DIR"),
    ("json", False, "with --dry-run: print the plan as JSON", PYKEXEC, ""),
    ("svg", True, "draw where every segment goes into this SVG file", PYKEXEC, "FILE"),
)
LONG_OPTIONS = [name + ("=" if arg else "") for name, arg, *_ in OPTIONS]
SHORT_TO_LONG = {"h": "help", "?": "?", "v": "version", "d": "debug", "f": "force",
                 "i": "no-checks", "x": "no-ifdown", "y": "no-sync", "l": "load", "u": "unload",
                 "e": "exec", "t": "type", "p": "load-panic", "s": "kexec-file-syscall",
                 "c": "kexec-syscall", "a": "kexec-syscall-auto", "S": "status"}
LONG_TO_SHORT = {v: k for k, v in SHORT_TO_LONG.items() if k != "?"}
# Options that only make sense for a load; kexec refuses them when nothing is loaded.
LOADER_OPTIONS = {"command-line", "append", "reuse-cmdline", "initrd", "ramdisk", "real-mode",
                  "entry-32bit", "args-linux", "args-elf", "args-none", "module", "dtb"}
# Options kexec-tools honours that pykexec refuses when they would matter, and why.
REFUSED = {
    "reset-vga": "pykexec's purgatory has no VGA code (no --reset-vga)",
    "console-vga": "pykexec's purgatory has no VGA code (use --console-serial)",
    "module": "pykexec has no multiboot loader (--module is for multiboot kernels)",
    "dtb": "pykexec does not pass a device tree to x86 kernels (--dtb)",
    "hotplug": "pykexec does not size the elfcorehdr for crash hotplug yet (--hotplug); "
               "reload the crash kernel after hotplug instead (kdump-tools' udev rules do)",
}


class UsageError(PykexecError):
    """A command-line mistake: kexec prints usage and exits 1 (`code`)."""

    code = 1


class ArchOptionError(UsageError):
    """A bad --serial/--serial-baud value: kexec-tools' arch pass fails, exit 255."""

    code = 255


class Request:
    """The parsed command line: immutable; `replace(r, **changes)` gives a changed copy.

    A small record class rather than a dataclass: importing dataclasses (and inspect)
    would cost `kexec -v` and `kexec -e` about 15 ms of start-up.
    """

    _DEFAULTS = dict(
        do_load=True,
        do_exec=False,
        do_shutdown=True,
        do_sync=True,
        do_ifdown=False,
        do_unload=False,
        do_status=False,
        do_jump_back_helper=False,
        has_opt_load=False,
        kexec_flags=0,
        kexec_file_flags=0,
        # "load" (kexec_load, -c), "file" (kexec_file_load, -s), "auto" (-a, kexec-tools 2.0.27+'s
        # default: kexec_file_load first, kexec_load when the kernel cannot)
        syscall_mode="auto",
        kernel=None,
        initrd=None,
        append=None,
        reuse_cmdline=False,
        args_mode=None,  # "linux", "elf", "none"; None: the format's default
        core_header_class=None,  # 32 or 64; None: the architecture's default
        debug=False,
        skip_checks=False,
        no_ifdown=False,
        no_sync=False,
        file_type=None,
        mem_min=0,
        mem_max=None,
        entry=0,
        console_serial=False,
        console_vga=False,
        reset_vga=False,
        serial_base=0x3F8,
        serial_baud=0,
        pass_memmap_cmdline=False,
        noefi=False,
        reuse_video_type=False,
        real_mode=False,
        entry_32bit=False,
        print_ckr_size=False,
        show_help=False,
        show_version=False,
        hotplug=False,
        reuse_initrd=False,
        live_update=None,  # "exec" or "load": Xen only
        sysroot="/",
        dry_run=False,
        save_plan=None,
        json=False,
        svg=None,
        refused=(),  # (option, why pykexec cannot honour it)
        loader_options_seen=(),
        extra_args=(),  # non-option words after the kernel (ignored)
    )
    __slots__ = tuple(_DEFAULTS)

    def __init__(self, **values):
        unknown = set(values) - set(self._DEFAULTS)
        if unknown:
            raise TypeError(f"Request has no field {sorted(unknown)[0]!r}")
        for name, default in self._DEFAULTS.items():
            object.__setattr__(self, name, values.get(name, default))

    def __setattr__(self, name, value):
        raise AttributeError(f"Request is immutable: use replace(request, {name}=...)")

    def __eq__(self, other):
        return type(other) is type(self) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self):
        return hash(tuple(getattr(self, n) for n in self.__slots__))

    def __repr__(self):
        changed = ", ".join(f"{n}={getattr(self, n)!r}" for n, d in self._DEFAULTS.items()
                            if getattr(self, n) != d)
        return f"Request({changed})"

    @property
    def crash(self) -> bool:
        return bool(self.kexec_flags & KEXEC_ON_CRASH)

    @property
    def preserve_context(self) -> bool:
        return bool(self.kexec_flags & KEXEC_PRESERVE_CONTEXT)

    @property
    def unsupported(self) -> tuple[str, ...]:
        """The refused options' names (kept for callers of the first version)."""
        return tuple(o for o, _ in self.refused)


def replace(request: Request, **changes) -> Request:
    """A copy of `request` with `changes` (as dataclasses.replace)."""
    values = {n: getattr(request, n) for n in request.__slots__}
    values.update(changes)
    return Request(**values)


ADDRESS_MAX = (1 << 64) - 1   # an unsigned long on x86_64: every address option fits it


def _number(opt: str, value: str) -> int:
    """strtoul(value, 0): 0x hex, leading 0 octal, else decimal; trailing junk is an error.

    Unlike strtoul, a negative value (which strtoul wraps around) or one past 64 bits
    (which it saturates) is refused too: both would be an address nobody meant."""
    text = value.strip()
    try:
        digits = text.lstrip("+")
        if digits.lower().startswith("0x"):
            number = int(digits[2:], 16)
        elif len(digits) > 1 and digits.startswith("0"):
            number = int(digits[1:], 8)
        else:
            number = int(text, 10)
    except ValueError:
        raise UsageError(f"Bad option value in --{opt}={value}") from None
    if not 0 <= number <= ADDRESS_MAX:
        raise UsageError(f"Bad option value in --{opt}={value}: an address from 0 to "
                         f"{ADDRESS_MAX:#x}")
    return number


ULONG_MAX = (1 << 64) - 1


def _strtoul(opt: str, value: str) -> int:
    """What kexec-tools' strtoul(value, &end, 0) gives for --mem-min/--mem-max: leading
    blanks and a sign are taken, a negative value wraps (-1 is ULONG_MAX), a value beyond
    64 bits is ULONG_MAX, an empty value is 0; anything left over is a usage error."""
    text = value.lstrip(" \t\n\v\f\r")
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text[:2].lower() == "0x" and text[2:3] and text[2:3] in "0123456789abcdefABCDEF":
        base, digits = 16, text[2:]
    elif text[:1] == "0":
        base, digits = 8, text
    else:
        base, digits = 10, text
    allowed = "0123456789abcdef"[:base]
    n = 0
    while n < len(digits) and digits[n].lower() in allowed:
        n += 1
    if n < len(digits) or (n == 0 and value):   # no digits: strtoul ends at the start
        raise UsageError(f"Bad option value in --{opt}={value}")
    number = int(digits[:n], base) if n else 0
    return ULONG_MAX if number > ULONG_MAX else (sign * number) & ULONG_MAX


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


_FLAGS = {  # options that only set a boolean field
    "debug": "debug", "no-checks": "skip_checks", "no-ifdown": "no_ifdown", "no-sync": "no_sync",
    "status": "do_status", "reuse-cmdline": "reuse_cmdline", "console-serial": "console_serial",
    "console-vga": "console_vga", "reset-vga": "reset_vga", "noefi": "noefi",
    "pass-memmap-cmdline": "pass_memmap_cmdline", "reuse-video-type": "reuse_video_type",
    "real-mode": "real_mode", "entry-32bit": "entry_32bit", "hotplug": "hotplug",
    "reuseinitrd": "reuse_initrd", "dry-run": "dry_run", "json": "json",
}
_VALUES = {"type": "file_type", "sysroot": "sysroot", "save-plan": "save_plan", "svg": "svg"}


_IMMEDIATE = {"-h", "--help", "-v", "--version", "--print-ckr-size"}


def _getopt(argv: list[str]):
    """gnu_getopt, except that -h, -v and --print-ckr-size act as soon as getopt_long
    reaches them, so a mistake after them goes unnoticed, as in kexec."""
    try:
        return getopt.gnu_getopt(argv, SHORT_OPTIONS, LONG_OPTIONS)
    except getopt.GetoptError as err:
        for end in range(1, len(argv)):
            try:
                opts, rest = getopt.gnu_getopt(argv[:end], SHORT_OPTIONS, LONG_OPTIONS)
            except getopt.GetoptError:
                continue    # the prefix cut an option from its argument, or hit the mistake
            if any(o in _IMMEDIATE for o, _ in opts):
                return opts, rest
        raise UsageError(str(err)) from None


def parse_args(argv: list[str]) -> Request:
    """Parse kexec-style arguments (without the program name) into a Request."""
    opts, rest = _getopt(argv)
    r = Request()
    loader_seen: list[str] = []
    refused: list[tuple[str, str]] = []
    for opt, value in opts:
        name = opt[2:] if opt.startswith("--") else SHORT_TO_LONG[opt[1:]]
        if name in LOADER_OPTIONS:
            loader_seen.append(name)
        if name in REFUSED:
            refused.append(("--" + name, REFUSED[name]))
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
        elif name in _FLAGS:
            r = replace(r, **{_FLAGS[name]: True})
        elif name in _VALUES:
            r = replace(r, **{_VALUES[name]: value})
        elif name == "force":
            r = replace(r, do_load=True, do_shutdown=False, do_sync=True, do_ifdown=True, do_exec=True)
        elif name == "load":
            r = replace(r, has_opt_load=True, do_load=True, do_exec=False, do_shutdown=False)
        elif name == "load-panic":
            r = replace(r, do_load=True, do_exec=False, do_shutdown=False, do_sync=False,
                        kexec_flags=KEXEC_ON_CRASH,
                        kexec_file_flags=r.kexec_file_flags | KEXEC_FILE_ON_CRASH)
        elif name == "unload":
            r = replace(r, do_load=False, do_shutdown=False, do_sync=False, do_unload=True,
                        kexec_file_flags=r.kexec_file_flags | KEXEC_FILE_UNLOAD)
        elif name == "exec":
            r = replace(r, do_load=False, do_shutdown=False, do_sync=True, do_ifdown=True, do_exec=True)
        elif name == "load-preserve-context":
            r = replace(r, do_load=True, do_exec=False, do_shutdown=False, do_sync=True,
                        kexec_flags=KEXEC_PRESERVE_CONTEXT)
        elif name == "load-jump-back-helper":
            r = replace(r, do_load=False, do_shutdown=False, do_sync=True, do_ifdown=True,
                        do_exec=False, do_jump_back_helper=True, kexec_flags=KEXEC_PRESERVE_CONTEXT)
        elif name in ("exec-live-update", "load-live-update"):
            r = replace(r, live_update=name.split("-", 1)[0])
        elif name == "kexec-file-syscall":
            r = replace(r, syscall_mode="file")
        elif name == "kexec-syscall":
            r = replace(r, syscall_mode="load")
        elif name == "kexec-syscall-auto":
            r = replace(r, syscall_mode="auto")
        elif name in ("mem-min", "mem-max"):
            r = replace(r, **{name.replace("-", "_"): _strtoul(name, value)})
        elif name == "entry":
            number = _number(name, value)
            r = replace(r, **{name.replace("-", "_"): number})
        elif name in ("command-line", "append"):
            r = replace(r, append=value)
        elif name in ("initrd", "ramdisk"):
            r = replace(r, initrd=value)
        elif name in ("args-linux", "args-elf", "args-none"):
            r = replace(r, args_mode=name[5:])
        elif name == "elf32-core-headers":
            r = replace(r, core_header_class=32)
        elif name == "elf64-core-headers":
            r = replace(r, core_header_class=64)
        elif name == "serial":
            r = replace(r, serial_base=_serial_base(value))
        elif name == "serial-baud":
            r = replace(r, serial_baud=_serial_baud(value))
        elif name == "no-cma":
            r = replace(r, kexec_file_flags=r.kexec_file_flags | KEXEC_FILE_NO_CMA)
        elif name == "force-dtb":
            r = replace(r, kexec_file_flags=r.kexec_file_flags | KEXEC_FILE_FORCE_DTB)
        elif name in ("module", "dtb"):
            pass   # refused above when a load needs them
        else:  # pragma: no cover - every table entry has a branch
            raise AssertionError(f"option --{name} has no handler")
    if r.no_ifdown:
        r = replace(r, do_ifdown=False)
    if r.no_sync:
        r = replace(r, do_sync=False)
    if r.do_status:
        flags = r.kexec_flags
        if flags == 0 and not r.has_opt_load:
            flags = KEXEC_ON_CRASH
        r = replace(r, kexec_flags=flags, do_load=False, do_unload=False, do_exec=False,
                    do_shutdown=False, do_sync=False, do_ifdown=False, reuse_initrd=False,
                    do_jump_back_helper=False)
    if not r.do_load and not (r.show_help or r.show_version or r.print_ckr_size):
        if loader_seen:
            raise UsageError(f"option --{loader_seen[0]} needs a kernel to load")
    kernel = rest[0] if rest else None
    return replace(r, kernel=kernel, refused=tuple(refused),
                   loader_options_seen=tuple(loader_seen), extra_args=tuple(rest[1:]))


def option_spec(name: str, arg: bool, argname: str) -> tuple[str, str]:
    """("-l, ", "--load") style pieces for help, man page and completion."""
    short = LONG_TO_SHORT.get(name)
    spec = f"--{name}" + (f"={argname or 'VALUE'}" if arg else "")
    return (f"-{short}" if short else ""), spec


def usage_text(program: str = "kexec") -> str:
    lines = [f"Usage: {program} [OPTION]... [KERNEL]",
             "Load a kernel to boot now (-l then -e, or -f), or a capture kernel to boot on "
             "panic (-p).",
             "pykexec: a Python kexec-tools; exit status 0 ok, 1 usage (or -S: loaded), "
             "253 kexec_file_load missing with -s, 255 failure.", ""]
    group = None
    for name, arg, text, grp, argname in OPTIONS:
        if grp != group:
            group = grp
            lines.append(f" {grp[0].upper() + grp[1:]} options:")
        short, spec = option_spec(name, arg, argname)
        short = f"{short}, " if short else "    "
        lines.append(f"  {short}{spec:<28} {text}")
    lines.append("")
    lines.append("pykexec's own commands: pykexec snapshot DEST, pykexec inspect PATH, "
                 "pykexec install --as-kexec [PATH]")
    return "\n".join(lines) + "\n"
