"""The request: a kexec command line parsed once into an immutable value.

kexec's argv is not a set of independent options but an ordered state machine: `-p -u`
unloads the crash kernel while `-u -p` unloads and then loads, `-l` after `-p` keeps the
crash flag, the last `--append` wins, and options may follow the kernel path. The
standard library's `getopt.gnu_getopt` gives exactly getopt_long's permutation and
unique-prefix rules, so the options are walked in order here and folded into a Request;
nothing after this module looks at argv again.

Only the generic options are declared here. As in kexec-tools, whose generic table is
joined by its architecture's option table and its loaders' options, an architecture brings
its own `OptionTable` (pykexec/arch/<name>/); `pykexec.arch.parse_args` passes the tables of
the registered architectures to `parse_args` below, which keeps their options, in the
order given, in `Request.arch_options` for the architecture to read. The composed table
(`compose`) is the single source of `-h`, the man page (scripts/gen-docs writes
docs/pykexec.8) and the shell completion.

Longer than 400 lines on purpose: the generic option table, the walk that gives each of its
entries a meaning and kexec's number rules for their values are kept in one place, so that
no option is declared without its handler.
"""

from __future__ import annotations

import getopt
from typing import Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from pykexec.abi.kexec import (KEXEC_FILE_FORCE_DTB, KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH,
                               KEXEC_FILE_UNLOAD, KEXEC_ON_CRASH, KEXEC_PRESERVE_CONTEXT)
from pykexec.errors import PykexecError


SHORT_OPTIONS = "h?vdfixyluet:pscaS"


class Option(NamedTuple):
    """One long option as -h, the man page and the completion show it."""

    name: str
    takes_argument: bool
    help: str
    group: str         # the heading it is listed under
    metavar: str = ""  # the argument's name in -h (VALUE when empty)


# Option groups of this module, in -h and man page order; an architecture's groups come
# between them.
GENERIC, PYKEXEC = "generic", "pykexec's own"

GENERIC_OPTIONS: Tuple[Option, ...] = (
    Option("help", False, "print this help and exit", GENERIC),
    Option("version", False, "print the version and exit", GENERIC),
    Option("debug", False, "print debugging information (the plan, the syscalls)", GENERIC),
    Option("force", False, "load and boot the kernel at once, without shutdown(8) "
                           "(sync and interfaces down unless -y/-x)", GENERIC),
    Option("no-checks", False, "purgatory skips the SHA-256 check of the segments", GENERIC),
    Option("no-ifdown", False, "with -e/-f: do not take network interfaces down", GENERIC),
    Option("no-sync", False, "with -e/-f/-l: do not sync filesystems", GENERIC),
    Option("load", False, "load KERNEL to boot later with -e (then sync unless -y)", GENERIC),
    Option("unload", False, "unload the loaded kernel (with -p: the crash kernel)", GENERIC),
    Option("exec", False, "boot the loaded kernel now: sync, interfaces down, "
                          "reboot(LINUX_REBOOT_CMD_KEXEC)", GENERIC),
    # the formats are the architecture's: its table words this help (generic_help)
    Option("type", True, "force the kernel file type", GENERIC, "TYPE"),
    Option("load-panic", False, "load KERNEL as the capture kernel, booted on panic", GENERIC),
    Option("kexec-file-syscall", False, "use kexec_file_load only (the kernel parses and "
                                        "verifies the image)", GENERIC),
    Option("kexec-syscall", False, "use kexec_load only", GENERIC),
    Option("kexec-syscall-auto", False, "try kexec_file_load, fall back to kexec_load on "
                                        "ENOSYS/EINVAL/ENOEXEC/ENOTSUP (the default)", GENERIC),
    Option("status", False, "exit 1 if a kernel is loaded (the crash kernel unless -l), else 0",
           GENERIC),
    Option("mem-min", True, "lowest physical address for segments", GENERIC, "ADDR"),
    Option("mem-max", True, "highest physical address for segments", GENERIC, "ADDR"),
    # whether it can be honoured is the architecture's to say (OptionTable)
    Option("reuseinitrd", False, "reuse the running kernel's initrd", GENERIC),
    Option("load-preserve-context", False, "load a kernel that can jump back (needs --mem-max, "
                                           "kexec_load and CONFIG_KEXEC_JUMP)", GENERIC),
    Option("load-jump-back-helper", False, "load the jump-back helper at --entry (in a kexec'd "
                                           "kernel; needs CONFIG_KEXEC_JUMP)", GENERIC),
    Option("entry", True, "override the entry point (the jump-back address for "
                          "--load-jump-back-helper)", GENERIC, "ADDR"),
    Option("print-ckr-size", False, "print the size of the crash kernel region and exit",
           GENERIC),
    Option("hotplug", False, "-p: let the kernel rewrite the elfcorehdr on CPU/memory hotplug "
                             "(needs /sys/kernel/crash_elfcorehdr_size)", GENERIC),
    Option("no-cma", False, "kexec_file_load: do not place segments in CMA", GENERIC),
    Option("force-dtb", False, "kexec_file_load: pass the current DTB", GENERIC),
    Option("exec-live-update", False, "Xen live update: boot the loaded image (Xen only)",
           GENERIC),
    Option("load-live-update", False, "Xen live update: load an image (Xen only)", GENERIC),
)

# The options every kernel loader takes (kexec-tools declares them with each loader): an
# architecture lists them in its loader group, in its order; they fill generic fields of
# the Request because the command line is built and the initrd read by generic code.
COMMON_LOADER_OPTIONS: Tuple[Option, ...] = (
    Option("command-line", True, "the new kernel's command line (same as --append)", "", "TEXT"),
    Option("append", True, "the new kernel's command line (the last one given wins)", "",
           "TEXT"),
    Option("reuse-cmdline", False, "start from the running kernel's command line (without "
                                   "BOOT_IMAGE, and crashkernel for -p)", ""),
    Option("initrd", True, "initial ramdisk", "", "FILE"),
    Option("ramdisk", True, "initial ramdisk (same as --initrd)", "", "FILE"),
)

PYKEXEC_OPTIONS: Tuple[Option, ...] = (
    Option("sysroot", True, "read machine facts under this folder instead of /", PYKEXEC, "DIR"),
    Option("dry-run", False, "do everything but the syscalls, and print the plan", PYKEXEC),
    Option("save-plan", True, "write the plan folder here", PYKEXEC, "DIR"),
    Option("json", False, "with --dry-run: print the plan as JSON", PYKEXEC),
    Option("svg", True, "draw where every segment goes into this SVG file", PYKEXEC, "FILE"),
)

SHORT_TO_LONG = {"h": "help", "?": "?", "v": "version", "d": "debug", "f": "force",
                 "i": "no-checks", "x": "no-ifdown", "y": "no-sync", "l": "load", "u": "unload",
                 "e": "exec", "t": "type", "p": "load-panic", "s": "kexec-file-syscall",
                 "c": "kexec-syscall", "a": "kexec-syscall-auto", "S": "status"}
LONG_TO_SHORT = {v: k for k, v in SHORT_TO_LONG.items() if k != "?"}
# Generic options kexec-tools honours that pykexec refuses when they would matter, and why.
REFUSED: Dict[str, str] = {}
REUSE_INITRD_REFUSED = ("--reuseinitrd is not implemented by pykexec: pass the initrd again "
                        "with --initrd")


class UsageError(PykexecError):
    """A command-line mistake: kexec prints usage and exits 1 (`code`)."""

    code = 1


class ArchOptionError(UsageError):
    """A bad value of an architecture's option (--serial, --serial-baud): kexec-tools'
    arch option pass fails, exit 255."""

    code = 255


class ForeignOptionError(UsageError):
    """An option of another architecture's table on this machine: kexec-tools built for this
    one does not know it (getopt: unrecognized option, kexec exits 1). An Arch's
    option_refusal raises it."""

    exit_status = 1

    def __init__(self, option: str, arch: str):
        super().__init__(f"unrecognized option '--{option}': not an option of kexec for {arch} "
                         "(another architecture's)")


class OptionTable:
    """An architecture's options: kexec-tools' arch option table and its loaders' options.

    `options` in -h order (the COMMON_LOADER_OPTIONS among them, in the architecture's
    group); `values` maps an option to the function that turns its argument (None for a
    flag) into the value kept in `Request.arch_options`, raising ArchOptionError for a bad
    one (an option without one keeps its argument, or True); `needs_kernel` are refused
    without a load, as kexec refuses loader options; `refused` says why pykexec refuses
    an option when a load would need it; `generic_help` words a generic option's help for
    this architecture (the formats `--type` names); `reuse_initrd_refusal` is the one line
    `--reuseinitrd` dies with."""

    __slots__ = ("options", "values", "needs_kernel", "refused", "generic_help",
                 "reuse_initrd_refusal")

    def __init__(self, options: Tuple[Option, ...],
                 values: Mapping[str, Callable[[Optional[str]], object]],
                 needs_kernel: Iterable[str] = (), refused: Mapping[str, str] = {},
                 generic_help: Mapping[str, str] = {},
                 reuse_initrd_refusal: str = REUSE_INITRD_REFUSED):
        self.options = tuple(options)
        self.values = dict(values)
        self.needs_kernel = frozenset(needs_kernel)
        self.refused = dict(refused)
        self.generic_help = dict(generic_help)
        self.reuse_initrd_refusal = reuse_initrd_refusal

    def value(self, name: str, argument: Optional[str]) -> object:
        convert = self.values.get(name)
        if convert is not None:
            return convert(argument)
        return True if argument is None else argument


def compose(tables: Iterable[OptionTable] = ()) -> Tuple[Option, ...]:
    """The whole option table in -h order: the generic options (each help as the first
    table words it), every table's own, pykexec's own. An option two tables declare is
    listed under each, as each words it (--dtb, --serial mean what each architecture says);
    they must agree on whether it takes an argument. `unique_names` gives each name once."""
    tables = tuple(tables)
    generic = tuple(
        o._replace(help=next((t.generic_help[o.name] for t in tables
                              if o.name in t.generic_help), o.help))
        for o in GENERIC_OPTIONS)
    fixed = {o.name for o in generic + PYKEXEC_OPTIONS}
    seen: Dict[str, Option] = {}
    own = []
    for table in tables:
        for option in table.options:
            if option.name in fixed:
                continue
            first = seen.setdefault(option.name, option)
            if first.takes_argument != option.takes_argument:
                raise ValueError(f"--{option.name} is declared twice, once with an "
                                 "argument and once without")
            own.append(option)
    return generic + tuple(own) + PYKEXEC_OPTIONS


def unique_names(options: Iterable[Option]) -> Tuple[Option, ...]:
    """The options with each name once (its first listing): getopt's and a completion's
    list, where a repeated name would make its prefixes ambiguous."""
    found: Dict[str, Option] = {}
    for option in options:
        found.setdefault(option.name, option)
    return tuple(found.values())


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
        debug=False,
        skip_checks=False,
        no_ifdown=False,
        no_sync=False,
        file_type=None,
        mem_min=0,
        mem_max=None,
        entry=0,
        # the architecture's options as given, in order: ((name, value), ...), each value
        # as its OptionTable made it; the architecture folds them (the last one wins)
        arch_options=(),
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


ADDRESS_MAX = (1 << 64) - 1   # a 64-bit unsigned long: every address option fits it


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


_FLAGS = {  # options that only set a boolean field
    "debug": "debug", "no-checks": "skip_checks", "no-ifdown": "no_ifdown", "no-sync": "no_sync",
    "status": "do_status", "reuse-cmdline": "reuse_cmdline", "hotplug": "hotplug",
    "reuseinitrd": "reuse_initrd", "dry-run": "dry_run", "json": "json",
}
_VALUES = {"type": "file_type", "sysroot": "sysroot", "save-plan": "save_plan", "svg": "svg"}
_COMMON_LOADER = {o.name for o in COMMON_LOADER_OPTIONS}


_IMMEDIATE = {"-h", "--help", "-v", "--version", "--print-ckr-size"}


def _getopt(argv: list[str], long_options: list[str]):
    """gnu_getopt, except that -h, -v and --print-ckr-size act as soon as getopt_long
    reaches them, so a mistake after them goes unnoticed, as in kexec."""
    try:
        return getopt.gnu_getopt(argv, SHORT_OPTIONS, long_options)
    except getopt.GetoptError as err:
        for end in range(1, len(argv)):
            try:
                opts, rest = getopt.gnu_getopt(argv[:end], SHORT_OPTIONS, long_options)
            except getopt.GetoptError:
                continue    # the prefix cut an option from its argument, or hit the mistake
            if any(o in _IMMEDIATE for o, _ in opts):
                return opts, rest
        raise UsageError(str(err)) from None


def _arch_value(name: str, argument: Optional[str], tables) -> object:
    """The value an architecture's option keeps. Declared by one table: its value. Declared
    by several (--serial names a port on one, a console on another): the argument as given,
    for the machine's architecture to read its way, once some table accepts it (else the
    first table's error, as kexec-tools built for that architecture would give)."""
    if len(tables) == 1:
        table, takes_argument = tables[0]
        return table.value(name, argument if takes_argument else None)
    first = None
    for table, takes_argument in tables:
        try:
            table.value(name, argument if takes_argument else None)
        except ArchOptionError as err:
            first = first or err
            continue
        return argument if takes_argument else True
    raise first


def parse_args(argv: list[str], tables: Iterable[OptionTable] = ()) -> Request:
    """Parse kexec-style arguments (without the program name) into a Request; `tables`
    are the architectures' options (pykexec.arch.parse_args passes the registered ones)."""
    tables = tuple(tables)
    long_options = [o.name + ("=" if o.takes_argument else "")
                    for o in unique_names(compose(tables))]
    opts, rest = _getopt(argv, long_options)
    # an architecture's option -> the table that makes its value, and whether it takes one
    owner: Dict[str, List[Tuple[OptionTable, bool]]] = {}
    needs_kernel, refusals = set(), dict(REFUSED)
    for table in tables:
        for option in table.options:
            if option.name not in _COMMON_LOADER:
                owner.setdefault(option.name, []).append((table, option.takes_argument))
        needs_kernel |= table.needs_kernel
        for name, why in table.refused.items():
            refusals.setdefault(name, why)
    r = Request()
    loader_seen: list[str] = []
    refused: list[tuple[str, str]] = []
    arch_options: list[tuple[str, object]] = []
    for opt, value in opts:
        name = opt[2:] if opt.startswith("--") else SHORT_TO_LONG[opt[1:]]
        if name in needs_kernel:
            loader_seen.append(name)
        if name in refusals:
            refused.append(("--" + name, refusals[name]))
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
        elif name == "no-cma":
            r = replace(r, kexec_file_flags=r.kexec_file_flags | KEXEC_FILE_NO_CMA)
        elif name == "force-dtb":
            r = replace(r, kexec_file_flags=r.kexec_file_flags | KEXEC_FILE_FORCE_DTB)
        elif name in owner:
            # checked here, in argv order, as kexec-tools' arch pass checks its options
            arch_options.append((name, _arch_value(name, value, owner[name])))
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
    return replace(r, kernel=kernel, refused=tuple(refused), arch_options=tuple(arch_options),
                   loader_options_seen=tuple(loader_seen), extra_args=tuple(rest[1:]))


def option_spec(name: str, arg: bool, argname: str) -> tuple[str, str]:
    """("-l, ", "--load") style pieces for help, man page and completion."""
    short = LONG_TO_SHORT.get(name)
    spec = f"--{name}" + (f"={argname or 'VALUE'}" if arg else "")
    return (f"-{short}" if short else ""), spec


def usage_text(program: str = "kexec", options: Optional[Tuple[Option, ...]] = None) -> str:
    """`-h`: `options` is the composed table (pykexec.arch.usage_text passes it; None: the
    generic options alone)."""
    lines = [f"Usage: {program} [OPTION]... [KERNEL]",
             "Load a kernel to boot now (-l then -e, or -f), or a capture kernel to boot on "
             "panic (-p).",
             "pykexec: a Python kexec-tools; exit status 0 ok, 1 usage (or -S: loaded), "
             "253 kexec_file_load missing with -s, 255 failure.", ""]
    group = None
    for name, arg, text, grp, argname in (compose() if options is None else options):
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
