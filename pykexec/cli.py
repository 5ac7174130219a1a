"""Command-line entry point: kexec-compatible argv, pykexec's own subcommands via click.

kexec's options are an ordered state machine (see pykexec.request), which click's
declarative options cannot express (`-pu` differs from `-up`, options may follow the
kernel path, prefixes of long options are accepted). So the kexec-style argv is parsed
with the standard library's getopt in `pykexec.request`, and click carries pykexec's own
subcommands (`snapshot`, `inspect`), whose names cannot clash with a kernel path because
they are only taken as the very first argument.

Exit statuses follow kexec-tools: 0 success, 1 usage errors (and `-S` when loaded),
255 a failed load or unload.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

EXIT_USAGE = 1
EXIT_FAILURE = 255

SUBCOMMANDS = ("snapshot", "inspect")
# sysroots that are this machine: only these may be loaded, not planned only.
_LIVE_ROOTS = ("/", "")


class Failure(Exception):
    """A load that cannot go ahead: one line on stderr, exit 255, nothing loaded."""


def _err(message: str) -> None:
    sys.stderr.write(f"pykexec: {message}\n")


def _read_flag(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read(3).strip() or "x")
    except (OSError, ValueError):
        return None


def run(argv: List[str]) -> int:
    from pykexec.request import UsageError, parse_args, usage_text

    try:
        request = parse_args(argv)
    except UsageError as err:
        _err(f"{err} (see pykexec --help)")
        return EXIT_USAGE
    if request.show_help:
        sys.stdout.write(usage_text())
        return 0
    if request.show_version:
        from pykexec import __version__
        print(f"pykexec {__version__} (kexec-tools compatible)")
        return 0
    debug = request.debug
    try:
        return _act(request)
    except Failure as err:
        _err(str(err))
        return EXIT_FAILURE
    except Exception as err:  # noqa: BLE001 - the one place that turns errors into a line
        from pykexec.errors import describe
        message = describe(err)
        if message is None or debug:
            if debug:
                raise
            _err(f"internal error: {err.__class__.__name__}: {err} (run with --debug for details)")
        else:
            _err(message)
        return EXIT_FAILURE


def _act(request) -> int:
    from pykexec import syscall
    from pykexec.machine import Machine

    machine = Machine.read(request.sysroot)
    if request.print_ckr_size:
        regions = machine.crash_regions
        print(regions[-1].size if regions else 0)
        return 0
    if request.do_status:
        name = "kexec_crash_loaded" if request.crash else "kexec_loaded"
        value = _read_flag(os.path.join(request.sysroot, "sys/kernel", name))
        return 255 if value is None else value
    for option in request.unsupported:
        raise Failure(f"{option} is not supported by pykexec yet")
    if request.do_exec or (request.do_load and not request.crash and not request.has_opt_load):
        raise Failure("executing a kernel (-e, -f, or a load without -l/-p) is not supported yet")
    if not request.crash and request.do_load:
        raise Failure("normal kexec loads (-l) are not supported yet; use -p for a crash kernel")
    if not request.dry_run and request.sysroot not in _LIVE_ROOTS:
        raise Failure(f"--sysroot {request.sysroot} describes another machine: plan it with "
                      "--dry-run or --save-plan, do not load it here")
    if not request.dry_run and os.geteuid() != 0:
        raise Failure("loading or unloading a kernel needs root (CAP_SYS_BOOT); "
                      "--dry-run plans without it")
    plan = None
    if request.do_load:
        if request.kernel is None:
            raise Failure("No kernel specified")
        from pykexec.arch import plan_load
        # Plan before any unload, so that a bad kernel or initrd under `-up` leaves the
        # loaded capture kernel in place instead of none.
        plan = plan_load(request, machine)
        for warning in machine.memory_map_warnings + tuple(plan.notes.get("warnings", ())):
            _err(f"warning: {warning}")
    if request.do_unload:
        flags = request.kexec_flags | syscall.arch_flag()
        if request.dry_run:
            print(f"would unload: kexec_load(0, 0, NULL, {flags:#x})")
        else:
            try:
                syscall.unload(flags)
            except syscall.KexecError as err:
                raise Failure(f"kexec unload failed: {err}") from None
    if plan is None:
        return 0
    from pykexec.show import print_plan

    if request.save_plan:
        from pykexec.plan import save_plan
        save_plan(plan, request.save_plan)
    if request.svg:
        from pykexec.svg import write_svg
        write_svg(plan, machine, request.svg)
    if request.dry_run or request.debug:
        print_plan(plan, as_json=request.json, out=sys.stdout if request.dry_run else sys.stderr,
                   machine=machine)
    if request.dry_run:
        return 0
    try:
        syscall.load_plan(plan)
    except syscall.KexecError as err:
        raise Failure(str(err)) from None
    return 0


def _subcommand(argv: List[str]) -> int:
    import click

    @click.group()
    def group():
        """pykexec's own commands."""

    @group.command()
    @click.argument("dest", type=click.Path(file_okay=False))
    @click.option("--sysroot", default="/", show_default=True, help="machine to read")
    def snapshot(dest, sysroot):
        """Save this machine's loader inputs into DEST (the snapshot format)."""
        from pykexec.snapcheck import snapshot_problems
        from pykexec.snapshot import SnapshotError, take_snapshot
        fatal, warnings = snapshot_problems(sysroot)
        if fatal:
            _err(f"snapshot: {fatal}")
            sys.exit(EXIT_USAGE)
        try:
            take_snapshot(dest, root=sysroot)
        except SnapshotError as err:
            _err(f"snapshot: {err}")
            sys.exit(EXIT_USAGE)
        for warning in warnings:
            _err(f"snapshot: warning: {warning}")

    @group.command(name="inspect")
    @click.argument("path", type=click.Path())
    def inspect_(path):
        """Explain a bzImage, vmlinux, purgatory object, elfcorehdr, vmcore or plan folder."""
        from pykexec.inspect import main as inspect_main
        sys.exit(inspect_main(path))

    return group.main(argv, prog_name="pykexec", standalone_mode=True)


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        sys.exit(_subcommand(argv))
    sys.exit(run(argv))
