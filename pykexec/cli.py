"""Command-line entry points: kexec-compatible argv, pykexec's own subcommands via click.

kexec's options are an ordered state machine (see pykexec.request), which click's
declarative options cannot express (`-pu` differs from `-up`, options may follow the
kernel path, prefixes of long options are accepted, a usage error must exit 1). So the
kexec-style argv is parsed with the standard library's getopt in `pykexec.request`, and
click carries pykexec's own subcommands (`snapshot`, `inspect`, `install`, `vmcore`), whose names
cannot clash with a kernel path because they are only taken as the very first argument.

`main` is `pykexec`, `kexec_main` is the same program answering as `kexec` (installed as
/sbin/kexec: see `pykexec install --as-kexec`). The actions run in kexec-tools' order:
status, unload, load (kexec_file_load first unless -c, kexec_load as the fallback), then
for -e/-f: sync, interfaces down, reboot(LINUX_REBOOT_CMD_KEXEC). Nothing here writes a
file unless asked (--save-plan, --svg), and no bytecode is written from here on, so -e
works on a read-only root.

Exit statuses follow kexec-tools: 0 success, 1 usage errors and fatal refusals (and `-S`
when loaded), 253 kexec_file_load missing with -s, 255 a failed load, unload or exec.
When the reader of stdout goes away (`pykexec --dry-run ... | head`), pykexec stops quietly
and dies of SIGPIPE as a C tool does (a shell shows 141); `run()` in-process returns 141.

(Longer than 400 lines: kexec's action order, exit statuses and the one error path are one
state machine over a Request; the subcommands beside it are thin.)
"""

from __future__ import annotations

import os
import sys

from pykexec.errors import PykexecError

sys.dont_write_bytecode = True   # -e runs while / may already be read-only

EXIT_USAGE = 1
EXIT_FATAL = 1          # kexec-tools' die()
EXIT_FALLBACK = 253     # -s and kexec_file_load is not usable
EXIT_FAILURE = 255
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
EXIT_PIPE = 141         # 128 + SIGPIPE: stdout's reader went away

SUBCOMMANDS = ("snapshot", "inspect", "install", "vmcore")
# sysroots that are this machine: only these may be loaded, not planned only.
_LIVE_ROOTS = ("/", "")
_PROGRAM = ["pykexec"]


class Failure(PykexecError):
    """A load that cannot go ahead: one line on stderr, exit 255 (or `code`)."""

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code


def _err(message: str) -> None:
    """The one line on stderr (control characters in names and values escaped)."""
    from pykexec.errors import one_line
    sys.stderr.write(f"{_PROGRAM[0]}: {one_line(message)}\n")


STATUS_READ = 2   # kexec-tools reads the flag with fgets into a 3-byte buffer


def loaded_status(head: bytes | None) -> int:
    """`-S`: the exit status kexec-tools gives for a flag file whose first line starts
    with `head` (None: the file is missing or unreadable; the machine reads it).

    kexec-tools reads at most two bytes of the first line and takes strtol(.., 10) of them:
    the number is the exit status (modulo 256, as the shell sees it); an unreadable or
    empty file, or one without digits at its start, gives -1 (255).
    """
    value = None if head is None else _strtol(head)
    return EXIT_FAILURE if value is None else value & 0xFF


def _strtol(text: bytes) -> int | None:
    """C strtol(text, &end, 10) in the C locale; None when no digit was taken."""
    i = 0
    while i < len(text) and text[i] in b" \t\n\v\f\r":
        i += 1
    sign = 1
    if i < len(text) and text[i] in b"+-":
        sign = -1 if text[i] == ord("-") else 1
        i += 1
    start = i
    while i < len(text) and 0x30 <= text[i] <= 0x39:
        i += 1
    return sign * int(text[start:i]) if i > start else None


def run(argv: list[str], program: str = "pykexec") -> int:
    """Run a command line in-process (`pykexec ARGV`, or `kexec ARGV` with program="kexec",
    which has no subcommands); returns the exit status."""
    if program == "pykexec" and argv and argv[0] in SUBCOMMANDS:
        return _subcommand(list(argv))
    _PROGRAM[0] = program
    _RUN["debug"] = False
    try:
        with _stdout_named():
            return _run(argv, program)
    except BrokenPipeError:
        return _stdout_gone()
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except Failure as err:
        _err(str(err))
        return err.code
    except Exception as err:  # noqa: BLE001 - the one place that turns errors into a line
        if _RUN["debug"]:
            raise
        return _report(err)


def _report(err: BaseException) -> int:
    """One line for an error that reached the top; the exit status kexec-tools gives."""
    from pykexec.errors import describe
    message = describe(err)
    if message is None:
        _err(f"internal error: {err.__class__.__name__}: {err} "
             "(run with --debug for details)")
        return EXIT_FAILURE
    _err(message)
    # A layer may say which kexec-tools status its refusal matches (e.g. 1 for "no room",
    # kexec-tools' locate_hole die()); otherwise a failed load: 255.
    status = getattr(err, "exit_status", EXIT_FAILURE)
    return status if isinstance(status, int) and 0 <= status <= 255 else EXIT_FAILURE


class _NamedOutput:
    """sys.stdout, whose write errors (a full disk: `> /dev/full`) name it; a closed pipe
    stays a BrokenPipeError."""

    def __init__(self, stream):
        self._stream = stream

    def _named(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as err:
            if err.filename is None:
                raise OSError(err.errno, err.strerror, "standard output") from None
            raise

    def write(self, text):
        return self._named(self._stream.write, text)

    def flush(self):
        return self._named(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _stdout_named:
    def __enter__(self):
        self.saved = sys.stdout
        sys.stdout = _NamedOutput(self.saved)

    def __exit__(self, *exc):
        sys.stdout = self.saved
        return False


_PIPE = {"closed": False}
_RUN = {"debug": False}


def _stdout_gone() -> int:
    """stdout's reader has gone: say nothing more (nobody reads it) and stop."""
    _PIPE["closed"] = True
    return EXIT_PIPE


def _exit(code: int) -> None:
    """Leave the process with `code`; after a closed pipe, die of SIGPIPE as C tools do."""
    if _PIPE["closed"]:
        import signal
        try:
            # Python would flush stdout again at exit and print "Exception ignored".
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(code)


def _run(argv: list[str], program: str) -> int:
    from pykexec.arch import parse_args, usage_text
    from pykexec.request import UsageError

    try:
        request = parse_args(argv)
    except UsageError as err:
        _err(f"{err} (see {program} --help)")
        return err.code
    _RUN["debug"] = request.debug
    if request.show_help:
        sys.stdout.write(usage_text(program))
        sys.stdout.flush()
        return 0
    if request.show_version:
        from pykexec import __version__
        if program == "kexec":
            print(f"kexec-tools 2.0.27 (pykexec {__version__})")
        else:
            print(f"pykexec {__version__} (kexec-tools 2.0.27 compatible)")
        sys.stdout.flush()
        return 0
    code = _act(request)
    sys.stdout.flush()    # a closed pipe shows here, inside the handler, not at exit
    return code


def _check_fatal(request) -> None:
    """kexec-tools' refusals that die (exit 1) before anything is done."""
    if request.live_update == "exec":
        raise Failure("--exec-live-update only works under Xen", EXIT_FATAL)
    if request.live_update == "load":
        raise Failure("--load-live-update can only be used with Xen", EXIT_FATAL)
    if request.do_load and request.preserve_context and request.mem_max is None:
        raise Failure("--load-preserve-context needs --mem-max: the memory the new kernel may "
                      "use, so that it preserves the running kernel's context", EXIT_FATAL)
    if request.syscall_mode != "load" and request.preserve_context and (
            request.do_load or request.do_jump_back_helper):
        which = "--load-jump-back-helper" if request.do_jump_back_helper else \
            "--load-preserve-context"
        raise Failure(f"{which} is not supported with kexec_file_load: add -c", EXIT_FATAL)
    if request.reuse_initrd:
        from pykexec.arch import reuse_initrd_refusal
        raise Failure(reuse_initrd_refusal(), EXIT_FATAL)


def _check_hotplug(request, machine) -> None:
    """--hotplug: kexec-tools dies without the kernel's elfcorehdr size, whatever the
    syscall; with kexec_file_load the kernel supports hotplug by itself, so -s ignores it."""
    if not request.crash:
        raise Failure("--hotplug is for crash loads (-p): only the capture kernel's elfcorehdr "
                      "is rewritten on CPU/memory hotplug", EXIT_FATAL)
    if not machine.crash_elfcorehdr_size:   # absent, or 0 (kexec-tools dies on both)
        raise Failure("/sys/kernel/crash_elfcorehdr_size does not exist: "
                      "--hotplug needs a kernel with CONFIG_CRASH_HOTPLUG", EXIT_FATAL)


def _check_refused(request, machine) -> None:
    if not request.do_load:
        return
    for option, why in request.refused:
        raise Failure(why)
    if request.hotplug:
        _check_hotplug(request, machine)
    from pykexec.arch import option_refusal
    why = option_refusal(request, machine)
    if why is not None:
        raise Failure(why)


def _status_words(machine, name: str, status: int, crash: bool) -> str:
    """`-S -d`'s line: what is loaded and, for crash kernels, whether the kernel keeps the
    loaded elfcorehdr current on hotplug (so that no reload is needed)."""
    from pykexec.machine import MachineError
    line = f"{name}: {status}"
    if crash:
        try:
            hotplug = machine.crash_hotplug
        except MachineError as err:
            return f"{line}; crash hotplug: unreadable ({err})"
        words = {True: "on", False: "off", None: "not in this kernel"}
        line += (f"; crash hotplug: cpu {words[hotplug['cpu']]}, "
                 f"memory {words[hotplug['memory']]}")
    return line


def _act(request) -> int:
    sysroot = request.sysroot
    if request.print_ckr_size:
        from pykexec.machine import Machine
        regions = Machine.read(sysroot).crash_regions
        print(regions[-1].size if regions else 0)
        return 0
    if request.do_status:
        from pykexec.machine import Machine, MachineError
        # the status is the exit code alone; a --sysroot that is no machine folder is
        # pykexec's own mistake to name, not an answer
        machine = Machine(sysroot) if sysroot in _LIVE_ROOTS else Machine.read(sysroot)
        name = "kexec_crash_loaded" if request.crash else "kexec_loaded"
        try:   # sys/kernel/<name>, else sys/kernel/kexec/<short name> (newer kernels)
            head = machine.kexec_flag_head(name, STATUS_READ)
        except MachineError:    # a directory, a FIFO, unreadable: kexec-tools' -1
            head = None
        status = loaded_status(head)
        if request.debug:       # the status stays the answer; -d also says it in words
            _err(_status_words(machine, name, status, request.crash))
        return status
    _check_fatal(request)
    from pykexec.host import syscall
    backend = syscall.backend()
    machine = None
    if request.do_load:
        from pykexec.machine import Machine
        machine = Machine.read(sysroot)
        if request.crash and machine.crash_region is None:
            raise Failure(
                "no crashkernel memory: /proc/iomem has no 'Crash kernel' range, so nothing can "
                "be loaded for -p (boot with crashkernel=SIZE, e.g. crashkernel=256M)", EXIT_FATAL)
    _check_refused(request, machine)
    if not request.dry_run and backend.live:
        if sysroot not in _LIVE_ROOTS:
            raise Failure(f"--sysroot {sysroot} describes another machine: plan it with "
                          "--dry-run or --save-plan, do not load it here")
        if (request.do_load or request.do_unload or request.do_exec
                or request.do_jump_back_helper) and not _may_boot():
            raise Failure("loading, unloading or booting a kernel needs root (CAP_SYS_BOOT); "
                          "--dry-run plans without it")
    # kexec-tools unloads first and only then finds the kernel missing (`-up` alone);
    # pykexec refuses before unloading (docs/differences.md: -up).
    if request.do_load and request.kernel is None:
        raise Failure("No kernel specified")

    result = 0
    file_args = None
    if request.do_load and request.syscall_mode in ("file", "auto"):
        from pykexec.arch import user_cmdline
        from pykexec.host.fileload import file_load
        file_args = file_load(request, user_cmdline(request, machine), machine)
    plan = None
    plan_error = None
    if request.do_load and request.syscall_mode != "file":
        # Plan before any unload or load, so that a bad kernel or initrd, or a bad
        # --mem-min/--mem-max, leaves the loaded capture kernel in place.
        try:
            _check_window(request, machine)
            plan = _plan(request, machine)
        except Exception as err:  # noqa: BLE001 - re-raised below unless kexec_file_load may do
            if request.syscall_mode == "load" or request.dry_run:
                raise
            # -a: kexec_file_load needs no plan (and under lockdown /proc/kcore cannot be
            # read to make one); the error matters only if it falls back.
            plan_error = err

    # `-up`: no separate unload before the load (kexec-tools makes one). A load replaces
    # the loaded image of its kind by itself, so a successful load ends the same way, and
    # a refused one keeps the old image wherever the kernel keeps it (docs/differences.md).
    if request.do_load and request.dry_run:
        result = _dry_run(request, machine, plan, file_args)
    elif request.do_load:
        result = _load(request, machine, backend, plan, plan_error, file_args)
    elif request.do_unload:
        result = _unload(request, backend)
    if result != 0:
        return result
    if request.do_exec or request.do_shutdown:
        if request.dry_run:
            print("would then: " + ", ".join(
                w for w, on in (("sync", request.do_sync), ("take interfaces down", request.do_ifdown),
                                ("reboot(LINUX_REBOOT_CMD_KEXEC)", request.do_exec),
                                ("shutdown -r now", request.do_shutdown)) if on))
            return 0
        if backend.loaded(False) == 0:
            raise Failure("Nothing has been loaded! (load a kernel with -l first)", EXIT_FATAL)
    if request.do_shutdown:
        if not backend.shutdown():
            raise Failure("shutdown: none of /sbin/shutdown, /etc/shutdown, /bin/shutdown could run")
        return 0
    if request.do_sync:
        backend.sync()
    if request.do_ifdown:
        backend.ifdown()
    if request.do_exec:
        try:
            backend.reboot_kexec()
        except syscall.KexecError as err:
            raise Failure(f"kexec failed: {err}") from None
    if request.do_jump_back_helper:
        _jump_back_helper(request, backend)
    return 0


def _may_boot() -> bool:
    """Root with CAP_SYS_BOOT in its effective set (a container may drop it)."""
    from pykexec.host.syscall import has_cap_sys_boot
    return os.geteuid() == 0 and has_cap_sys_boot() is not False


def _plan(request, machine):
    from pykexec.arch import plan_load
    plan = plan_load(request, machine)
    for warning in machine.memory_map_warnings + tuple(plan.notes.get("warnings", ())):
        _err(f"warning: {warning}")
    return plan


def _unload(request, backend) -> int:
    from pykexec.host import syscall
    if request.syscall_mode in ("file", "auto"):
        flags = request.kexec_file_flags | syscall.KEXEC_FILE_UNLOAD
        if request.dry_run:
            print(f"would unload: kexec_file_load(-1, -1, 0, NULL, {flags:#x})")
            return 0
        try:
            backend.kexec_file_load(-1, -1, None, flags)
            return 0
        except syscall.KexecError as err:
            if err.errno not in syscall.FILE_UNLOAD_FALLBACK_ERRNOS:
                raise Failure(f"kexec_file_load(unload) failed: {err}") from None
            if request.syscall_mode == "file":
                _err(str(err))
                _err("syscall kexec_file_load not available.")
                return EXIT_FALLBACK
            if request.debug:
                _err(f"{err}; unloading with kexec_load")
    flags = request.kexec_flags | syscall.arch_flag()
    if request.dry_run:
        print(f"would unload: kexec_load(0, 0, NULL, {flags:#x})")
        return 0
    try:
        backend.kexec_load(0, [], flags)
    except syscall.KexecError as err:
        raise Failure(f"kexec unload failed: {err}") from None
    return 0


def _describe(err: BaseException) -> str:
    from pykexec.errors import describe
    return describe(err) or f"internal error: {err.__class__.__name__}: {err}"


def _check_window(request, machine) -> None:
    """--mem-min/--mem-max that leave no memory: kexec-tools finds no hole and dies (1)."""
    lo, hi = request.mem_min, request.mem_max
    if hi is not None and lo > hi:
        raise Failure(f"--mem-min={lo:#x} is above --mem-max={hi:#x}: no memory is left "
                      "between them", EXIT_FATAL)
    if request.crash:
        region, where = machine.crash_region, "the crash region"
    else:
        ram = machine.ram
        region = type(ram[0])(min(r.start for r in ram), max(r.end for r in ram)) if ram else None
        where = "System RAM"
    if region is not None and (lo >= region.end or (hi is not None and hi < region.start)):
        which = "--mem-min" if lo >= region.end else "--mem-max"
        value = lo if lo >= region.end else hi
        raise Failure(f"{which}={value:#x} leaves nothing of {where} {region}", EXIT_FATAL)


def _load(request, machine, backend, plan, plan_error, file_args) -> int:
    """The load. Everything that can fail before the kernel is asked (the plan,
    --save-plan, opening the kernel and initrd) is done before the first syscall."""
    import contextlib
    from pykexec.host import syscall
    with contextlib.ExitStack() as stack:
        fds = stack.enter_context(file_args.open()) if file_args is not None else None
        saved = False
        if request.save_plan and request.syscall_mode != "auto":
            _save(file_args.plan() if request.syscall_mode == "file" else plan,
                  request.save_plan)
            saved = True
        if fds is not None:
            if request.debug:
                _err("calling " + file_args.describe())
            try:
                backend.kexec_file_load(fds[0], fds[1], file_args.cmdline, file_args.flags)
                if request.svg:
                    _err(_NO_FILE_LOAD_PICTURE)
                if request.save_plan and not saved:
                    _save_after_load(file_args.plan(), request.save_plan)
                if plan_error is not None and request.debug:
                    _err(f"(no kexec_load plan: {_describe(plan_error)})")
                return 0
            except syscall.KexecError as err:
                if err.errno not in syscall.FILE_LOAD_FALLBACK_ERRNOS:
                    raise Failure(_after_failed_load(str(err), request, backend)) from None
                if request.syscall_mode == "file":
                    _err(_after_failed_load(str(err), request, backend))
                    _err("syscall kexec_file_load not available.")
                    return EXIT_FALLBACK
                if request.debug:
                    _err(f"{err}; falling back to kexec_load")
        if plan_error is not None:
            raise plan_error
        if request.svg:
            from pykexec.views.svg import write_svg
            write_svg(plan, machine, request.svg)
        if request.debug:
            from pykexec.views.show import print_plan
            print_plan(plan, as_json=request.json, out=sys.stderr, machine=machine)
        try:
            backend.kexec_load(plan.entry, [(s.data, s.mem, s.memsz) for s in plan.segments],
                               plan.flags)
        except syscall.KexecError as err:
            raise Failure(_after_failed_load(str(err), request, backend)) from None
        if request.save_plan and not saved:
            _save_after_load(plan, request.save_plan)
        return 0


def _after_failed_load(message: str, request, backend) -> str:
    """A failed crash load may have cost the loaded capture kernel: the kernel frees it
    before it reads a new one (kernel/kexec.c, kexec_file.c). Say so when it happened."""
    if request.crash and backend.loaded(True) == 0:
        return f"{message}; no capture kernel is loaded now"
    return message


def _save(plan, folder: str) -> None:
    from pykexec.core.plan import save_plan
    save_plan(plan, folder)


def _save_after_load(plan, folder: str) -> None:
    try:
        _save(plan, folder)
    except Exception as err:  # noqa: BLE001 - the load itself succeeded
        raise Failure(f"{_describe(err)} (the kernel is loaded; only --save-plan failed)") \
            from None


def _save_and_show(request, machine, plan) -> None:
    if request.save_plan:
        from pykexec.core.plan import save_plan
        save_plan(plan, request.save_plan)
    if request.svg:
        from pykexec.views.svg import write_svg
        write_svg(plan, machine, request.svg)
    if request.dry_run or request.debug:
        from pykexec.views.show import print_plan
        print_plan(plan, as_json=request.json, out=sys.stdout if request.dry_run else sys.stderr,
                   machine=machine)


# kexec_file_load's segments get their addresses from the kernel: there is no map to draw.
_NO_FILE_LOAD_PICTURE = ("warning: --svg: no picture for kexec_file_load, whose segments the "
                         "kernel places itself (-c or -a draws the kexec_load plan)")


def _dry_run(request, machine, plan, file_args) -> int:
    if file_args is not None:
        out = sys.stderr if request.json else sys.stdout   # stdout stays the plan's JSON
        first = "first" if request.syscall_mode == "auto" else "would load with"
        refusal = file_args.kernel_refusal()
        if refusal is not None and request.syscall_mode == "file":
            _err(f"{refusal}; syscall kexec_file_load not available.")
            return EXIT_FALLBACK
        print(f"{first}: {file_args.describe()}", file=out)
        if refusal is not None:
            print(f"which would fail: {refusal}", file=out)
        if request.syscall_mode == "file":
            if request.save_plan or request.json:
                file_plan = file_args.plan()
                if request.save_plan:
                    from pykexec.core.plan import save_plan
                    save_plan(file_plan, request.save_plan)
                if request.json:
                    from pykexec.views.show import print_plan
                    print_plan(file_plan, as_json=True, out=sys.stdout, machine=machine)
            if request.svg:
                _err(_NO_FILE_LOAD_PICTURE)
            return 0
        print("then, if the kernel has no kexec_file_load for it (ENOSYS, EINVAL, ENOEXEC, "
              "ENOTSUP), kexec_load with this plan:", file=out)
    _save_and_show(request, machine, plan)
    return 0


def _jump_back_helper(request, backend) -> None:
    from pykexec.host import syscall
    if backend.loaded(False):
        raise Failure("There is a kexec kernel loaded: --load-jump-back-helper belongs in the "
                      "kexec'd kernel")
    if not request.entry:
        raise Failure("--load-jump-back-helper needs the jump-back address: --entry=ADDR")
    if request.dry_run:
        print(f"would load: kexec_load({request.entry:#x}, 1, [empty segment], "
              f"{syscall.KEXEC_PRESERVE_CONTEXT:#x})")
        return
    try:
        backend.kexec_load(request.entry, [(b"", 0, 0)], syscall.KEXEC_PRESERVE_CONTEXT)
    except syscall.KexecError as err:
        raise Failure(f"load jump back kernel failed: {err}") from None


# ---------------------------------------------------------------------------------------------
# pykexec's own commands


WRAPPER = """#!{python} -ISB
# pykexec answering as kexec (written by `pykexec install --as-kexec`).
# -ISB: no site scan (a third of the start-up), no environment, no bytecode written.
import sys
sys.dont_write_bytecode = True
sys.path[:0] = {paths!r}
from pykexec.cli import kexec_main
kexec_main()
"""
WRAPPER_MARK = "written by `pykexec install --as-kexec`"


def _dependency_paths() -> list:
    """Where this interpreter finds pykexec's dependencies (the wrapper skips site)."""
    import importlib.util
    found = []
    for name in ("elftools", "construct", "click"):
        spec = importlib.util.find_spec(name)
        if spec and spec.origin:
            where = os.path.dirname(os.path.dirname(spec.origin))
            if where not in found:
                found.append(where)
    return found


def install_wrapper(dest: str, force: bool = False, python: str | None = None,
                    package_parent: str | None = None) -> str:
    """Write the `kexec` wrapper at `dest`; an existing other program is kept as
    DEST.kexec-tools when `force`, else refused. Returns what was done."""
    package_parent = package_parent or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = WRAPPER.format(python=python or sys.executable,
                          paths=[package_parent] + _dependency_paths())
    done = f"wrote {dest}"
    if os.path.lexists(dest):
        try:
            with open(dest, "rb") as f:
                ours = WRAPPER_MARK.encode() in f.read(4096)
        except OSError:
            ours = False
        if not ours:
            if not force:
                raise Failure(f"{dest} exists and is not pykexec's wrapper; --force keeps it as "
                              f"{dest}.kexec-tools and installs pykexec", EXIT_USAGE)
            os.replace(dest, dest + ".kexec-tools")
            done += f" (the old one is {dest}.kexec-tools)"
    tmp = f"{dest}.pykexec-tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return done


def _pipe_safe(command):
    """click turns a closed stdout into its own exit 1; stop as the kexec command line does."""
    import functools

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            result = command(*args, **kwargs)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            sys.exit(_stdout_gone())
    return wrapper


def _subcommand(argv: list[str]) -> int:
    import click

    @click.group()
    def group():
        """pykexec's own commands."""

    @group.command()
    @click.argument("dest")  # checked by take_snapshot: one line, exit 1 like every refusal
    @click.option("--sysroot", default="/", show_default=True, help="machine to read")
    @_pipe_safe
    def snapshot(dest, sysroot):
        """Save this machine's loader inputs into DEST (the snapshot format)."""
        from pykexec.machine.snapcheck import snapshot_problems
        from pykexec.machine.snapshot import SnapshotError, take_snapshot
        fatal, warnings = snapshot_problems(sysroot)
        if fatal:
            _err(f"snapshot: {fatal}")
            sys.exit(EXIT_USAGE)
        try:
            take_snapshot(dest, root=sysroot)
        except SnapshotError as err:
            _err(f"snapshot: {err}")
            sys.exit(EXIT_USAGE)
        except OSError as err:       # the folder cannot be made or written
            from pykexec.errors import describe
            _err(f"snapshot: {describe(err)}")
            sys.exit(EXIT_USAGE)
        for warning in warnings:
            _err(f"snapshot: warning: {warning}")

    @group.command(name="inspect")
    @click.argument("path", type=click.Path())
    @_pipe_safe
    def inspect_(path):
        """Explain a bzImage, vmlinux, purgatory object, elfcorehdr, vmcore or plan folder."""
        from pykexec.views.inspect import main as inspect_main
        sys.exit(inspect_main(path))

    @group.command(name="install")
    @click.option("--as-kexec", "as_kexec", is_flag=True, required=True,
                  help="write a `kexec` wrapper that runs pykexec")
    @click.option("--force", is_flag=True,
                  help="replace another program at PATH (kept as PATH.kexec-tools)")
    @click.option("--python", default=None, help="interpreter for the wrapper [this one]")
    @click.argument("path", default="/usr/local/sbin/kexec")
    @_pipe_safe
    def install(as_kexec, force, python, path):
        """Make pykexec answer as kexec at PATH (init scripts call /sbin/kexec)."""
        try:
            click.echo(install_wrapper(path, force=force, python=python))
        except Failure as err:
            _err(str(err))
            sys.exit(err.code)
        except OSError as err:
            _err(f"{path}: {err.strerror}")
            sys.exit(EXIT_FAILURE)

    from pykexec.vmcore.command import vmcore
    group.add_command(vmcore)
    _PROGRAM[0] = "pykexec"
    try:
        with _stdout_named():
            code = group.main(argv, prog_name="pykexec", standalone_mode=False)
            sys.stdout.flush()
    except SystemExit as done:
        code = done.code
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return _stdout_gone()
    except BrokenPipeError:
        return _stdout_gone()
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except click.exceptions.Abort:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except click.ClickException as err:
        # click prints usage and several lines, and exits 2; pykexec gives one line and
        # the status of its other usage errors (1)
        command = f" {argv[0]}" if argv else ""
        _err(f"{argv[0] if argv else 'pykexec'}: {err.format_message()} "
             f"(see pykexec{command} --help)")
        return EXIT_USAGE
    except Exception as err:  # noqa: BLE001 - one line, as for the kexec command line
        return _report(err)
    if code is None:
        return 0
    return code if isinstance(code, int) else EXIT_FAILURE


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:       # stderr's reader went away while an error was written
        code = _stdout_gone()
    _exit(code)


def kexec_main(argv: list[str] | None = None) -> None:
    """The `kexec` console script: kexec's argv only (no subcommands)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = run(argv, program="kexec")
    except BrokenPipeError:
        code = _stdout_gone()
    _exit(code)
